using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;
using Google.Protobuf.WellKnownTypes;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>
/// What the CA refuses in a request itself: a CSR with anything but whitespace around its one PEM block, and a
/// validity_duration that is negative or above the maximum (Istio answers the latter INVALID_ARGUMENT; 0 is the
/// default).
/// </summary>
public sealed class CaInputChecksTests : IDisposable
{
    private const string WebOnNode1 = "spiffe://cluster.local/ns/demo/sa/web";
    private static readonly SpiffeId Id = SpiffeId.Parse(WebOnNode1);
    private readonly TempDir _dir = new();
    private readonly CaSigner _root;
    private readonly CertificateAuthority _ca;
    private readonly CertificateService _service;
    private readonly string _auth;

    public CaInputChecksTests()
    {
        _root = CaStore.LoadOrCreate(_dir.Path);
        _ca = new CertificateAuthority(_root);
        var tokens = new NodeTokens(_dir.Path);
        _auth = "Bearer " + tokens.GetOrCreate("node-1");
        _service = new CertificateService(_ca, tokens, new PodPlacement().Add("node-1", WebOnNode1), new ListLogger<CertificateService>());
    }

    public void Dispose()
    {
        _root.Dispose();
        _dir.Dispose();
    }

    private static IstioCertificateRequest Request(string csrPem, long validity = 0) => new()
    {
        Csr = csrPem,
        ValidityDuration = validity,
        Metadata = new Struct { Fields = { [CertificateService.ImpersonatedIdentityField] = Value.ForString(WebOnNode1) } },
    };

    [Fact]
    public void Csr_followed_by_junk_is_refused_without_echoing_it()
    {
        using var csr = WorkloadCsr.Create(Id);
        var junk = csr.CsrPem + "\n" + new string('J', 3 * 1024 * 1024);

        var ex = Assert.Throws<InvalidCsrException>(() => _ca.IssueWorkloadCertificate(junk, Id, TimeSpan.Zero));

        Assert.Contains("after the PEM block", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("JJJJ", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Csr_preceded_by_text_or_followed_by_a_second_block_is_refused()
    {
        using var csr = WorkloadCsr.Create(Id);
        using var other = WorkloadCsr.Create(Id);

        Assert.Throws<InvalidCsrException>(() => _ca.IssueWorkloadCertificate("hello\n" + csr.CsrPem, Id, TimeSpan.Zero));
        Assert.Throws<InvalidCsrException>(() => _ca.IssueWorkloadCertificate(csr.CsrPem + other.CsrPem, Id, TimeSpan.Zero));
    }

    [Fact]
    public void Csr_with_surrounding_whitespace_is_still_accepted()
    {
        using var csr = WorkloadCsr.Create(Id);

        var issued = _ca.IssueWorkloadCertificate("\r\n  " + csr.CsrPem + "\n\n", Id, TimeSpan.Zero);

        Assert.Equal(Id, issued.Identity);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(-86400)]
    [InlineData(90L * 86400 + 1)]
    [InlineData(long.MaxValue)]
    [InlineData(long.MinValue)]
    public void Out_of_range_validity_is_invalid_argument(long seconds)
    {
        using var csr = WorkloadCsr.Create(Id);

        var ex = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(Request(csr.CsrPem, seconds), _auth));

        Assert.Equal(CaErrorKind.InvalidArgument, ex.Kind);
        Assert.Equal(3, ex.GrpcStatusCode);
        Assert.Contains("validity_duration", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, 24 * 3600)]
    [InlineData(1, 1)]
    [InlineData(90L * 86400, 90L * 86400)]
    public void Zero_means_the_default_and_the_maximum_itself_is_allowed(long seconds, long expected)
    {
        using var csr = WorkloadCsr.Create(Id);
        var before = DateTimeOffset.UtcNow;

        var response = _service.CreateCertificate(Request(csr.CsrPem, seconds), _auth);

        using var leaf = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(response.CertChain[0]);
        var life = new DateTimeOffset(leaf.NotAfter.ToUniversalTime()) - before;
        Assert.InRange(life.TotalSeconds, expected - 5, expected + 30);
    }

    [Fact]
    public void The_authority_itself_refuses_a_negative_or_too_long_ttl()
    {
        using var csr = WorkloadCsr.Create(Id);

        Assert.Throws<InvalidTtlException>(() => _ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.FromSeconds(-1)));
        Assert.Throws<InvalidTtlException>(() => _ca.IssueWorkloadCertificate(csr.CsrPem, Id, CertificateAuthority.MaxTtl + TimeSpan.FromSeconds(1)));
    }

    [Fact]
    public void A_huge_impersonated_identity_is_refused_without_being_echoed()
    {
        using var csr = WorkloadCsr.Create(Id);
        var request = Request(csr.CsrPem);
        request.Metadata.Fields[CertificateService.ImpersonatedIdentityField] = Value.ForString("spiffe://cluster.local/ns/" + new string('a', 100_000));

        var ex = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(request, _auth));

        Assert.Equal(CaErrorKind.InvalidArgument, ex.Kind);
        Assert.DoesNotContain(new string('a', 81), ex.Message, StringComparison.Ordinal);
        Assert.True(ex.Message.Length < 400, "the refusal quotes the request: " + ex.Message.Length + " characters");
    }
}
