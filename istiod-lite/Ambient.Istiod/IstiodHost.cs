using System.Net;
using System.Security.Authentication;
using System.Text.Json;
using Ambient.Config.Kubernetes;
using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core.Files;
using Ambient.Core.Model;
using Ambient.Istiod.Authz;
using Ambient.Istiod.Ca;
using Ambient.Istiod.Discovery;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Ambient.Istiod;

/// <summary>
/// A running istiod-lite: config source, CA, discovery, and the Kestrel host serving them. Used by Program and,
/// in-process, by functional tests (the same code path, bound to port 0).
/// </summary>
internal sealed class IstiodHost : IAsyncDisposable
{
    /// <summary>Largest gRPC message istiod-lite accepts (gRPC's customary 4 MiB); bigger is RESOURCE_EXHAUSTED.</summary>
    public const int MaxReceiveMessageSize = 4 * 1024 * 1024;

    private readonly WebApplication _app;
    private readonly IConfigSource _source;
    private readonly MeshController _mesh;
    private readonly CaSigner _signer;
    private readonly RootRotationFolder? _rotationFolder;

    private IstiodHost(WebApplication app, IConfigSource source, MeshController mesh, CaSigner signer, IstiodOptions options, RootRotationFolder? rotationFolder)
    {
        _app = app;
        _rotationFolder = rotationFolder;
        _source = source;
        _mesh = mesh;
        _signer = signer;
        Options = options;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        foreach (var a in addresses)
        {
            var uri = new Uri(a);
            if (uri.Scheme == "https")
            {
                GrpcEndpoint = new IPEndPoint(IPAddress.Parse(uri.Host.Trim('[', ']')), uri.Port);
            }
            else
            {
                MonitoringEndpoint = new IPEndPoint(IPAddress.Parse(uri.Host.Trim('[', ']')), uri.Port);
            }
        }
        GrpcEndpoint ??= options.GrpcEndpoint;
    }

    public IstiodOptions Options { get; }
    public IPEndPoint GrpcEndpoint { get; }
    public IPEndPoint? MonitoringEndpoint { get; }
    /// <summary>The trust bundle proxies load: the state folder's root, or the plug-in CA's root-cert.pem.</summary>
    public string RootCertificatePath => RootCertificatePathOf(Options);

    private static string RootCertificatePathOf(IstiodOptions options) => options.CaDirectory is { } caDirectory
        ? Path.Combine(caDirectory, PlugInCa.RootCertFile)
        : Path.Combine(options.StateFolder, CaStore.RootCertFile);
    public MeshController Mesh => _mesh;
    /// <summary>Writes Gateway and HTTPRoute status in Kubernetes mode; null with a config folder.</summary>
    public GatewayStatusWriter? StatusWriter { get; private init; }
    /// <summary>Creates each waypoint's ServiceAccount, Deployment and Service in Kubernetes mode; null with a config folder.</summary>
    public WaypointDeployments? WaypointDeployments { get; private init; }
    public IConfigSource Config => _source;
    public NodeTokens Tokens => _app.Services.GetRequiredService<NodeTokens>();
    public RootRotation Rotation => _app.Services.GetRequiredService<RootRotation>();

    /// <param name="tokenReviewer">Kubernetes mode: who answers TokenReviews; null: the Kubernetes API of the options
    /// (<c>--kubeconfig</c>, or in-cluster).</param>
    public static async Task<IstiodHost> StartAsync(IstiodOptions options, Action<ILoggingBuilder>? configureLogging, CancellationToken cancellationToken,
        ITokenReviewer? tokenReviewer = null)
    {
        // Created owner-only when missing; an existing one is checked before use (CaStore, NodeTokens).
        PrivateFile.EnsureDirectory(options.StateFolder);
        // A plug-in CA is checked whole before anything listens: a bad file stops the start with one line naming it.
        var signer = options.CaDirectory is { } caDirectory
            ? PlugInCa.Load(caDirectory, options.CaKeyPasswordFile, options.TrustDomain)
            : CaStore.LoadOrCreate(options.StateFolder, options.TrustDomain);
        var ca = new CertificateAuthority(signer);
        var tokens = new NodeTokens(options.StateFolder);

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        configureLogging?.Invoke(builder.Logging);

        var meshOptions = new MeshOptions
        {
            ClusterId = options.ClusterId,
            TrustDomain = options.TrustDomain,
            Addresses = options.Addresses ?? AddressRanges.Loopback,
            // The cluster runs each waypoint (the Deployment below creates it): its pod and Service come from the API.
            WaypointsDeployed = options.FromKubernetes,
        };
        // One Kubernetes API client for the config source and the TokenReviews, built here so a missing kubeconfig or
        // in-cluster credential stops the start with one line; the container disposes it with the host.
        var kubernetes = options.FromKubernetes || options.CaAuth == CaAuthMode.TokenReview && tokenReviewer is null
            ? new k8s.Kubernetes(KubernetesClientConfig.Load(options.Kubeconfig))
            : null;
        if (kubernetes is not null) builder.Services.AddSingleton(kubernetes);
        // Created by the container so they log through the host's logging and are disposed with it.
        builder.Services.AddSingleton<IConfigSource>(sp => options.FromKubernetes
            ? new KubernetesConfigSource(kubernetes!, sp.GetRequiredService<ILogger<KubernetesConfigSource>>())
            : new FolderConfigSource(options.ConfigFolder, sp.GetRequiredService<ILogger<FolderConfigSource>>()));
        builder.Services.AddSingleton(sp => new MeshController(
            sp.GetRequiredService<IConfigSource>(), meshOptions, tokens, sp.GetRequiredService<ILogger<MeshController>>(), options.RootNamespace));
        builder.Services.AddSingleton<IWorkloadDirectory>(sp => sp.GetRequiredService<MeshController>());
        builder.Services.AddSingleton(sp => sp.GetRequiredService<MeshController>().Discovery);

        // istiod's own serving cert is issued at start from the persistent root and again after a root rotation
        // switches the signer; a restart (the only way its SANs could change) picks up a fresh one.
        var serving = new ServingCertificate(ca);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MinRequestBodyDataRate = null; // xDS streams idle for long stretches
            k.Limits.Http2.MaxStreamsPerConnection = 1000;
            k.Listen(options.GrpcEndpoint, l =>
            {
                l.Protocols = HttpProtocols.Http2;
                l.UseHttps(new TlsHandshakeCallbackOptions
                {
                    OnConnection = _ => ValueTask.FromResult(serving.Current()),
                });
            });
            if (options.MonitoringEndpoint is { } monitoring)
            {
                k.Listen(monitoring, l => l.Protocols = HttpProtocols.Http1);
            }
        });
        builder.Services.AddRouting();
        // Unknown services and methods are answered UNIMPLEMENTED. What istiod-lite receives is small (CSRs, ACKs):
        // 4 MiB per message; what it sends (a whole mesh in one push) is not capped here but by the client.
        builder.Services.AddGrpc(g => g.MaxReceiveMessageSize = MaxReceiveMessageSize);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning); // a refused call is the caller's answer, not istiod's news
        builder.Services.AddSingleton(ca);
        builder.Services.AddSingleton(tokens);
        builder.Services.AddSingleton(sp => new RootRotation(ca, new XdsRotationProxies(sp.GetRequiredService<DiscoveryState>()),
            new RotationOptions(), sp.GetRequiredService<ILoggerFactory>().CreateLogger("Ambient.Istiod.Ca.RootRotation")));
        if (options.CaAuth == CaAuthMode.TokenReview)
        {
            tokenReviewer ??= new KubernetesTokenReviewer(kubernetes!);
            builder.Services.AddSingleton<ICaCallerPolicy>(sp => new ServiceAccountTokenPolicy(tokenReviewer,
                sp.GetRequiredService<IWorkloadDirectory>(), options.TrustedNodeAccounts, options.TrustDomain,
                new TokenReviewCache(TimeProvider.System, TokenReviewCache.DefaultLifetime)));
        }
        else
        {
            builder.Services.AddSingleton<ICaCallerPolicy>(sp => new NodeTokenPolicy(tokens, sp.GetRequiredService<IWorkloadDirectory>()));
        }
        builder.Services.AddSingleton(sp => new CertificateService(ca, sp.GetRequiredService<ICaCallerPolicy>(),
            sp.GetRequiredService<ILogger<CertificateService>>(), sp.GetRequiredService<RootRotation>()));

        var app = builder.Build();
        // Load the config and build the first snapshot before listening, so the first client sees the mesh.
        var source = app.Services.GetRequiredService<IConfigSource>();
        await source.StartAsync(cancellationToken).ConfigureAwait(false);
        var mesh = app.Services.GetRequiredService<MeshController>();
        GatewayStatusWriter? statusWriter = null;
        WaypointDeployments? waypointDeployments = null;
        if (source is KubernetesConfigSource kubernetesSource)
        {
            // The API has a status subresource the mesh's conditions belong in; a folder has not (ambientctl shows them).
            statusWriter = new GatewayStatusWriter(kubernetesSource, app.Services.GetRequiredService<ILogger<GatewayStatusWriter>>());
            mesh.Published += statusWriter.Update;
            statusWriter.Update(mesh.Snapshot);
            // Istio's gateway deployment controller: each waypoint Gateway gets its ServiceAccount, Deployment and Service.
            waypointDeployments = new WaypointDeployments(kubernetesSource, new WaypointDeploymentOptions(
                    options.WaypointImage, options.WaypointIstiod, RootCertificatePathOf(options), options.TrustDomain, options.ClusterId),
                app.Services.GetRequiredService<ILogger<WaypointDeployments>>());
            kubernetesSource.Changed += waypointDeployments.Update;
            waypointDeployments.Update(kubernetesSource.Current);
        }
        // Proxies that subscribe hold the bundle the CA hands out from their first push on.
        var rotation = app.Services.GetRequiredService<RootRotation>();
        rotation.PublishCurrent();
        app.MapGrpcService<CertificateGrpcService>();
        app.MapGrpcService<DiscoveryGrpcService>();
        if (options.MonitoringEndpoint is not null)
        {
            app.MapGet("/ready", () => Results.Text("ready\n"));
            app.MapGet("/debug/workloads", () => Results.Text(DescribeMesh(mesh.Snapshot, source.Current), "application/json"));
            app.MapGet("/debug/waypoints", () => Results.Text(WaypointStatusJson.Describe(mesh.Snapshot, source.Current.Generation), "application/json"));
            app.MapGet("/debug/authorizationpolicies", () => Results.Text(PolicyJson.Describe(mesh.Policies, options.RootNamespace), "application/json"));
        }
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            signer.Dispose();
            throw new IOException($"cannot listen on {options.GrpcEndpoint} or {options.MonitoringEndpoint}: {e.Message} (is another istiod-lite running?)", e);
        }
        // The default CA rotates on a file drop; a plug-in CA's files belong to the operator (see the README).
        RootRotationFolder? rotationFolder = null;
        if (options.CaDirectory is null)
        {
            rotationFolder = new RootRotationFolder(options.StateFolder, options.TrustDomain, rotation,
                app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Ambient.Istiod.Ca.RootRotation"));
            rotationFolder.Start();
        }
        return new IstiodHost(app, source, mesh, signer, options, rotationFolder) { StatusWriter = statusWriter, WaypointDeployments = waypointDeployments };
    }

    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    private static string DescribeMesh(MeshSnapshot snapshot, ConfigSnapshot config)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteNumber("configGeneration", config.Generation);
            MeshSnapshotJson.WriteWorkloads(json, snapshot);
            MeshSnapshotJson.WriteServices(json, snapshot);
            json.WriteStartArray("errors");
            foreach (var e in config.Errors)
            {
                json.WriteStringValue(e.ToString());
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    public async ValueTask DisposeAsync()
    {
        if (_rotationFolder is not null)
        {
            await _rotationFolder.DisposeAsync().ConfigureAwait(false);
        }
        await _app.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        if (StatusWriter is { } statusWriter)
        {
            _mesh.Published -= statusWriter.Update;
            statusWriter.Dispose();
        }
        if (WaypointDeployments is { } waypointDeployments && _source is KubernetesConfigSource kubernetesSource)
        {
            kubernetesSource.Changed -= waypointDeployments.Update;
            waypointDeployments.Dispose();
        }
        await _app.DisposeAsync().ConfigureAwait(false); // disposes the config source and the mesh controller
        _signer.Dispose();
    }
}
