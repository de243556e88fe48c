using Ambient.Hbone;
using Ambient.Hbone.Http2;
using Ambient.TestCommon;
using static Ambient.Core.Tests.Hbone.HboneTestSupport;

namespace Ambient.Core.Tests.Hbone;

/// <summary>
/// Our HBONE client against an independent HTTP/2 implementation (python3-h2, tests/interop/h2_connect_server.py) with
/// mutual TLS, including the server misbehaving on purpose.
/// </summary>
public sealed class HbonePythonInteropTests : IDisposable
{
    private readonly System.Security.Cryptography.X509Certificates.X509Certificate2 _root = TestCertificates.CreateRoot();
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private Task<PythonH2Server> StartServerAsync(params string[] flags) => PythonH2Server.StartAsync(_root, _dir, ServerIdentity, flags);

    private HboneConnectionPool NewPool(HboneClientOptions? options = null) => new(new TestTlsProvider(_root), options);

    private HboneConnector NewConnector(HboneClientOptions? options = null) => new(new TestTlsProvider(_root), options ?? new HboneClientOptions());

    [Fact]
    public async Task Connect_Echoes4MiBIntact_WithHalfClose_AndSendsNoSni()
    {
        await using PythonH2Server server = await StartServerAsync();
        await using HboneConnectionPool pool = NewPool();
        await using (HboneStream stream = await pool.OpenAsync(Key(server.EndPoint), "10.0.0.1:8080", [("baggage", "k8s.pod.name=client")], CancellationToken.None))
        {
            await EchoAsync(stream, 4 * 1024 * 1024);
        }
        Assert.Equal("STREAM 10.0.0.1:8080", await server.WaitForLineAsync("STREAM ", TestTimeout));
        Assert.Equal("SNI none", await server.WaitForLineAsync("SNI ", TestTimeout));

        // A second tunnel on the same pooled connection: HPACK dynamic-table references must decode on the peer.
        await using HboneStream again = await pool.OpenAsync(Key(server.EndPoint), "10.0.0.1:8080", [("baggage", "k8s.pod.name=client")], CancellationToken.None);
        await EchoAsync(again, 100_000, seed: 2);
        Assert.Equal(1, pool.ConnectionCount);
    }

    [Fact]
    public async Task Status503_SurfacesAsHboneConnectException()
    {
        await using PythonH2Server server = await StartServerAsync("--status", "10.9.9.9:80=503");
        await using HboneConnectionPool pool = NewPool();
        HboneConnectException error = await Assert.ThrowsAsync<HboneConnectException>(
            () => pool.OpenAsync(Key(server.EndPoint), "10.9.9.9:80", null, CancellationToken.None));
        Assert.Equal(503, error.StatusCode);
        Assert.Equal("10.9.9.9:80", error.Authority);
    }

    [Fact]
    public async Task GoAway_StreamsAboveLastFailRetryable_EarlierStreamsFinish()
    {
        await using PythonH2Server server = await StartServerAsync("--goaway-on-stream", "2");
        await using Http2Connection connection = await NewConnector().ConnectAsync(Key(server.EndPoint), CancellationToken.None);
        await using HboneStream first = await connection.OpenConnectAsync("10.0.0.1:80", null, CancellationToken.None);

        HboneException refused = await Assert.ThrowsAsync<HboneException>(
            () => connection.OpenConnectAsync("10.0.0.2:80", null, CancellationToken.None).WaitAsync(TestTimeout));
        Assert.True(refused.IsRetryable, refused.Message);
        Assert.Contains("GOAWAY", refused.Message);
        Assert.True(connection.IsGoingAway);
        await Assert.ThrowsAsync<HboneException>(() => connection.OpenConnectAsync("10.0.0.3:80", null, CancellationToken.None));

        // Stream 1 is at or below last-stream-id: it keeps working, and the connection closes once it ends.
        await EchoAsync(first, 200_000);
        await connection.Closed.WaitAsync(TestTimeout);
    }

    [Fact]
    public async Task GoAway_PoolRetriesOnAFreshConnection()
    {
        await using PythonH2Server server = await StartServerAsync("--goaway-on-stream", "2");
        await using HboneConnectionPool pool = NewPool();
        await using HboneStream first = await pool.OpenAsync(Key(server.EndPoint), "10.0.0.1:80", null, CancellationToken.None);
        // The second CONNECT hits the GOAWAY, which proves the peer did not process it; the pool re-sends it elsewhere.
        await using HboneStream second = await pool.OpenAsync(Key(server.EndPoint), "10.0.0.2:80", null, CancellationToken.None);
        await EchoAsync(second, 50_000);
        await EchoAsync(first, 50_000, seed: 3);
        // The first connection is going away (or already closed, once the server hung up on it), so a connection
        // that is not going away can only be the fresh one the retry dialled.
        Assert.Contains(pool.Snapshot()[0].Connections, c => !c.IsGoingAway);
    }

    [Fact]
    public async Task RstStreamFromServer_FailsOnlyThatStream()
    {
        await using PythonH2Server server = await StartServerAsync("--rst-authority", "10.6.6.6:80");
        await using HboneConnectionPool pool = NewPool();
        await using HboneStream healthy = await pool.OpenAsync(Key(server.EndPoint), "10.0.0.1:80", null, CancellationToken.None);
        await using HboneStream doomed = await pool.OpenAsync(Key(server.EndPoint), "10.6.6.6:80", null, CancellationToken.None);

        await doomed.WriteAsync(new byte[10]);
        HboneException error = await Assert.ThrowsAsync<HboneException>(() => doomed.ReadAsync(new byte[10]).AsTask().WaitAsync(TestTimeout));
        Assert.Equal(Http2ErrorCode.INTERNAL_ERROR, error.ErrorCode);
        Assert.Contains("RST_STREAM", error.Message);
        await Assert.ThrowsAsync<HboneException>(() => doomed.WriteAsync(new byte[10]).AsTask());

        await EchoAsync(healthy, 300_000);
        Assert.Equal(1, pool.ConnectionCount);
    }

    [Fact]
    public async Task FrameLargerThanOurMaxFrameSize_IsFrameSizeError_GoAwayAndAllStreamsFail()
    {
        await using PythonH2Server server = await StartServerAsync("--oversize-authority", "10.7.7.7:80");
        await using HboneConnectionPool pool = NewPool();
        await using HboneStream bystander = await pool.OpenAsync(Key(server.EndPoint), "10.0.0.1:80", null, CancellationToken.None);
        await using HboneStream victim = await pool.OpenAsync(Key(server.EndPoint), "10.7.7.7:80", null, CancellationToken.None);

        HboneException error = await Assert.ThrowsAsync<HboneException>(() => victim.ReadAsync(new byte[10]).AsTask().WaitAsync(TestTimeout));
        Assert.Equal(Http2ErrorCode.FRAME_SIZE_ERROR, error.ErrorCode);
        await Assert.ThrowsAsync<HboneException>(() => bystander.ReadAsync(new byte[10]).AsTask().WaitAsync(TestTimeout));
        Assert.Equal("GOAWAY FRAME_SIZE_ERROR", await server.WaitForLineAsync("GOAWAY", TestTimeout));
        await WaitUntilAsync(() => pool.ConnectionCount == 0, TestTimeout, "the failed connection to leave the pool");
    }

    [Fact]
    public async Task Pings_WeAnswerTheServersPing_AndSendOurOwnKeepalive()
    {
        await using PythonH2Server server = await StartServerAsync("--ping");
        var options = new HboneClientOptions { PingInterval = TimeSpan.FromMilliseconds(100), PingTimeout = TimeSpan.FromSeconds(5) };
        await using Http2Connection connection = await NewConnector(options).ConnectAsync(Key(server.EndPoint), CancellationToken.None);
        await server.WaitForLineAsync("PING_ACK", TestTimeout);
        await server.WaitForLineAsync("PING_RECEIVED", TestTimeout);
        await Task.Delay(500);
        Assert.False(connection.IsClosed, "a peer that answers PINGs keeps the connection");
    }

    [Fact]
    public async Task PeerThatNeverAcksPing_GetsTheConnectionClosed()
    {
        await using PythonH2Server server = await StartServerAsync("--blackhole");
        var options = new HboneClientOptions { PingInterval = TimeSpan.FromMilliseconds(100), PingTimeout = TimeSpan.FromMilliseconds(400) };
        await using Http2Connection connection = await NewConnector(options).ConnectAsync(Key(server.EndPoint), CancellationToken.None);
        await connection.Closed.WaitAsync(TestTimeout);
        Assert.Contains("PING", connection.CloseReason!.Message);
        await server.WaitForLineAsync("CLOSED", TestTimeout);
    }
}
