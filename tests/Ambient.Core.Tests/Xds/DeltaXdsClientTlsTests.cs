using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Xds;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Xds;

/// <summary>istiod's serving certificate check: chain to the mesh root only, and a SAN naming the host or istiod.</summary>
public sealed class DeltaXdsClientTlsTests
{
    private static (X509Certificate2 Root, X509Certificate2 Leaf) Pki(string[] dnsNames, IPAddress[] addresses)
    {
        var root = TestCertificates.CreateRoot("mesh root");
        return (root, TestCertificates.IssueServer(root, dnsNames, addresses));
    }

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("localhost", true)]
    [InlineData("istiod.example", true)] // accepted through the istiod service name
    public void Chained_certificate_naming_the_host_or_istiod_is_accepted(string host, bool ok)
    {
        var (root, leaf) = Pki(["istiod.istio-system.svc", "localhost"], [IPAddress.Loopback]);
        using (root)
        using (leaf)
        {
            var accepted = IstiodChannel.ValidateServerCertificate(leaf, null, SslPolicyErrors.RemoteCertificateChainErrors,
                [root], host, IstiodChannel.DefaultServerName, out var error);
            Assert.True(accepted == ok, error);
        }
    }

    [Fact]
    public void Wrong_name_wrong_root_and_no_certificate_are_refused_with_reasons()
    {
        var (root, leaf) = Pki(["someone-else.example"], []);
        var (otherRoot, _) = Pki(["x"], []);
        using (root)
        using (leaf)
        using (otherRoot)
        {
            Assert.False(IstiodChannel.ValidateServerCertificate(leaf, null, SslPolicyErrors.None, [root], "127.0.0.1", IstiodChannel.DefaultServerName, out var nameError));
            Assert.Contains("names neither '127.0.0.1'", nameError, StringComparison.Ordinal);

            Assert.False(IstiodChannel.ValidateServerCertificate(leaf, null, SslPolicyErrors.None, [otherRoot], "someone-else.example", null, out var chainError));
            Assert.Contains("does not chain to the mesh root", chainError, StringComparison.Ordinal);

            Assert.False(IstiodChannel.ValidateServerCertificate(null, null, SslPolicyErrors.RemoteCertificateNotAvailable, [root], "h", null, out var none));
            Assert.Contains("no certificate", none, StringComparison.Ordinal);

            // The host dialled is accepted by itself, without the istiod name.
            Assert.True(IstiodChannel.ValidateServerCertificate(leaf, null, SslPolicyErrors.None, [root], "someone-else.example", null, out var e), e);
        }
    }
}
