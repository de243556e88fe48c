using System.Globalization;
using Ambient.Core.Grpc;
using Ambient.Core.Protos.Ca;

namespace Ambient.Core.Tests.Grpc;

/// <summary>Bidirectional streams through GrpcClient/GrpcDuplexCall against our server (h2c and TLS).</summary>
public sealed class GrpcDuplexTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Duplex_echoes_many_messages_while_writing_and_reading_concurrently(bool tls)
    {
        await using var host = await GrpcTestHost.StartAsync(tls);
        await using var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.EchoPath, IstioCertificateResponse.Parser, cancellationToken: Ct);
        const int Count = 2000;

        var writer = Task.Run(async () =>
        {
            for (var i = 0; i < Count; i++)
            {
                // Every 100th message is large so messages span many DATA frames.
                var csr = i % 100 == 0 ? i.ToString(CultureInfo.InvariantCulture) + new string('z', 100_000) : i.ToString(CultureInfo.InvariantCulture);
                await call.WriteAsync(new IstioCertificateRequest { Csr = csr }, Ct);
            }

            await call.CompleteAsync();
        }, Ct);

        var received = 0;
        await foreach (var response in call.ReadAllAsync(Ct))
        {
            Assert.StartsWith(received.ToString(CultureInfo.InvariantCulture), response.CertChain[0]);
            received++;
        }

        await writer;
        Assert.Equal(Count, received);
    }

    [Fact]
    public async Task Duplex_error_status_after_some_messages()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        await using var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.EchoPath, IstioCertificateResponse.Parser, cancellationToken: Ct);

        for (var i = 0; i < 3; i++)
        {
            await call.WriteAsync(new IstioCertificateRequest { Csr = "m" + i }, Ct);
        }

        await call.WriteAsync(new IstioCertificateRequest { Csr = "fail:9:nonce mismatch é" }, Ct);

        var received = new List<string>();
        var ex = await Assert.ThrowsAsync<GrpcException>(async () =>
        {
            await foreach (var response in call.ReadAllAsync(Ct))
            {
                received.Add(response.CertChain[0]);
            }
        });

        Assert.Equal(["m0", "m1", "m2"], received);
        Assert.Equal(GrpcStatusCode.FailedPrecondition, ex.Status);
        Assert.Equal("nonce mismatch é", ex.Detail);

        // The call is over: a later write reports how it ended instead of hanging.
        var writeEx = await Assert.ThrowsAsync<GrpcException>(async () => await call.WriteAsync(new IstioCertificateRequest { Csr = "late" }, Ct));
        Assert.Equal(GrpcStatusCode.FailedPrecondition, writeEx.Status);
    }

    [Fact]
    public async Task Oversized_message_in_a_stream_ends_it_with_resource_exhausted()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: true);
        await using var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.EchoPath, IstioCertificateResponse.Parser, cancellationToken: Ct);
        await call.WriteAsync(new IstioCertificateRequest { Csr = "small" }, Ct);
        var bigWrite = Task.Run(async () => await call.WriteAsync(new IstioCertificateRequest { Csr = new string('o', 5 * 1024 * 1024) }, Ct), Ct);

        var received = new List<string>();
        var ex = await Assert.ThrowsAsync<GrpcException>(async () =>
        {
            await foreach (var response in call.ReadAllAsync(Ct))
            {
                received.Add(response.CertChain[0]);
            }
        });

        Assert.Equal(["small"], received);
        Assert.Equal(GrpcStatusCode.ResourceExhausted, ex.Status);
        Assert.Contains("4194304", ex.Detail);
        // The stalled 5 MiB write ends too (with the call's status), it does not hang: a hang would surface as the
        // TimeoutException of WaitAsync, which is not the call's status.
        var writeEx = await Assert.ThrowsAsync<GrpcException>(() => bigWrite.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        Assert.Equal(GrpcStatusCode.ResourceExhausted, writeEx.Status);
    }

    [Fact]
    public async Task Concurrent_server_writes_are_serialized()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: true);
        await using var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.FanoutPath, IstioCertificateResponse.Parser, cancellationToken: Ct);
        await call.WriteAsync(new IstioCertificateRequest { Csr = "a" }, Ct);
        await call.WriteAsync(new IstioCertificateRequest { Csr = "b" }, Ct);
        await call.CompleteAsync();

        var seen = new HashSet<string>();
        await foreach (var response in call.ReadAllAsync(Ct))
        {
            Assert.Equal(2, response.CertChain.Count);
            Assert.True(seen.Add(response.CertChain[0]), "duplicate " + response.CertChain[0]);
            var i = int.Parse(response.CertChain[0].AsSpan(response.CertChain[0].LastIndexOf('/') + 1), CultureInfo.InvariantCulture);
            Assert.Equal(1000 + i, response.CertChain[1].Length);
        }

        Assert.Equal(2 * 4 * 50, seen.Count);
    }

    [Fact]
    public async Task HttpClient_as_invoker_streams_ping_pong_without_buffering()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        using var httpClient = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout.InfiniteTimeSpan };
        var client = new GrpcClient(httpClient, host.Server.BaseAddress);
        await using var call = client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.EchoPath, IstioCertificateResponse.Parser, cancellationToken: Ct);
        await using var responses = call.ReadAllAsync(Ct).GetAsyncEnumerator(Ct);

        // Each reply must arrive while the request stream is still open: a buffered response would hang here.
        for (var i = 0; i < 5; i++)
        {
            await call.WriteAsync(new IstioCertificateRequest { Csr = "ping" + i }, Ct);
            Assert.True(await responses.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10), Ct));
            Assert.Equal("ping" + i, responses.Current.CertChain[0]);
        }

        await call.CompleteAsync();
        Assert.False(await responses.MoveNextAsync());
    }

    [Fact]
    public async Task Half_close_without_messages_ends_ok()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        await using var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.EchoPath, IstioCertificateResponse.Parser, cancellationToken: Ct);
        await call.CompleteAsync();

        var count = 0;
        await foreach (var unused in call.ReadAllAsync(Ct))
        {
            count++;
        }

        Assert.Equal(0, count);
    }

    [Fact]
    public async Task Duplex_deadline_exceeded_while_stream_idles()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        await using var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.EchoPath, IstioCertificateResponse.Parser, new GrpcCallOptions(Timeout: TimeSpan.FromMilliseconds(400)), Ct);
        await call.WriteAsync(new IstioCertificateRequest { Csr = "first" }, Ct);

        var received = new List<string>();
        var ex = await Assert.ThrowsAsync<GrpcException>(async () =>
        {
            await foreach (var response in call.ReadAllAsync(Ct))
            {
                received.Add(response.CertChain[0]);
            }
        });

        Assert.Equal(["first"], received);
        Assert.Equal(GrpcStatusCode.DeadlineExceeded, ex.Status);
    }

    [Fact]
    public async Task Dispose_cancels_the_call_on_the_server()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.EchoPath, IstioCertificateResponse.Parser, cancellationToken: Ct);
        await call.WriteAsync(new IstioCertificateRequest { Csr = "one" }, Ct);
        await using (var e = call.ReadAllAsync(Ct).GetAsyncEnumerator(Ct))
        {
            Assert.True(await e.MoveNextAsync());
        }

        await call.DisposeAsync();

        var ex = await Assert.ThrowsAsync<GrpcException>(async () => await call.WriteAsync(new IstioCertificateRequest { Csr = "after" }, Ct));
        Assert.Equal(GrpcStatusCode.Cancelled, ex.Status);

        // The server's handler saw its CancellationToken fire (logged by the gRPC layer as a client cancel).
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!HasClientCancelLog(host) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, Ct);
        }

        Assert.True(HasClientCancelLog(host), "server never observed the client's cancellation");
    }

    private static bool HasClientCancelLog(GrpcTestHost host)
    {
        foreach (var entry in host.Server.Logs.Entries)
        {
            if (entry.EventId.Id == 4 && entry.Message.Contains(GrpcTestHost.EchoPath, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    [Fact]
    public async Task Duplex_to_unknown_path_is_unimplemented()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        await using var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            "/no.Such/Stream", IstioCertificateResponse.Parser, cancellationToken: Ct);

        var ex = await Assert.ThrowsAsync<GrpcException>(async () =>
        {
            await foreach (var unused in call.ReadAllAsync(Ct))
            {
            }
        });

        Assert.Equal(GrpcStatusCode.Unimplemented, ex.Status);
    }
}
