using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Google.Protobuf;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;
using Google.Protobuf.WellKnownTypes;

namespace Ambient.Istiod.Tests.Ca;

public sealed class CertificateServiceTests : IDisposable
{
    private const string WebOnNode1 = "spiffe://cluster.local/ns/demo/sa/web";
    private const string DbOnNode2 = "spiffe://cluster.local/ns/demo/sa/db";
    private readonly TempDir _dir = new();
    private readonly CaSigner _root;
    private readonly CertificateService _service;
    private readonly ListLogger<CertificateService> _logger = new();
    private readonly string _node1Token;

    public CertificateServiceTests()
    {
        _root = CaStore.LoadOrCreate(_dir.Path);
        var tokens = new NodeTokens(_dir.Path);
        _node1Token = tokens.GetOrCreate("node-1");
        tokens.GetOrCreate("node-2");
        var pods = new PodPlacement().Add("node-1", WebOnNode1).Add("node-2", DbOnNode2);
        _service = new CertificateService(new CertificateAuthority(_root), tokens, pods, _logger);
    }

    public void Dispose()
    {
        _root.Dispose();
        _dir.Dispose();
    }

    private static IstioCertificateRequest Request(string csrPem, string? impersonate, long validity = 0)
    {
        var request = new IstioCertificateRequest { Csr = csrPem, ValidityDuration = validity, Metadata = new Struct() };
        if (impersonate is not null)
        {
            request.Metadata.Fields[CertificateService.ImpersonatedIdentityField] = Value.ForString(impersonate);
        }
        return request;
    }

    [Fact]
    public void PodOnCallersNode_GetsLeafAndRoot_AndIssuanceIsLogged()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(WebOnNode1));

        var response = _service.CreateCertificate(Request(csr.CsrPem, WebOnNode1, 3600), "Bearer " + _node1Token);

        Assert.Equal(2, response.CertChain.Count);
        Assert.Equal(_root.CertificatePem, response.CertChain[1]);
        using var leaf = csr.CombineWithLeaf(response.CertChain[0]);
        Assert.True(_root.CreateTrustBundle().ValidateChain(leaf, null, out var identity, out var error), error);
        Assert.Equal(WebOnNode1, identity.ToString());
        Assert.InRange(leaf.NotAfter.ToUniversalTime() - DateTime.UtcNow, TimeSpan.FromMinutes(59), TimeSpan.FromMinutes(61));

        var log = Assert.Single(_logger.Entries);
        Assert.Equal(1001, log.EventId.Id);
        Assert.Contains(WebOnNode1, log.Message, StringComparison.Ordinal);
        Assert.Contains("node-1", log.Message, StringComparison.Ordinal);
        Assert.Contains(leaf.SerialNumber, log.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WireRoundTrip_OfRequestAndResponse_Works()
    {
        // The transport will hand us a parsed message; make sure the generated types carry our fields intact.
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(WebOnNode1));
        var bytes = Request(csr.CsrPem, WebOnNode1).ToByteArray();
        var parsed = IstioCertificateRequest.Parser.ParseFrom(bytes);

        var response = IstioCertificateResponse.Parser.ParseFrom(_service.CreateCertificate(parsed, "Bearer " + _node1Token).ToByteArray());

        Assert.Equal(2, response.CertChain.Count);
    }

    [Fact]
    public void PodOnAnotherNode_IsRefused()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(DbOnNode2));

        var ex = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(Request(csr.CsrPem, DbOnNode2), "Bearer " + _node1Token));

        Assert.Equal(CaErrorKind.Unauthenticated, ex.Kind);
        Assert.Equal(16, ex.GrpcStatusCode);
        Assert.Equal($"node 'node-1' may not obtain identity {DbOnNode2}: no running pod with that service account on this node", ex.Message);
        Assert.Contains(_logger.Entries, e => e.EventId.Id == 1002);
    }

    [Fact]
    public void ForeignTrustDomain_IsRefused()
    {
        const string foreign = "spiffe://evil.example/ns/demo/sa/web";
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(foreign));

        var ex = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(Request(csr.CsrPem, foreign), "Bearer " + _node1Token));

        Assert.Equal(CaErrorKind.Unauthenticated, ex.Kind);
        Assert.Contains("trust domain 'evil.example'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WithoutImpersonatedIdentity_IsUnauthenticated_AndSaysWhy()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(WebOnNode1));

        var ex = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(Request(csr.CsrPem, null), "Bearer " + _node1Token));
        Assert.Equal(CaErrorKind.Unauthenticated, ex.Kind);
        Assert.Contains("not supported in local mode", ex.Message, StringComparison.Ordinal);

        var noMetadata = new IstioCertificateRequest { Csr = csr.CsrPem };
        Assert.Equal(CaErrorKind.Unauthenticated,
            Assert.Throws<CaRequestException>(() => _service.CreateCertificate(noMetadata, "Bearer " + _node1Token)).Kind);
    }

    [Theory]
    [InlineData(null, "missing")]
    [InlineData("", "missing")]
    [InlineData("Basic x", "must be 'Bearer <node token>'")]
    [InlineData("Bearer not-a-token", "does not belong to any node")]
    public void BadCredentials_AreUnauthenticated(string? header, string reason)
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(WebOnNode1));

        var ex = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(Request(csr.CsrPem, WebOnNode1), header));

        Assert.Equal(CaErrorKind.Unauthenticated, ex.Kind);
        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MalformedIdentityOrCsr_IsInvalidArgument()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(WebOnNode1));
        var auth = "Bearer " + _node1Token;

        var badId = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(Request(csr.CsrPem, "spiffe://cluster.local/ns/demo"), auth));
        Assert.Equal(CaErrorKind.InvalidArgument, badId.Kind);
        Assert.Equal(3, badId.GrpcStatusCode);
        Assert.Contains("ImpersonatedIdentity", badId.Message, StringComparison.Ordinal);

        var numberId = Request(csr.CsrPem, null);
        numberId.Metadata.Fields[CertificateService.ImpersonatedIdentityField] = Value.ForNumber(7);
        var badType = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(numberId, auth));
        Assert.Equal(CaErrorKind.InvalidArgument, badType.Kind);
        Assert.Contains("must be a string", badType.Message, StringComparison.Ordinal);

        var badCsr = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(Request("not a csr", WebOnNode1), auth));
        Assert.Equal(CaErrorKind.InvalidArgument, badCsr.Kind);
        Assert.IsType<InvalidCsrException>(badCsr.InnerException);
    }

    [Fact]
    public void HugeValidity_IsInvalidArgument_NotOverflowed()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(WebOnNode1));

        var ex = Assert.Throws<CaRequestException>(() => _service.CreateCertificate(Request(csr.CsrPem, WebOnNode1, long.MaxValue), "Bearer " + _node1Token));

        Assert.Equal(CaErrorKind.InvalidArgument, ex.Kind);
    }
}
