using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;
using Ambient.TestCommon.Kube;
using Google.Protobuf.WellKnownTypes;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>
/// TokenReview over HTTPS against the fake Kubernetes API server, with KubernetesClient: what istiod-lite sends
/// (spec.audiences = [istio-ca]) and how it reads the answer, and the CA's rules on top of the real round trip.
/// </summary>
public sealed class KubernetesTokenReviewerTests : IAsyncLifetime
{
    private FakeKubeApiServer _api = null!;
    private k8s.Kubernetes _client = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);
        _client = _api.CreateClient();
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task PodBoundToken_ForIstioCa_IsAuthenticated_WithItsPod()
    {
        var token = _api.AddServiceAccountToken("istio-system", "ztunnel", ["istio-ca"], podName: "ztunnel-abc", podUid: "uid-1", nodeName: "node-1");

        var verdict = await new KubernetesTokenReviewer(_client).ReviewAsync(token, "istio-ca", TestContext.Current.CancellationToken);

        Assert.True(verdict.Authenticated, verdict.Error);
        Assert.Equal("system:serviceaccount:istio-system:ztunnel", verdict.Username);
        Assert.Contains("system:serviceaccounts", verdict.Groups);
        Assert.Equal(["istio-ca"], verdict.Audiences);
        Assert.Equal("ztunnel-abc", verdict.SingleExtra(TokenReviewVerdict.PodNameExtra));
        Assert.Equal("uid-1", verdict.SingleExtra(TokenReviewVerdict.PodUidExtra));
        Assert.Contains("POST /apis/authentication.k8s.io/v1/tokenreviews", _api.Requests);
    }

    [Fact]
    public async Task TokenForAnotherAudience_IsNotAuthenticated()
    {
        var token = _api.AddServiceAccountToken("demo", "web", [FakeKubeApiServer.ApiAudience], podName: "web-1");

        var verdict = await new KubernetesTokenReviewer(_client).ReviewAsync(token, "istio-ca", TestContext.Current.CancellationToken);

        Assert.False(verdict.Authenticated);
        Assert.Contains("is invalid for the target audiences [istio-ca]", verdict.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ApiRefusingIstiodsOwnCredential_IsUnavailable_NamingTheRbac()
    {
        var istiod = _api.AddServiceAccountToken("istio-system", "istiod", [FakeKubeApiServer.ApiAudience]);
        _api.Authorize = request => request.Resource?.Resource != "tokenreviews";
        using var client = _api.CreateClient(istiod);

        var ex = await Assert.ThrowsAsync<TokenReviewUnavailableException>(() =>
            new KubernetesTokenReviewer(client).ReviewAsync("anything", "istio-ca", TestContext.Current.CancellationToken));

        Assert.Contains("HTTP 403", ex.Message, StringComparison.Ordinal);
        Assert.Contains("'create' on tokenreviews.authentication.k8s.io", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ApiDown_IsUnavailable()
    {
        using var client = _api.CreateClient();
        await _api.DisposeAsync();

        await Assert.ThrowsAsync<TokenReviewUnavailableException>(() =>
            new KubernetesTokenReviewer(client).ReviewAsync("anything", "istio-ca", TestContext.Current.CancellationToken));
        _api = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken); // for DisposeAsync
    }

    [Fact]
    public async Task CertificateService_OverRealTokenReviews_IssuesOwnAndImpersonatedIdentities_AndRefusesTheRest()
    {
        using var dir = new TempDir();
        using var root = CaStore.LoadOrCreate(dir.Path);
        var pods = new PodPlacement()
            .AddPod("istio-system", "ztunnel-abc", "uid-1", "ztunnel", "node-1")
            .AddPod("demo", "web-1", "uid-web", "web", "node-1")
            .AddPod("demo", "db-1", "uid-db", "db", "node-2");
        var service = new CertificateService(new CertificateAuthority(root),
            new ServiceAccountTokenPolicy(new KubernetesTokenReviewer(_client), pods, TrustedNodeAccounts.TryParse("istio-system/ztunnel", out _)!,
                "cluster.local", new TokenReviewCache(TimeProvider.System, TimeSpan.FromMinutes(1))),
            new ListLogger<CertificateService>());
        var ztunnel = "Bearer " + _api.AddServiceAccountToken("istio-system", "ztunnel", ["istio-ca"], "ztunnel-abc", "uid-1", "node-1");
        var web = "Bearer " + _api.AddServiceAccountToken("demo", "web", ["istio-ca"], "web-1", "uid-web", "node-1");
        var ct = TestContext.Current.CancellationToken;

        Assert.Equal("spiffe://cluster.local/ns/demo/sa/web", await Issue(service, web, "spiffe://cluster.local/ns/demo/sa/web", impersonate: false, ct));
        Assert.Equal("spiffe://cluster.local/ns/demo/sa/web", await Issue(service, ztunnel, "spiffe://cluster.local/ns/demo/sa/web", impersonate: true, ct));
        var otherNode = await Assert.ThrowsAsync<CaRequestException>(() => Issue(service, ztunnel, "spiffe://cluster.local/ns/demo/sa/db", impersonate: true, ct));
        Assert.Equal(CaErrorKind.PermissionDenied, otherNode.Kind);
        var untrusted = await Assert.ThrowsAsync<CaRequestException>(() => Issue(service, web, "spiffe://cluster.local/ns/demo/sa/db", impersonate: true, ct));
        Assert.Equal(CaErrorKind.PermissionDenied, untrusted.Kind);
        var wrongAudience = await Assert.ThrowsAsync<CaRequestException>(() => Issue(service,
            "Bearer " + _api.AddServiceAccountToken("demo", "web", [FakeKubeApiServer.ApiAudience], "web-1", "uid-web"), "spiffe://cluster.local/ns/demo/sa/web", impersonate: false, ct));
        Assert.Equal(CaErrorKind.Unauthenticated, wrongAudience.Kind);
    }

    private static async Task<string> Issue(CertificateService service, string authorization, string identity, bool impersonate, CancellationToken ct)
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(identity));
        var request = new IstioCertificateRequest { Csr = csr.CsrPem, Metadata = new Struct() };
        if (impersonate)
        {
            request.Metadata.Fields[CertificateService.ImpersonatedIdentityField] = Value.ForString(identity);
        }
        var response = await service.CreateCertificateAsync(request, authorization, ct);
        using var leaf = csr.CombineWithLeaf(response.CertChain[0]);
        return Assert.Single(CertificateSpiffe.GetUriSans(leaf));
    }
}
