using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Ambient.Core.Identity;

/// <summary>
/// URI subject alternative names, which the BCL does not enumerate (it only exposes DNS and IP SANs).
/// </summary>
internal static class CertificateSpiffe
{
    public const string SubjectAltNameOid = "2.5.29.17";

    // RFC 5280 4.2.1.6:
    //   SubjectAltName ::= GeneralNames
    //   GeneralNames ::= SEQUENCE SIZE (1..MAX) OF GeneralName
    //   GeneralName ::= CHOICE {
    //        otherName                 [0] OtherName,
    //        rfc822Name                [1] IA5String,
    //        dNSName                   [2] IA5String,
    //        x400Address               [3] ORAddress,
    //        directoryName             [4] Name,
    //        ediPartyName              [5] EDIPartyName,
    //        uniformResourceIdentifier [6] IA5String,
    //        iPAddress                 [7] OCTET STRING,
    //        registeredID              [8] OBJECT IDENTIFIER }
    // The tags are IMPLICIT, so a URI is a primitive context-specific [6] holding IA5String bytes.
    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    /// <summary>
    /// Every URI SAN of <paramref name="certificate"/> in order; empty when it has no SAN extension.
    /// Throws <see cref="CryptographicException"/> when the SAN extension is not valid DER.
    /// </summary>
    public static List<string> GetUriSans(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        var result = new List<string>(1);
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value == SubjectAltNameOid)
            {
                ReadUriSans(extension.RawData, result);
            }
        }
        return result;
    }

    /// <summary>Reads the URI entries of a DER-encoded GeneralNames value into <paramref name="into"/>.</summary>
    public static void ReadUriSans(ReadOnlyMemory<byte> generalNamesDer, List<string> into)
    {
        try
        {
            var reader = new AsnReader(generalNamesDer, AsnEncodingRules.DER);
            var names = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            while (names.HasData)
            {
                var tag = names.PeekTag();
                if (tag.HasSameClassAndValue(UriTag))
                {
                    into.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, UriTag));
                }
                else
                {
                    names.ReadEncodedValue();
                }
            }
        }
        catch (AsnContentException ex)
        {
            throw new CryptographicException("the subjectAltName extension is not valid DER: " + ex.Message, ex);
        }
    }

    /// <summary>True when the certificate has exactly one URI SAN and it is a valid SPIFFE ID.</summary>
    public static bool TryGetSpiffeId(X509Certificate2 certificate, out SpiffeId id) => TryGetSpiffeId(certificate, out id, out _);

    /// <summary>As <see cref="TryGetSpiffeId(X509Certificate2, out SpiffeId)"/>, with the reason when it fails.</summary>
    public static bool TryGetSpiffeId(X509Certificate2 certificate, out SpiffeId id, out string error)
    {
        id = default;
        if (!TryGetUriSans(certificate, out var uris, out error))
        {
            return false;
        }
        if (uris.Count != 1)
        {
            error = uris.Count == 0
                ? "the certificate has no URI subject alternative name (no SPIFFE ID)"
                : $"the certificate has {uris.Count} URI subject alternative names; a SPIFFE certificate has exactly one";
            return false;
        }
        return SpiffeId.TryParse(uris[0], out id, out error);
    }

    /// <summary>
    /// Every SPIFFE ID among the certificate's URI SANs, in order, as Istio's ztunnel reads a peer certificate: URIs of
    /// another scheme are skipped, but a <c>spiffe://</c> URI that is not a valid workload identity, or a SAN extension
    /// that is not valid DER, fails the whole certificate (fail closed: it claims an identity we cannot read).
    /// </summary>
    public static bool TryGetSpiffeIds(X509Certificate2 certificate, List<SpiffeId> into, out string error)
    {
        if (!TryGetUriSans(certificate, out var uris, out error))
        {
            return false;
        }
        foreach (var uri in uris)
        {
            if (!uri.StartsWith(SpiffeId.Scheme, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            if (!SpiffeId.TryParse(uri, out var id, out error))
            {
                error = $"the certificate's URI subject alternative name {uri} is not a valid SPIFFE ID: {error}";
                return false;
            }
            into.Add(id);
        }
        if (into.Count == 0)
        {
            error = uris.Count == 0
                ? "the certificate has no URI subject alternative name (no SPIFFE ID)"
                : $"none of the certificate's {uris.Count} URI subject alternative names is a SPIFFE ID";
            return false;
        }
        error = string.Empty;
        return true;
    }

    private static bool TryGetUriSans(X509Certificate2 certificate, out List<string> uris, out string error)
    {
        try
        {
            uris = GetUriSans(certificate);
            error = string.Empty;
            return true;
        }
        catch (CryptographicException ex)
        {
            uris = [];
            error = ex.Message;
            return false;
        }
    }

    /// <summary>
    /// A subjectAltName extension holding exactly one URI, the SPIFFE ID. Istio marks it critical because
    /// workload certificates have an empty subject (RFC 5280 4.2.1.6 requires critical then).
    /// </summary>
    public static X509Extension CreateUriSanExtension(SpiffeId id, bool critical = true)
    {
        if (id.IsEmpty)
        {
            throw new ArgumentException("the SPIFFE ID is empty", nameof(id));
        }
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            writer.WriteCharacterString(UniversalTagNumber.IA5String, id.ToString(), UriTag);
        }
        return new X509Extension(SubjectAltNameOid, writer.Encode(), critical);
    }
}
