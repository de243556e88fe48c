using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Ambient.Core.Identity;

/// <summary>
/// The mesh root(s) of one trust domain, and the one place that decides whether a peer certificate is a valid
/// workload certificate. TLS callbacks call <see cref="ValidateChain(X509Certificate2, X509Certificate2Collection?, out SpiffeId, out string)"/>
/// themselves: SPIFFE certificates carry no DNS name, so SslStream always reports RemoteCertificateNameMismatch
/// (and ChainErrors, as the mesh root is not in the system store) and its verdict is useless.
/// </summary>
internal sealed class TrustBundle
{
    private readonly X509Certificate2Collection _roots;
    private readonly HashSet<string> _rootThumbprints = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;

    public TrustBundle(string trustDomain, X509Certificate2Collection roots, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(roots);
        if (roots.Count == 0)
        {
            throw new ArgumentException("a trust bundle needs at least one root certificate", nameof(roots));
        }
        // Validate the trust domain the same way a SPIFFE ID does.
        _ = new SpiffeId(trustDomain, "ns", "sa");
        TrustDomain = trustDomain;
        _roots = roots;
        _time = time ?? TimeProvider.System;
        foreach (var root in roots)
        {
            _rootThumbprints.Add(root.GetCertHashString(HashAlgorithmName.SHA256));
        }
    }

    public string TrustDomain { get; }

    public X509Certificate2Collection Roots => _roots;

    /// <summary>Loads every CERTIFICATE block of a PEM bundle (e.g. the CA response's last entry).</summary>
    public static TrustBundle FromPem(string rootsPem, string trustDomain = SpiffeId.DefaultTrustDomain, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(rootsPem);
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPem(rootsPem);
        }
        catch (CryptographicException ex)
        {
            throw new CryptographicException("the root bundle is not valid PEM certificates: " + ex.Message, ex);
        }
        if (roots.Count == 0)
        {
            throw new CryptographicException("the root bundle holds no '-----BEGIN CERTIFICATE-----' block");
        }
        return new TrustBundle(trustDomain, roots, time);
    }

    /// <summary>
    /// A bundle from one PEM certificate per entry (or several per entry, as a CA response's last element may hold),
    /// each checked to be usable as a trust anchor: a CA certificate valid now. A bad one is refused with an error
    /// that says which entry and why, so a broken push never replaces a working bundle.
    /// </summary>
    public static TrustBundle FromRootPems(IEnumerable<string> rootPems, string trustDomain, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(rootPems);
        var now = (time ?? TimeProvider.System).GetUtcNow().UtcDateTime;
        var roots = new X509Certificate2Collection();
        var index = 0;
        foreach (var pem in rootPems)
        {
            var before = roots.Count;
            try
            {
                roots.ImportFromPem(pem);
            }
            catch (CryptographicException ex)
            {
                throw new CryptographicException($"root {index} is not a valid PEM certificate: {ex.Message}", ex);
            }
            if (roots.Count == before)
            {
                throw new CryptographicException($"root {index} holds no '-----BEGIN CERTIFICATE-----' block");
            }
            index++;
        }
        if (roots.Count == 0)
        {
            throw new CryptographicException("the trust bundle holds no root certificate");
        }
        foreach (var root in roots)
        {
            if (!IsCa(root))
            {
                throw new CryptographicException($"root '{root.Subject}' is not a CA certificate (basicConstraints CA:true is missing)");
            }
            if (now > root.NotAfter.ToUniversalTime())
            {
                throw new CryptographicException($"root '{root.Subject}' expired at {root.NotAfter.ToUniversalTime():u}");
            }
            if (now < root.NotBefore.ToUniversalTime())
            {
                throw new CryptographicException($"root '{root.Subject}' is not valid before {root.NotBefore.ToUniversalTime():u}");
            }
        }
        return new TrustBundle(trustDomain, roots, time);
    }

    /// <summary>Each root as its own PEM block, in bundle order.</summary>
    public IReadOnlyList<string> RootPems()
    {
        var pems = new List<string>(_roots.Count);
        foreach (var root in _roots)
        {
            pems.Add(root.ExportCertificatePem() + "\n");
        }
        return pems;
    }

    /// <summary>For logs: each root's subject and the start of its SHA-256 fingerprint.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        foreach (var root in _roots)
        {
            if (sb.Length > 0)
            {
                sb.Append(", ");
            }
            sb.Append('\'').Append(root.Subject).Append("' (").Append(root.GetCertHashString(HashAlgorithmName.SHA256).AsSpan(0, 16)).Append(')');
        }
        return sb.ToString();
    }

    /// <summary>Whether <paramref name="root"/> (compared by SHA-256 of its DER) is one of this bundle's roots.</summary>
    public bool Contains(X509Certificate2 root)
    {
        ArgumentNullException.ThrowIfNull(root);
        return _rootThumbprints.Contains(root.GetCertHashString(HashAlgorithmName.SHA256));
    }

    /// <summary>The same trust domain and the same set of roots, whatever their order.</summary>
    public bool SameRootsAs(TrustBundle other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return string.Equals(TrustDomain, other.TrustDomain, StringComparison.Ordinal) && _rootThumbprints.SetEquals(other._rootThumbprints);
    }

    /// <summary>This bundle's roots followed by those of <paramref name="other"/> it lacks (a rotation's "old + new").</summary>
    public TrustBundle Union(TrustBundle other)
    {
        ArgumentNullException.ThrowIfNull(other);
        var roots = new X509Certificate2Collection(_roots);
        foreach (var root in other._roots)
        {
            if (!Contains(root))
            {
                roots.Add(root);
            }
        }
        return new TrustBundle(TrustDomain, roots, _time);
    }

    private static bool IsCa(X509Certificate2 certificate)
    {
        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509BasicConstraintsExtension bc)
            {
                return bc.CertificateAuthority;
            }
        }
        return false;
    }

    /// <summary>The roots as PEM, one block each.</summary>
    public string ExportPem()
    {
        var sb = new StringBuilder();
        foreach (var root in _roots)
        {
            sb.Append(root.ExportCertificatePem()).Append('\n');
        }
        return sb.ToString();
    }

    public bool ValidateChain(X509Certificate2 leaf, X509Certificate2Collection? intermediates, out string error)
        => ValidateChain(leaf, intermediates, out _, out error);

    /// <summary>As the other overloads, taking the intermediates from the chain a TLS callback was handed.</summary>
    public bool ValidatePresentedChain(X509Certificate2 leaf, X509Chain? presented, out SpiffeId identity, out string error)
        => ValidateChain(leaf, Intermediates(presented), out identity, out error);

    private static X509Certificate2Collection? Intermediates(X509Chain? presented)
    {
        X509Certificate2Collection? intermediates = null;
        if (presented is { ChainElements.Count: > 1 })
        {
            intermediates = [];
            for (var i = 1; i < presented.ChainElements.Count; i++)
            {
                intermediates.Add(presented.ChainElements[i].Certificate);
            }
        }
        return intermediates;
    }

    /// <summary>
    /// As <see cref="ValidateChain(X509Certificate2, X509Certificate2Collection?, out SpiffeId, out string)"/> for a
    /// peer whose identity we know (an HBONE client checking the server it dialed): accepted when one of the
    /// certificate's SPIFFE IDs is <paramref name="expected"/>, whatever other URI SANs it carries.
    /// </summary>
    public bool ValidateChain(X509Certificate2 leaf, X509Certificate2Collection? intermediates, SpiffeId expected, out string error)
        => ValidateChain(leaf, intermediates, expected, out _, out error);

    /// <summary>As the other overloads, taking the intermediates from the chain a TLS callback was handed, and
    /// requiring <paramref name="expected"/> among the certificate's identities.</summary>
    public bool ValidatePresentedChain(X509Certificate2 leaf, X509Chain? presented, SpiffeId expected, out string error)
        => ValidateChain(leaf, Intermediates(presented), expected, out _, out error);

    /// <summary>
    /// True when <paramref name="leaf"/> chains (through optional <paramref name="intermediates"/>) to one of our
    /// roots, is within its validity period, is not a CA, and carries exactly one SPIFFE ID of our trust domain
    /// (other URI SANs aside, see <see cref="CertificateSpiffe.TryGetSpiffeIds"/>), returned in
    /// <paramref name="identity"/>. Revocation is not checked (the mesh uses short-lived certs instead).
    /// </summary>
    public bool ValidateChain(X509Certificate2 leaf, X509Certificate2Collection? intermediates, out SpiffeId identity, out string error)
        => ValidateChain(leaf, intermediates, default, out identity, out error);

    /// <summary>The one implementation: <paramref name="expected"/> empty means "the single identity of our trust domain".</summary>
    private bool ValidateChain(X509Certificate2 leaf, X509Certificate2Collection? intermediates, SpiffeId expected, out SpiffeId identity, out string error)
    {
        ArgumentNullException.ThrowIfNull(leaf);
        identity = default;

        var now = _time.GetUtcNow().UtcDateTime;
        // Checked explicitly first: the chain engine reports expiry as a generic "NotTimeValid" status.
        if (now < leaf.NotBefore.ToUniversalTime())
        {
            error = $"the certificate is not valid before {leaf.NotBefore.ToUniversalTime():u}";
            return false;
        }
        if (now > leaf.NotAfter.ToUniversalTime())
        {
            error = $"the certificate expired at {leaf.NotAfter.ToUniversalTime():u}";
            return false;
        }
        if (!TrySelectIdentity(leaf, expected, out var id, out error))
        {
            return false;
        }
        foreach (var extension in leaf.Extensions)
        {
            if (extension is X509BasicConstraintsExtension { CertificateAuthority: true })
            {
                error = "the certificate is a CA certificate, not a workload certificate";
                return false;
            }
        }

        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.AddRange(_roots);
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = now;
        policy.VerificationTimeIgnored = false;
        if (intermediates is not null)
        {
            policy.ExtraStore.AddRange(intermediates);
        }
        try
        {
            if (!chain.Build(leaf))
            {
                error = "the certificate does not chain to the mesh root: " + DescribeStatus(chain);
                return false;
            }
            var elements = chain.ChainElements;
            var top = elements[elements.Count - 1].Certificate;
            if (!_rootThumbprints.Contains(top.GetCertHashString(HashAlgorithmName.SHA256)))
            {
                error = $"the certificate chains to '{top.Subject}', which is not a mesh root";
                return false;
            }
        }
        finally
        {
            // Chain elements are fresh certificate objects owned by us.
            foreach (var element in chain.ChainElements)
            {
                element.Certificate.Dispose();
            }
        }

        identity = id;
        error = string.Empty;
        return true;
    }

    /// <summary>
    /// The identity the certificate is taken for. With an expectation: that one, if any of its SPIFFE IDs is it. Without
    /// (a server learning who connected): its SPIFFE ID of our trust domain, which must be one, so that a policy never
    /// has to guess which of two identities a peer is.
    /// </summary>
    private bool TrySelectIdentity(X509Certificate2 leaf, SpiffeId expected, out SpiffeId identity, out string error)
    {
        identity = default;
        var ids = new List<SpiffeId>(1);
        if (!CertificateSpiffe.TryGetSpiffeIds(leaf, ids, out error))
        {
            return false;
        }
        if (!expected.IsEmpty)
        {
            foreach (var id in ids)
            {
                if (id.Equals(expected))
                {
                    identity = id;
                    return true;
                }
            }
            error = $"the certificate does not carry {expected} (it carries {string.Join(", ", ids)})";
            return false;
        }
        int ours = 0;
        foreach (var id in ids)
        {
            if (string.Equals(id.TrustDomain, TrustDomain, StringComparison.Ordinal) && !id.Equals(identity))
            {
                ours++;
                identity = id;
            }
        }
        if (ours == 0)
        {
            error = $"the certificate identity {ids[0]} is not of trust domain '{TrustDomain}'";
            return false;
        }
        if (ours > 1)
        {
            identity = default;
            error = $"the certificate carries {ours} SPIFFE IDs of trust domain '{TrustDomain}'; without an expected identity it must carry exactly one";
            return false;
        }
        return true;
    }

    private static string DescribeStatus(X509Chain chain)
    {
        var sb = new StringBuilder();
        foreach (var status in chain.ChainStatus)
        {
            if (sb.Length > 0)
            {
                sb.Append("; ");
            }
            sb.Append(status.Status).Append(": ").Append(status.StatusInformation.Trim());
        }
        return sb.Length == 0 ? "unknown chain error" : sb.ToString();
    }
}
