using Ambient.Core.Protos.Discovery;
using Ambient.Core.Xds;
using Ambient.Istiod.Discovery;
using Grpc.Core;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>
/// istiod-lite's gRPC services as a gRPC client sees them (Grpc.Net.Client against the real host): a stream the client
/// cancels, disposes or lets time out ends its xDS session on the server and releases it; unknown methods are
/// UNIMPLEMENTED; oversized requests are RESOURCE_EXHAUSTED; bad credentials are UNAUTHENTICATED with our message.
/// </summary>
public sealed class GrpcServiceTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private IstiodFixture _istiod = null!;
    private IstiodGrpcClient _client = null!;

    public async ValueTask InitializeAsync()
    {
        _istiod = await IstiodFixture.StartAsync(Meshes.Demo());
        _client = new IstiodGrpcClient(_istiod);
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _istiod.DisposeAsync();
    }

    private DiscoveryState Discovery => _istiod.Host.Mesh.Discovery;

    private static DeltaDiscoveryRequest Subscribe(string typeUrl) => new() { TypeUrl = typeUrl, ResourceNamesSubscribe = { "*" } };

    // Opens a stream as node-1 and reads the first push, so the server's session is surely running.
    private async Task<AsyncDuplexStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse>> OpenSessionAsync(
        CancellationToken cancellationToken = default, DateTime? deadline = null)
    {
        var call = _client.StartDiscovery(IstiodGrpcClient.BearerOf(_istiod.TokenOf("node-1")), cancellationToken, deadline);
        await call.RequestStream.WriteAsync(Subscribe(XdsTypeUrls.Address), TestContext.Current.CancellationToken);
        Assert.True(await call.ResponseStream.MoveNext(TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken));
        Assert.Equal(XdsTypeUrls.Address, call.ResponseStream.Current.TypeUrl);
        Assert.Equal(1, Discovery.OpenSessions);
        return call;
    }

    private async Task WaitForNoSessionAsync(string after)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (Discovery.OpenSessions != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the server still holds {Discovery.OpenSessions} xDS session(s) {Patience.TotalSeconds} s after {after}");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task Disposing_a_discovery_call_ends_its_session_on_the_server()
    {
        var call = await OpenSessionAsync();
        call.Dispose();
        await WaitForNoSessionAsync("the client disposed the call");
    }

    [Fact]
    public async Task Cancelling_a_discovery_call_ends_its_session_on_the_server()
    {
        using var cancel = new CancellationTokenSource();
        using var call = await OpenSessionAsync(cancel.Token);
        var reading = call.ResponseStream.MoveNext(TestContext.Current.CancellationToken);
        await cancel.CancelAsync();
        var e = await Assert.ThrowsAsync<RpcException>(() => reading.WaitAsync(Patience, TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.Cancelled, e.StatusCode);
        await WaitForNoSessionAsync("the client cancelled the call");
    }

    [Fact]
    public async Task A_discovery_call_past_its_deadline_is_deadline_exceeded_and_released()
    {
        using var call = await OpenSessionAsync(deadline: DateTime.UtcNow.AddSeconds(2));
        // Nothing changes in the mesh: the stream idles until the deadline ends it.
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        await WaitForNoSessionAsync("the deadline passed");
    }

    [Fact]
    public async Task A_discovery_request_over_4_MiB_is_resource_exhausted_and_released()
    {
        using var call = await OpenSessionAsync();
        var huge = Subscribe(XdsTypeUrls.Address);
        huge.ResourceNamesSubscribe.Add(new string('a', IstiodHost.MaxReceiveMessageSize + 1));
        try
        {
            await call.RequestStream.WriteAsync(huge, TestContext.Current.CancellationToken);
        }
        catch (RpcException)
        {
            // The server may end the call while the message is still going out; its status is read below.
        }
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken))
            {
            }
        });
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        await WaitForNoSessionAsync("the oversized request");
    }

    [Fact]
    public async Task A_discovery_call_without_a_node_token_is_unauthenticated_and_opens_no_session()
    {
        using var call = _client.StartDiscovery([]);
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.Equal("workload discovery needs 'authorization: Bearer <node token>' (local mode: <state>/tokens/<node>.token)", e.Status.Detail);
        Assert.Equal(0, Discovery.OpenSessions);
    }

    [Fact]
    public async Task A_certificate_request_with_a_wrong_token_is_unauthenticated()
    {
        var call = _client.Invoker.AsyncUnaryCall(IstiodGrpcClient.CreateCertificate, null,
            new CallOptions(IstiodGrpcClient.BearerOf("not-a-node-token")), new Ambient.Core.Protos.Ca.IstioCertificateRequest { Csr = "x" });
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(Patience, TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.False(string.IsNullOrEmpty(e.Status.Detail));
    }

    [Theory]
    [InlineData("envoy.service.discovery.v3.AggregatedDiscoveryService", "StreamAggregatedResources")]
    [InlineData("istio.v1.auth.IstioCertificateService", "Sign")]
    [InlineData("no.such.Service", "Method")]
    public async Task A_call_to_a_method_not_served_is_unimplemented(string service, string method)
    {
        var unknown = new Method<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(MethodType.DuplexStreaming, service, method,
            IstiodGrpcClient.DeltaAggregatedResources.RequestMarshaller, IstiodGrpcClient.DeltaAggregatedResources.ResponseMarshaller);
        using var call = _client.Invoker.AsyncDuplexStreamingCall(unknown, null, new CallOptions(IstiodGrpcClient.BearerOf(_istiod.TokenOf("node-1"))));
        var e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }
}
