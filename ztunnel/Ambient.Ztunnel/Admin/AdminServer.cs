using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Ambient.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Ambient.Ztunnel.InPod;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Ambient.Ztunnel.Admin;

/// <summary>What the node-wide admin ports serve; the node proxy implements it from its live state.</summary>
internal interface IAdminSource
{
    /// <summary>Config and certificates are in: the node may receive traffic.</summary>
    bool IsReady(out string reason);

    void WriteConfigDump(Utf8JsonWriter json);

    void WriteMetrics(StringBuilder prometheusText);
}

internal sealed record AdminPorts(int Admin = MeshPorts.Admin, int Metrics = MeshPorts.Metrics, int Readiness = MeshPorts.Readiness);

/// <summary>
/// The node-wide plain-HTTP ports, as Istio's ztunnel has them: 15000 admin (/config_dump), 15020 Prometheus
/// (/metrics, /stats/prometheus), 15021 readiness (/healthz/ready). One Kestrel on a bare generic host with
/// <c>UseKestrelCore</c> (no MVC, routing, config/env sources or console lifetime): the web host WebApplication builds
/// cost the node proxy about 12 MB of RSS. Each listener tags its connections with its own handler, so a path answers
/// only on its own port (ports may be 0 in tests, so the number alone cannot tell them apart) and a scrape config
/// written for Istio finds the same thing here. Handlers write straight to the response: three fixed paths need no
/// router.
/// </summary>
internal sealed class AdminServer : IAsyncDisposable
{
    private const string HandlerKey = "ambient.admin.handler";

    private readonly IHost _host;

    private AdminServer(IHost host, IPEndPoint admin, IPEndPoint metrics, IPEndPoint readiness)
    {
        _host = host;
        AdminEndpoint = admin;
        MetricsEndpoint = metrics;
        ReadinessEndpoint = readiness;
    }

    public IPEndPoint AdminEndpoint { get; }
    public IPEndPoint MetricsEndpoint { get; }
    public IPEndPoint ReadinessEndpoint { get; }

    /// <summary>Listens on the three ports of <paramref name="address"/>; a port that cannot bind fails with an error naming them.</summary>
    /// <param name="shareWithSuccessor">SO_REUSEPORT on the three: an upgrade starts the next ztunnel of the node while
    /// this one still drains (in-pod mode; the ports are in the host's namespace, which only root shares).</param>
    public static async Task<AdminServer> StartAsync(IPAddress address, AdminPorts ports, IAdminSource source, ILoggerFactory loggerFactory, CancellationToken cancellationToken,
        bool shareWithSuccessor = false)
    {
        ListenOptions? admin = null, metrics = null, readiness = null;
        var host = new HostBuilder()
            .ConfigureServices(services =>
            {
                services.AddSingleton(loggerFactory);
                // The node proxy owns signals and shutdown (Program); the default console lifetime would grab SIGTERM.
                services.AddSingleton<IHostLifetime, EmbeddedHostLifetime>();
                if (shareWithSuccessor)
                {
                    services.Configure<SocketTransportOptions>(sockets => sockets.CreateBoundListenSocket = endPoint =>
                    {
                        var ip = (IPEndPoint)endPoint;
                        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                        try
                        {
                            NetnsSockets.SetReusePort(socket);
                            socket.Bind(ip);
                            return socket;
                        }
                        catch
                        {
                            socket.Dispose();
                            throw;
                        }
                    });
                }
            })
            .ConfigureWebHost(web =>
            {
                web.UseSetting(WebHostDefaults.PreventHostingStartupKey, "true");
                web.UseKestrelCore();
                web.ConfigureKestrel(kestrel =>
                {
                    kestrel.AddServerHeader = false;
                    admin = Listen(kestrel, new IPEndPoint(address, ports.Admin), context => ServeAdminAsync(context, source));
                    metrics = Listen(kestrel, new IPEndPoint(address, ports.Metrics), context => ServeMetricsAsync(context, source));
                    readiness = Listen(kestrel, new IPEndPoint(address, ports.Readiness), context => ServeReadinessAsync(context, source));
                });
                web.Configure(app => app.Run(context => HandlerOf(context)(context)));
            }, web => web.SuppressEnvironmentConfiguration = true)
            .Build();
        try
        {
            await host.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            host.Dispose();
            throw new IOException($"cannot listen on admin {address}:{ports.Admin}, metrics {address}:{ports.Metrics}, readiness {address}:{ports.Readiness}: {e.Message}", e);
        }
        // Kestrel fills in ListenOptions.IPEndPoint with the bound port once it listens.
        return new AdminServer(host, admin!.IPEndPoint!, metrics!.IPEndPoint!, readiness!.IPEndPoint!);
    }

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await _host.StopAsync(stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _host.Dispose();
    }

    private static ListenOptions Listen(KestrelServerOptions kestrel, IPEndPoint endPoint, RequestDelegate handler)
    {
        ListenOptions? options = null;
        kestrel.Listen(endPoint, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            listen.Use(next => connection =>
            {
                connection.Items[HandlerKey] = handler;
                return next(connection);
            });
            options = listen;
        });
        return options!;
    }

    // Every listener sets its handler on each connection it accepts.
    private static RequestDelegate HandlerOf(HttpContext context) =>
        (RequestDelegate)context.Features.Get<IConnectionItemsFeature>()!.Items[HandlerKey]!;

    private static Task ServeAdminAsync(HttpContext context, IAdminSource source)
    {
        switch (context.Request.Path.Value)
        {
            case "/config_dump":
                if (!IsRead(context)) { return MethodNotAllowedAsync(context); }
                // Built in memory, then sent: Kestrel forbids the synchronous writes Utf8JsonWriter would make.
                var buffer = new ArrayBufferWriter<byte>(16 * 1024);
                using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
                {
                    source.WriteConfigDump(json);
                }
                return WriteAsync(context, StatusCodes.Status200OK, "application/json", buffer.WrittenMemory);
            case "/":
                return IsRead(context) ? WriteTextAsync(context, StatusCodes.Status200OK, "ztunnel admin: /config_dump\n") : MethodNotAllowedAsync(context);
            default:
                return NotFoundAsync(context);
        }
    }

    private static Task ServeMetricsAsync(HttpContext context, IAdminSource source)
    {
        if (context.Request.Path.Value is not ("/metrics" or "/stats/prometheus")) { return NotFoundAsync(context); }
        if (!IsRead(context)) { return MethodNotAllowedAsync(context); }
        var text = new StringBuilder(4096);
        source.WriteMetrics(text);
        return WriteAsync(context, StatusCodes.Status200OK, "text/plain; version=0.0.4; charset=utf-8", Encoding.UTF8.GetBytes(text.ToString()));
    }

    private static Task ServeReadinessAsync(HttpContext context, IAdminSource source)
    {
        if (context.Request.Path.Value != "/healthz/ready") { return NotFoundAsync(context); }
        if (!IsRead(context)) { return MethodNotAllowedAsync(context); }
        return source.IsReady(out var reason)
            ? WriteTextAsync(context, StatusCodes.Status200OK, "ready\n")
            : WriteTextAsync(context, StatusCodes.Status503ServiceUnavailable, "not ready: " + reason + "\n");
    }

    private static bool IsRead(HttpContext context) => HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method);

    private static Task NotFoundAsync(HttpContext context) => WriteTextAsync(context, StatusCodes.Status404NotFound, "not found\n");

    private static Task MethodNotAllowedAsync(HttpContext context)
    {
        context.Response.Headers.Allow = "GET, HEAD";
        return WriteTextAsync(context, StatusCodes.Status405MethodNotAllowed, "method not allowed\n");
    }

    private static Task WriteTextAsync(HttpContext context, int status, string text) =>
        WriteAsync(context, status, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes(text));

    private static Task WriteAsync(HttpContext context, int status, string contentType, ReadOnlyMemory<byte> body)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = contentType;
        response.ContentLength = body.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(body).AsTask();
    }

    /// <summary>A host lifetime that does nothing: start and stop are driven by the node proxy, not by console signals.</summary>
    private sealed class EmbeddedHostLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
