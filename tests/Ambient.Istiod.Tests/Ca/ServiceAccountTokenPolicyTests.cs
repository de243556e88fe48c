using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;
using Google.Protobuf.WellKnownTypes;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>
/// Kubernetes-mode CA authentication, Istio's rules (kube_jwt.go, node_auth.go) against a TokenReview seam: the
/// caller's own identity from its service-account token, impersonation only for trusted node accounts and only for
/// identities with a pod on the node of the caller's (uid-checked) pod.
/// </summary>
public sealed class ServiceAccountTokenPolicyTests : IDisposable
{
    private const string Web = "spiffe://cluster.local/ns/demo/sa/web";
    private const string Db = "spiffe://cluster.local/ns/demo/sa/db";
    private const string ZtunnelUid = "8a96caaf-1de9-4cef-915f-ace02c764e52";
    private readonly TempDir _dir = new();
    private readonly CaSigner _root;
    private readonly FakeTokenReviewer _api = new();
    private readonly ManualTime _time = new(DateTimeOffset.UtcNow);
    private readonly ListLogger<CertificateService> _logger = new();
    private readonly PodPlacement _pods = new PodPlacement()
        .AddPod("istio-system", "ztunnel-abc", ZtunnelUid, "ztunnel", "node-1")
        .AddPod("demo", "web-1", "uid-web-1", "web", "node-1")
        .AddPod("demo", "db-1", "uid-db-1", "db", "node-2");

    public ServiceAccountTokenPolicyTests() => _root = CaStore.LoadOrCreate(_dir.Path);

    public void Dispose()
    {
        _root.Dispose();
        _dir.Dispose();
    }

    private CertificateService Service(string trusted = "istio-system/ztunnel") => new(new CertificateAuthority(_root),
        new ServiceAccountTokenPolicy(_api, _pods, TrustedNodeAccounts.TryParse(trusted, out _)!, "cluster.local",
            new TokenReviewCache(_time, TimeSpan.FromMinutes(1))), _logger);

    private string ZtunnelToken(string? uid = ZtunnelUid, string pod = "ztunnel-abc") =>
        _api.Issue("istio-system", "ztunnel", pod, uid, _time.Now.AddHours(1));

    private static IstioCertificateRequest Request(WorkloadCsr csr, string? impersonate = null)
    {
        var request = new IstioCertificateRequest { Csr = csr.CsrPem, Metadata = new Struct() };
        if (impersonate is not null)
        {
            request.Metadata.Fields[CertificateService.ImpersonatedIdentityField] = Value.ForString(impersonate);
        }
        return request;
    }

    private SpiffeId Issued(IstioCertificateResponse response, WorkloadCsr csr)
    {
        using var leaf = csr.CombineWithLeaf(response.CertChain[0]);
        Assert.True(_root.CreateTrustBundle().ValidateChain(leaf, null, out var identity, out var error), error);
        return identity;
    }

    private static async Task<CaRequestException> Refused(Task<IstioCertificateResponse> call) =>
        await Assert.ThrowsAsync<CaRequestException>(() => call);

    [Fact]
    public async Task CallerWithoutImpersonation_GetsItsOwnIdentity()
    {
        var token = _api.Issue("demo", "web", "web-1", "uid-web-1", _time.Now.AddHours(1));
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var response = await Service().CreateCertificateAsync(Request(csr), "Bearer " + token);

        Assert.Equal(Web, Issued(response, csr).ToString());
        Assert.Contains(_logger.Entries, e => e.EventId.Id == 1001 && e.Message.Contains("demo/web", StringComparison.Ordinal));
    }

    [Fact]
    public async Task CsrAskingForAnotherSan_IsRefused()
    {
        var token = _api.Issue("demo", "web", "web-1", "uid-web-1", _time.Now.AddHours(1));
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Db));

        var ex = await Refused(Service().CreateCertificateAsync(Request(csr), "Bearer " + token).AsTask());

        Assert.Equal(CaErrorKind.PermissionDenied, ex.Kind);
        Assert.Equal(7, ex.GrpcStatusCode);
        Assert.Contains("URI SAN 'spiffe://cluster.local/ns/demo/sa/db'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TrustedNodeAccount_ImpersonatesPodOnItsNode()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var response = await Service().CreateCertificateAsync(Request(csr, Web), "Bearer " + ZtunnelToken());

        Assert.Equal(Web, Issued(response, csr).ToString());
    }

    [Fact]
    public async Task TrustedNodeAccount_MayNotImpersonatePodOnAnotherNode()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Db));

        var ex = await Refused(Service().CreateCertificateAsync(Request(csr, Db), "Bearer " + ZtunnelToken()).AsTask());

        Assert.Equal(CaErrorKind.PermissionDenied, ex.Kind);
        Assert.Contains("no pod of demo/db runs on its node 'node-1'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UntrustedAccount_MayNotImpersonate()
    {
        var token = _api.Issue("demo", "web", "web-1", "uid-web-1", _time.Now.AddHours(1));
        _pods.AddPod("demo", "web-2", "uid-web-2", "db", "node-1"); // db has a pod on web-1's node: still not web's to ask
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Db));

        var ex = await Refused(Service().CreateCertificateAsync(Request(csr, Db), "Bearer " + token).AsTask());
        var none = await Refused(Service(trusted: "").CreateCertificateAsync(Request(csr, Db), "Bearer " + ZtunnelToken()).AsTask());

        Assert.Equal(CaErrorKind.PermissionDenied, ex.Kind);
        Assert.Contains("service account demo/web is not allowed to impersonate (CA_TRUSTED_NODE_ACCOUNTS: istio-system/ztunnel)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("(CA_TRUSTED_NODE_ACCOUNTS: empty)", none.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ImpersonatingOnesOwnIdentity_IsNotImpersonation()
    {
        var token = _api.Issue("demo", "web", "web-1", "uid-web-1", _time.Now.AddHours(1));
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var response = await Service(trusted: "").CreateCertificateAsync(Request(csr, Web), "Bearer " + token);

        Assert.Equal(Web, Issued(response, csr).ToString());
    }

    [Fact]
    public async Task CallerPodUidMismatch_IsRefused()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var ex = await Refused(Service().CreateCertificateAsync(Request(csr, Web), "Bearer " + ZtunnelToken(uid: "uid-of-an-older-pod")).AsTask());
        var noUid = await Refused(Service().CreateCertificateAsync(Request(csr, Web), "Bearer " + ZtunnelToken(uid: null)).AsTask());

        Assert.Equal(CaErrorKind.PermissionDenied, ex.Kind);
        Assert.Contains($"its uid does not match the token's: {ZtunnelUid} vs uid-of-an-older-pod", ex.Message, StringComparison.Ordinal);
        Assert.Equal(CaErrorKind.PermissionDenied, noUid.Kind);
    }

    [Fact]
    public async Task CallerPodUnknown_IsRefused()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var ex = await Refused(Service().CreateCertificateAsync(Request(csr, Web), "Bearer " + ZtunnelToken(pod: "ztunnel-gone")).AsTask());
        var unbound = await Refused(Service().CreateCertificateAsync(Request(csr, Web),
            "Bearer " + _api.Issue("istio-system", "ztunnel", expires: _time.Now.AddHours(1))).AsTask());

        Assert.Equal(CaErrorKind.PermissionDenied, ex.Kind);
        Assert.Contains("its pod istio-system/ztunnel-gone is not known", ex.Message, StringComparison.Ordinal);
        Assert.Contains("not bound to a pod", unbound.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WrongAudience_IsUnauthenticated()
    {
        var token = _api.Issue("demo", "web", "web-1", "uid-web-1", _time.Now.AddHours(1), "https://kubernetes.default.svc.cluster.local");
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var ex = await Refused(Service().CreateCertificateAsync(Request(csr), "Bearer " + token).AsTask());

        Assert.Equal(CaErrorKind.Unauthenticated, ex.Kind);
        Assert.Contains("is invalid for the target audiences [\"istio-ca\"]", ex.Message, StringComparison.Ordinal);
        Assert.Contains("audience 'istio-ca'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReviewNotConfirmingTheAudience_IsUnauthenticated()
    {
        // Kubernetes: a client that sets spec.audiences must find one of them in status.audiences, or the server
        // did not check them.
        _api.IgnoresAudiences = true;
        var token = _api.Issue("demo", "web", "web-1", "uid-web-1", _time.Now.AddHours(1), "https://kubernetes.default.svc.cluster.local");
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var ex = await Refused(Service().CreateCertificateAsync(Request(csr), "Bearer " + token).AsTask());

        Assert.Equal(CaErrorKind.Unauthenticated, ex.Kind);
        Assert.Contains("not valid for audience 'istio-ca' (TokenReview audiences: [])", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownOrMissingToken_IsUnauthenticated()
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var unknown = await Refused(Service().CreateCertificateAsync(Request(csr), "Bearer not-a-token").AsTask());
        var missing = await Refused(Service().CreateCertificateAsync(Request(csr), null).AsTask());

        Assert.Equal(CaErrorKind.Unauthenticated, unknown.Kind);
        Assert.Contains("did not authenticate the service-account token: invalid bearer token", unknown.Message, StringComparison.Ordinal);
        Assert.Equal(CaErrorKind.Unauthenticated, missing.Kind);
        Assert.Contains("Bearer <service-account token>", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ApiUnreachable_IsUnavailable()
    {
        _api.Unreachable = true;
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        var ex = await Refused(Service().CreateCertificateAsync(Request(csr), "Bearer " + ZtunnelToken()).AsTask());

        Assert.Equal(CaErrorKind.Unavailable, ex.Kind);
        Assert.Equal(14, ex.GrpcStatusCode);
    }

    [Fact]
    public async Task SuccessfulReview_IsCachedBriefly_AndNeverPastTheTokensExpiry()
    {
        var service = Service();
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));
        var longLived = ZtunnelToken();
        var shortLived = _api.Issue("istio-system", "ztunnel", "ztunnel-abc", ZtunnelUid, _time.Now.AddSeconds(10));
        var noExpiry = _api.Issue("istio-system", "ztunnel", "ztunnel-abc", ZtunnelUid, expires: null);

        await service.CreateCertificateAsync(Request(csr, Web), "Bearer " + longLived);
        await service.CreateCertificateAsync(Request(csr, Web), "Bearer " + longLived);
        Assert.Equal(1, _api.Reviews);
        _time.Now += TimeSpan.FromSeconds(61);
        await service.CreateCertificateAsync(Request(csr, Web), "Bearer " + longLived);
        Assert.Equal(2, _api.Reviews);

        await service.CreateCertificateAsync(Request(csr, Web), "Bearer " + shortLived);
        _time.Now += TimeSpan.FromSeconds(11); // past the token's exp, well within the cache lifetime
        await service.CreateCertificateAsync(Request(csr, Web), "Bearer " + shortLived);
        Assert.Equal(4, _api.Reviews);

        await service.CreateCertificateAsync(Request(csr, Web), "Bearer " + noExpiry);
        await service.CreateCertificateAsync(Request(csr, Web), "Bearer " + noExpiry);
        Assert.Equal(6, _api.Reviews);
    }

    [Fact]
    public async Task RefusedReview_IsNotCached()
    {
        var service = Service();
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Web));

        await Refused(service.CreateCertificateAsync(Request(csr), "Bearer not-a-token").AsTask());
        await Refused(service.CreateCertificateAsync(Request(csr), "Bearer not-a-token").AsTask());

        Assert.Equal(2, _api.Reviews);
    }

    [Theory]
    [InlineData("istio-system/ztunnel", true)]
    [InlineData(" istio-system/ztunnel , kube-system/ztunnel ", true)]
    [InlineData("", true)]
    [InlineData("ztunnel", false)]
    [InlineData("a/b/c", false)]
    [InlineData("/ztunnel", false)]
    public void TrustedNodeAccounts_ParseAsIstio(string text, bool valid)
    {
        var parsed = TrustedNodeAccounts.TryParse(text, out var error);

        Assert.Equal(valid, parsed is not null);
        Assert.Equal(valid, error is null);
        if (valid && text.Contains("istio-system", StringComparison.Ordinal))
        {
            Assert.True(parsed!.Contains("istio-system", "ztunnel"));
            Assert.False(parsed.Contains("istio-system", "ztunnel2"));
        }
    }
}
