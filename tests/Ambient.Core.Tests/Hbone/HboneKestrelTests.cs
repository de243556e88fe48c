using System.Security.Cryptography.X509Certificates;
using System.Text;
using Ambient.Hbone;
using static Ambient.Core.Tests.Hbone.HboneTestSupport;

namespace Ambient.Core.Tests.Hbone;

/// <summary>Our HBONE client against Kestrel (mTLS 1.3, h2, client cert required) on loopback.</summary>
public sealed class HboneKestrelTests : IAsyncLifetime
{
    private readonly X509Certificate2 _root = Ambient.TestCommon.TestCertificates.CreateRoot();
    private X509Certificate2 _serverCert = null!;
    private KestrelConnectServer _server = null!;

    public async ValueTask InitializeAsync()
    {
        _serverCert = Ambient.TestCommon.TestCertificates.IssueWorkload(_root, ServerIdentity);
        _server = await KestrelConnectServer.StartAsync(_root, _serverCert);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _serverCert.Dispose();
    }

    private HboneConnectionPool NewPool(HboneClientOptions? options = null) => new(new TestTlsProvider(_root), options);

    [Fact]
    public async Task Connect_Echoes4MiBIntact_AndPresentsTheSourceIdentity()
    {
        await using HboneConnectionPool pool = NewPool();
        await using HboneStream stream = await pool.OpenAsync(Key(_server.EndPoint), "10.0.0.1:8080",
            [("baggage", "k8s.namespace.name=default,k8s.pod.name=client"), ("forwarded", "for=\"10.0.0.2:40000\"")], CancellationToken.None);
        await EchoAsync(stream, 4 * 1024 * 1024);
        Assert.Equal([ClientIdentity], _server.ClientIdentities.ToArray());
    }

    [Fact]
    public async Task ServerHalfClosesFirst_ClientSeesEndAndCanStillSend()
    {
        await using HboneConnectionPool pool = NewPool();
        await using HboneStream stream = await pool.OpenAsync(Key(_server.EndPoint), "half-close.test:80", null, CancellationToken.None);
        byte[] buffer = new byte[1024];
        var greeting = new StringBuilder();
        int n;
        while ((n = await stream.ReadAsync(buffer).AsTask().WaitAsync(TestTimeout)) > 0)
        {
            greeting.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }
        Assert.Equal(KestrelConnectServer.Greeting, greeting.ToString());

        byte[] payload = new byte[300_000];
        await stream.WriteAsync(payload);
        await stream.CompleteWritesAsync();
        Assert.Equal(payload.Length, await _server.HalfCloseReceived.Task.WaitAsync(TestTimeout));
    }

    [Fact]
    public async Task Non200Status_SurfacesAsHboneConnectException()
    {
        await using HboneConnectionPool pool = NewPool();
        HboneConnectException error = await Assert.ThrowsAsync<HboneConnectException>(
            () => pool.OpenAsync(Key(_server.EndPoint), "deny.test:80", null, CancellationToken.None));
        Assert.Equal(401, error.StatusCode);
        Assert.Contains("401", error.Message);
        // The connection survives a refused tunnel and serves the next one.
        await using HboneStream stream = await pool.OpenAsync(Key(_server.EndPoint), "10.0.0.1:80", null, CancellationToken.None);
        await EchoAsync(stream, 10_000);
        Assert.Equal(1, pool.ConnectionCount);
    }

    [Fact]
    public async Task WrongServerIdentity_FailsClosed_NothingSent()
    {
        await using HboneConnectionPool pool = NewPool();
        const string expected = "spiffe://cluster.local/ns/other/sa/payments";
        HboneException error = await Assert.ThrowsAsync<HboneException>(
            () => pool.OpenAsync(Key(_server.EndPoint, expected), "10.0.0.1:80", null, CancellationToken.None));
        Assert.Contains(expected, error.Message);
        Assert.Contains(ServerIdentity, error.Message);
        Assert.Equal(0, _server.ConnectCount);
        Assert.Equal(0, pool.ConnectionCount);
    }

    [Fact]
    public async Task ServerFromForeignCa_Fails()
    {
        using X509Certificate2 foreign = Ambient.TestCommon.TestCertificates.CreateRoot("foreign-root");
        using X509Certificate2 foreignCert = Ambient.TestCommon.TestCertificates.IssueWorkload(foreign, ServerIdentity);
        await using KestrelConnectServer impostor = await KestrelConnectServer.StartAsync(_root, foreignCert);
        await using HboneConnectionPool pool = NewPool();
        HboneException error = await Assert.ThrowsAsync<HboneException>(
            () => pool.OpenAsync(Key(impostor.EndPoint), "10.0.0.1:80", null, CancellationToken.None));
        Assert.Contains("mesh root", error.Message);
        Assert.Equal(0, impostor.ConnectCount);
    }

    [Fact]
    public async Task TwoHundredConcurrentTunnels_ShareAtMostTwoConnections()
    {
        await using HboneConnectionPool pool = NewPool();
        var opens = new Task<HboneStream>[200];
        for (int i = 0; i < opens.Length; i++)
        {
            opens[i] = pool.OpenAsync(Key(_server.EndPoint), $"10.0.1.{i % 250}:80", null, CancellationToken.None);
        }
        HboneStream[] streams = await Task.WhenAll(opens).WaitAsync(TestTimeout);
        Assert.InRange(pool.ConnectionCount, 1, 2);
        int streamsInSnapshot = 0;
        foreach (HbonePoolEntryInfo entry in pool.Snapshot())
        {
            foreach (HboneConnectionInfo connection in entry.Connections)
            {
                Assert.InRange(connection.ActiveStreams, 0, 100);
                streamsInSnapshot += connection.ActiveStreams;
            }
        }
        Assert.Equal(200, streamsInSnapshot);

        var echoes = new Task[streams.Length];
        for (int i = 0; i < streams.Length; i++)
        {
            echoes[i] = EchoAsync(streams[i], 32 * 1024 + i, seed: i);
        }
        await Task.WhenAll(echoes).WaitAsync(TestTimeout);
        foreach (HboneStream stream in streams)
        {
            await stream.DisposeAsync();
        }
        Assert.InRange(pool.ConnectionCount, 1, 2);
        Assert.Equal(200, _server.ConnectCount);
    }

    [Fact]
    public async Task IdleConnection_ClosedAfterIdleTimeout()
    {
        await using HboneConnectionPool pool = NewPool(new HboneClientOptions { IdleTimeout = TimeSpan.FromMilliseconds(300) });
        await using (HboneStream stream = await pool.OpenAsync(Key(_server.EndPoint), "10.0.0.1:80", null, CancellationToken.None))
        {
            // An open (quiet) tunnel keeps the connection: only connections with no streams are idle.
            await stream.WriteAsync(new byte[100]);
            Assert.Equal(100, await stream.ReadAtLeastAsync(new byte[100], 100).AsTask().WaitAsync(TestTimeout));
            await Task.Delay(900);
            Assert.Equal(1, pool.ConnectionCount);
        }
        await WaitUntilAsync(() => pool.ConnectionCount == 0, TimeSpan.FromSeconds(5), "the idle connection to be closed");
        Assert.Empty(pool.Snapshot());
    }

    [Fact]
    public async Task DisposingThePool_ClosesConnectionsAndFailsOpenTunnels()
    {
        HboneConnectionPool pool = NewPool();
        HboneStream stream = await pool.OpenAsync(Key(_server.EndPoint), "10.0.0.1:80", null, CancellationToken.None);
        await stream.WriteAsync(new byte[10]);
        Assert.Equal(10, await stream.ReadAtLeastAsync(new byte[10], 10).AsTask().WaitAsync(TestTimeout));

        await pool.DisposeAsync().AsTask().WaitAsync(TestTimeout);
        Assert.Equal(0, pool.ConnectionCount);
        await Assert.ThrowsAsync<HboneException>(() => stream.ReadAsync(new byte[10]).AsTask().WaitAsync(TestTimeout));
        await Assert.ThrowsAsync<HboneException>(() => stream.WriteAsync(new byte[10]).AsTask().WaitAsync(TestTimeout));
        await _server.StreamAborted.Task.WaitAsync(TestTimeout);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => pool.OpenAsync(Key(_server.EndPoint), "10.0.0.1:80", null, CancellationToken.None));
        await stream.DisposeAsync();
    }
}
