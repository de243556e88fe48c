using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Ambient.Core.Tests.Hbone;

/// <summary>
/// A Kestrel HBONE-style server on 127.0.0.1:0: TLS 1.3, HTTP/2 only, client cert required (chained to the test root),
/// limits a CONNECT tunnel needs on Kestrel (MinRequestBodyDataRate off etc.). CONNECT handling by authority:
/// "deny.test:*" -> 401; "half-close.test:*" -> 200, writes a greeting, ends its side, then counts what the client sends;
/// anything else -> 200 and echo until the client ends.
/// </summary>
internal sealed class KestrelConnectServer : IAsyncDisposable
{
    public const string Greeting = "hello from the server side";

    private readonly WebApplication _app;
    private int _connectCount;

    private KestrelConnectServer(WebApplication app) => _app = app;

    public int Port { get; private set; }

    public IPEndPoint EndPoint => new(IPAddress.Loopback, Port);

    /// <summary>CONNECT requests that reached the handler (0 proves nothing was sent after a failed handshake).</summary>
    public int ConnectCount => Volatile.Read(ref _connectCount);

    /// <summary>Client identities seen on CONNECT requests.</summary>
    public ConcurrentQueue<string> ClientIdentities { get; } = new();

    /// <summary>Bytes received after the server half-closed (half-close.test).</summary>
    public TaskCompletionSource<long> HalfCloseReceived { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completed streams (the handler returned), for the dispose test.</summary>
    public TaskCompletionSource StreamAborted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public static async Task<KestrelConnectServer> StartAsync(X509Certificate2 root, X509Certificate2 serverCertificate)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.MinResponseDataRate = null;
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 250;
            kestrel.Limits.Http2.InitialConnectionWindowSize = 16 * 1024 * 1024;
            kestrel.Limits.Http2.InitialStreamWindowSize = 4 * 1024 * 1024;
            kestrel.Limits.Http2.MaxFrameSize = 1024 * 1024;
            kestrel.Listen(IPAddress.Loopback, 0, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                listen.UseHttps(new HttpsConnectionAdapterOptions
                {
                    ServerCertificate = serverCertificate,
                    SslProtocols = SslProtocols.Tls13,
                    ClientCertificateMode = ClientCertificateMode.RequireCertificate,
                    ClientCertificateValidation = (certificate, chain, _) => Ambient.TestCommon.TestCertificates.TryVerify(root, certificate, chain, out string? _, out string? _),
                });
            });
        });
        WebApplication app = builder.Build();
        var server = new KestrelConnectServer(app);
        app.Run(server.HandleAsync);
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Port = new Uri(address).Port;
        return server;
    }

    private async Task HandleAsync(HttpContext context)
    {
        if (!HttpMethods.IsConnect(context.Request.Method))
        {
            context.Response.StatusCode = 400;
            return;
        }
        Interlocked.Increment(ref _connectCount);
        X509Certificate2? clientCertificate = context.Connection.ClientCertificate;
        if (clientCertificate is not null)
        {
            foreach (string uri in Ambient.TestCommon.TestCertificates.UriSans(clientCertificate))
            {
                ClientIdentities.Enqueue(uri);
            }
        }
        string authority = context.Request.Host.Value ?? "";
        if (authority.StartsWith("deny.test", StringComparison.Ordinal))
        {
            context.Response.StatusCode = 401;
            return;
        }
        context.Features.Get<IHttpMaxRequestBodySizeFeature>()!.MaxRequestBodySize = null;
        context.Response.StatusCode = 200;
        await context.Response.Body.FlushAsync();

        byte[] buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            if (authority.StartsWith("half-close.test", StringComparison.Ordinal))
            {
                await context.Response.Body.WriteAsync(System.Text.Encoding.ASCII.GetBytes(Greeting));
                await context.Response.CompleteAsync();
                long total = 0;
                int read;
                while ((read = await context.Request.Body.ReadAsync(buffer)) > 0)
                {
                    total += read;
                }
                HalfCloseReceived.TrySetResult(total);
                return;
            }
            // A client RST or a dropped connection surfaces as IOException or OperationCanceledException (ConnectionAbortedException).
            try
            {
                int n;
                while ((n = await context.Request.Body.ReadAsync(buffer, context.RequestAborted)) > 0)
                {
                    await context.Response.Body.WriteAsync(buffer.AsMemory(0, n), context.RequestAborted);
                }
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException)
            {
                StreamAborted.TrySetResult();
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
