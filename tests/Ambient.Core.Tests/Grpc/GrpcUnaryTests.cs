using System.Net;
using System.Net.Sockets;
using Ambient.Core.Grpc;
using Ambient.Core.Protos.Ca;
using Microsoft.Extensions.Logging;

namespace Ambient.Core.Tests.Grpc;

/// <summary>Unary calls through our GrpcClient against our server on a real Kestrel (h2c and TLS).</summary>
public sealed class GrpcUnaryTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Unary_call_round_trips_message_and_metadata(bool tls)
    {
        await using var host = await GrpcTestHost.StartAsync(tls);
        var options = new GrpcCallOptions(
            [new("authorization", "Bearer token-1"), new("clusterid", "Kubernetes")],
            TimeSpan.FromSeconds(30));

        var response = await host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = "hello", ValidityDuration = 3600 }, IstioCertificateResponse.Parser, options, Ct);

        Assert.Equal("hello", response.CertChain[0]);
        Assert.Equal("authorization=Bearer token-1", response.CertChain[1]);
        Assert.Equal("clusterid=Kubernetes", response.CertChain[2]);
        Assert.Equal("deadline=set", response.CertChain[3]);
        Assert.Equal("client=", response.CertChain[4]);
        Assert.StartsWith("peer=127.0.0.1:", response.CertChain[5]);
        Assert.Equal("validity=3600", response.CertChain[6]);
        Assert.Empty(host.Server.Logs.AtLeast(LogLevel.Warning));
    }

    [Fact]
    public async Task Tls_client_certificate_reaches_the_handler()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: true, requireClientCertificate: true);

        var response = await host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = "mtls" }, IstioCertificateResponse.Parser, cancellationToken: Ct);

        Assert.Equal("client=CN=test-client", response.CertChain[4]);
        Assert.Equal("deadline=none", response.CertChain[3]);
    }

    [Theory]
    [InlineData(false, 16 /* Unauthenticated */, "caller is not allowed")]
    [InlineData(true, 7 /* PermissionDenied */, "ünïcødé ✓ 100% done\r\nsecond line 日本")]
    [InlineData(false, 3 /* InvalidArgument */, "%41 is not an escape here")]
    public async Task GrpcException_status_and_message_round_trip(bool tls, int code, string message)
    {
        var status = (GrpcStatusCode)code;
        await using var host = await GrpcTestHost.StartAsync(tls);

        var ex = await Assert.ThrowsAsync<GrpcException>(() => host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = $"fail:{(int)status}:{message}" }, IstioCertificateResponse.Parser, cancellationToken: Ct));

        Assert.Equal(status, ex.Status);
        Assert.Equal(message, ex.Detail);
    }

    [Fact]
    public async Task Unknown_path_is_unimplemented()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);

        var ex = await Assert.ThrowsAsync<GrpcException>(() => host.Client.UnaryAsync("/no.Such/Method",
            new IstioCertificateRequest(), IstioCertificateResponse.Parser, cancellationToken: Ct));

        Assert.Equal(GrpcStatusCode.Unimplemented, ex.Status);
        Assert.Contains("/no.Such/Method", ex.Detail);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Oversized_request_is_resource_exhausted(bool tls)
    {
        await using var host = await GrpcTestHost.StartAsync(tls);
        var request = new IstioCertificateRequest { Csr = new string('a', 5 * 1024 * 1024) };

        var ex = await Assert.ThrowsAsync<GrpcException>(() => host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            request, IstioCertificateResponse.Parser, cancellationToken: Ct));

        Assert.Equal(GrpcStatusCode.ResourceExhausted, ex.Status);
        Assert.Contains(request.CalculateSize().ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Detail);
        Assert.Contains("4194304", ex.Detail);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)] // Kestrel's default 768 KB stream window: flow control must still move a 3 MiB message
    public async Task Large_messages_below_the_limit_pass_both_ways(bool tls, bool plainKestrelLimits)
    {
        await using var host = await GrpcTestHost.StartAsync(tls, plainKestrelLimits: plainKestrelLimits);
        var payload = new string('q', 3 * 1024 * 1024 + 17);

        var echoed = await host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = payload }, IstioCertificateResponse.Parser, cancellationToken: Ct);
        var big = await host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = "big:4000000" }, IstioCertificateResponse.Parser, cancellationToken: Ct);

        Assert.Equal(payload, echoed.CertChain[0]);
        Assert.Equal(4_000_000, big.CertChain[0].Length);
    }

    [Fact]
    public async Task Oversized_response_is_resource_exhausted_on_the_client()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);

        var ex = await Assert.ThrowsAsync<GrpcException>(() => host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = "big:5000000" }, IstioCertificateResponse.Parser, cancellationToken: Ct));

        Assert.Equal(GrpcStatusCode.ResourceExhausted, ex.Status);
        Assert.Contains("4194304", ex.Detail);
    }

    [Fact]
    public async Task Handler_exception_is_unknown_with_generic_message_and_is_logged()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);

        var ex = await Assert.ThrowsAsync<GrpcException>(() => host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = "throw" }, IstioCertificateResponse.Parser, cancellationToken: Ct));

        Assert.Equal(GrpcStatusCode.Unknown, ex.Status);
        Assert.DoesNotContain("secret", ex.Detail);
        var errors = host.Server.Logs.AtLeast(LogLevel.Error);
        var error = Assert.Single(errors);
        Assert.IsType<InvalidOperationException>(error.Exception);
    }

    [Fact]
    public async Task Deadline_exceeded_when_handler_outlives_the_timeout()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);

        var ex = await Assert.ThrowsAsync<GrpcException>(() => host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = "delay:20000" }, IstioCertificateResponse.Parser,
            // Long enough that a loaded machine still dispatches the handler before the deadline (with 300 ms the
            // client sometimes gave up before the server ever ran it), far shorter than the handler's 20 s.
            new GrpcCallOptions(Timeout: TimeSpan.FromSeconds(2)), Ct));

        Assert.Equal(GrpcStatusCode.DeadlineExceeded, ex.Status);
        Assert.True(host.DelayStarted.Task.IsCompleted, "the handler never started before the 2 s deadline");
        // The server's token fired too (from grpc-timeout or the client's reset), not after 20 s.
        Assert.Equal("cancelled", await host.DelayOutcome.Task.WaitAsync(TimeSpan.FromSeconds(15), Ct));
    }

    [Fact]
    public async Task Client_cancellation_is_cancelled_and_reaches_the_server_token()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: true);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        var call = host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = "delay:30000" }, IstioCertificateResponse.Parser, cancellationToken: cts.Token);
        await host.DelayStarted.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        cts.Cancel();

        var ex = await Assert.ThrowsAsync<GrpcException>(() => call);
        Assert.Equal(GrpcStatusCode.Cancelled, ex.Status);
        Assert.Equal("cancelled", await host.DelayOutcome.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct));
    }

    [Fact]
    public async Task Non_200_http_status_maps_to_grpc_status()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);

        var ex = await Assert.ThrowsAsync<GrpcException>(() => host.Client.UnaryAsync(GrpcTestHost.Http503Path,
            new IstioCertificateRequest(), IstioCertificateResponse.Parser, cancellationToken: Ct));

        Assert.Equal(GrpcStatusCode.Unavailable, ex.Status);
        Assert.Contains("503", ex.Detail);
    }

    [Fact]
    public async Task Connection_refused_is_unavailable()
    {
        // Bound, never listening, held for the test: connects are refused, and unlike the port of a server that was
        // stopped, nobody else can start listening there meanwhile.
        using var refusing = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        refusing.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)refusing.LocalEndPoint!).Port;

        using var invoker = new HttpMessageInvoker(new SocketsHttpHandler { UseProxy = false });
        var client = new GrpcClient(invoker, new Uri($"http://127.0.0.1:{port}/"));

        var ex = await Assert.ThrowsAsync<GrpcException>(() => client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest(), IstioCertificateResponse.Parser, cancellationToken: Ct));

        Assert.Equal(GrpcStatusCode.Unavailable, ex.Status);
    }

    [Fact]
    public async Task Reserved_metadata_names_are_rejected_before_sending()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => host.Client.UnaryAsync(GrpcTestHost.UnaryPath,
            new IstioCertificateRequest(), IstioCertificateResponse.Parser, new GrpcCallOptions([new("grpc-status", "0")]), Ct));

        Assert.Contains("grpc-status", ex.Message);
    }
}
