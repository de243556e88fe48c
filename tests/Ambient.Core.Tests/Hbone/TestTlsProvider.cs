using System.Security.Cryptography.X509Certificates;
using Ambient.Hbone;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Hbone;

/// <summary>Test <see cref="IHboneTlsProvider"/>: certs per identity, server check = chain to the root + exact identity.</summary>
internal sealed class TestTlsProvider(X509Certificate2 root) : IHboneTlsProvider
{
    private readonly Dictionary<string, X509Certificate2> _certificates = [];
    private readonly object _lock = new();

    public (X509Certificate2 Certificate, X509Certificate2Collection? Chain) GetClientCertificate(string sourceIdentity)
    {
        lock (_lock)
        {
            if (!_certificates.TryGetValue(sourceIdentity, out X509Certificate2? certificate))
            {
                certificate = TestCertificates.IssueWorkload(root, sourceIdentity);
                _certificates.Add(sourceIdentity, certificate);
            }
            return (certificate, null);
        }
    }

    public bool ValidateServer(X509Certificate2 serverCert, X509Chain? chain, string expectedIdentity, out string? failure)
    {
        if (!TestCertificates.TryVerify(root, serverCert, chain, out string? identity, out failure))
        {
            return false;
        }
        if (!string.Equals(identity, expectedIdentity, StringComparison.Ordinal))
        {
            failure = $"server presented identity {identity}";
            return false;
        }
        return true;
    }
}
