using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Ambient.TestCommon;

/// <summary>How a <see cref="LoopbackKestrel"/> listens.</summary>
public sealed record LoopbackKestrelOptions
{
    /// <summary>Listener protocols; HTTP/2 only by default (h2c with prior knowledge when there is no TLS).</summary>
    public HttpProtocols Protocols { get; init; } = HttpProtocols.Http2;

    /// <summary>Serve TLS with this certificate (must have a private key); null serves plaintext.</summary>
    public X509Certificate2? ServerCertificate { get; init; }

    public ClientCertificateMode ClientCertificateMode { get; init; } = ClientCertificateMode.NoCertificate;

    /// <summary>Decides on client certificates; null accepts any certificate the client presents.</summary>
    public Func<X509Certificate2, X509Chain?, SslPolicyErrors, bool>? ClientCertificateValidation { get; init; }

    /// <summary>Extra Kestrel settings (limits, HTTP/2 windows) applied before the listener is added.</summary>
    public Action<KestrelServerOptions>? ConfigureKestrel { get; init; }

    public Action<IServiceCollection>? ConfigureServices { get; init; }

    /// <summary>Where to listen; null = 127.0.0.1 on an ephemeral port. A pod's address and port for a workload's app.</summary>
    public IPEndPoint? EndPoint { get; init; }

    /// <summary>Lowest level kept in <see cref="LoopbackKestrel.Logs"/>.</summary>
    public LogLevel MinimumLogLevel { get; init; } = LogLevel.Debug;
}

/// <summary>
/// A real Kestrel server on 127.0.0.1 with an ephemeral port, for functional tests: endpoints are mapped by a
/// callback, <see cref="BaseAddress"/> tells where it listens, and logs are captured in <see cref="Logs"/> so a
/// test can assert on (or against) error logs. Dispose stops it and frees the port.
/// </summary>
public sealed class LoopbackKestrel : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _disposed;

    private LoopbackKestrel(WebApplication app, Uri baseAddress, ListLogger logs)
    {
        _app = app;
        BaseAddress = baseAddress;
        Logs = logs;
    }

    /// <summary>http://127.0.0.1:port/ or https://127.0.0.1:port/.</summary>
    public Uri BaseAddress { get; }

    public int Port => BaseAddress.Port;

    public IServiceProvider Services => _app.Services;

    public ListLogger Logs { get; }

    public static async Task<LoopbackKestrel> StartAsync(
        Action<IEndpointRouteBuilder> mapEndpoints, LoopbackKestrelOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(mapEndpoints);
        options ??= new LoopbackKestrelOptions();
        var logs = new ListLogger(options.MinimumLogLevel);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            // Keep the test host independent of the machine's environment and the current folder.
            ApplicationName = typeof(LoopbackKestrel).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = "Development",
        });
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(options.MinimumLogLevel);
        builder.Logging.AddProvider(logs);
        options.ConfigureServices?.Invoke(builder.Services);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            options.ConfigureKestrel?.Invoke(kestrel);
            kestrel.Listen(options.EndPoint ?? new IPEndPoint(IPAddress.Loopback, 0), listen =>
            {
                listen.Protocols = options.Protocols;
                if (options.ServerCertificate is { } certificate)
                {
                    listen.UseHttps(https =>
                    {
                        https.ServerCertificate = certificate;
                        https.ClientCertificateMode = options.ClientCertificateMode;
                        var validation = options.ClientCertificateValidation;
                        https.ClientCertificateValidation = validation is null
                            ? static (_, _, _) => true
                            : (cert, chain, errors) => validation(cert, chain, errors);
                    });
                }
            });
        });

        var app = builder.Build();
        mapEndpoints(app);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        var bound = new Uri(addresses.First());
        var scheme = options.ServerCertificate is null ? Uri.UriSchemeHttp : Uri.UriSchemeHttps;
        var host = options.EndPoint?.Address.ToString() ?? "127.0.0.1";
        return new LoopbackKestrel(app, new Uri($"{scheme}://{host}:{bound.Port}/"), logs);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // A short grace period: long-lived test streams must not hold the test run up.
        using var stopTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await _app.StopAsync(stopTimeout.Token).ConfigureAwait(false);
        }
        finally
        {
            await _app.DisposeAsync().ConfigureAwait(false);
        }
    }
}
