using Ambient.Core.Files;
using Ambient.Core.Identity;
using Ambient.Core.Model;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Xds;
using Ambient.Dataplane.Identity;
using Ambient.Dataplane.State;
using Ambient.Dataplane.Xds;

namespace Ambient.Dataplane.Control;

/// <summary>What the node proxy needs to reach istiod: its address, the mesh root, the node's token file.</summary>
internal sealed record ControlPlaneOptions
{
    public required Uri IstiodAddress { get; init; }

    /// <summary>PEM file of the mesh root (local mode: <c>&lt;state&gt;/root-cert.pem</c>).</summary>
    public required string RootCertificatePath { get; init; }

    /// <summary>The node's bearer token file (local mode: <c>&lt;state&gt;/tokens/&lt;node&gt;.token</c>); re-read per request.</summary>
    public required string TokenPath { get; init; }

    /// <summary>
    /// True when <see cref="TokenPath"/> is a projected service-account token (Kubernetes mode): the kubelet writes and
    /// rotates it with its own file modes, so it is read as it is, without the private-file checks of a node token.
    /// </summary>
    public bool ServiceAccountToken { get; init; }

    public required string NodeName { get; init; }
    public string InstanceIp { get; init; } = "127.0.0.1";
    public string ClusterId { get; init; } = "Kubernetes";
    public string TrustDomain { get; init; } = SpiffeId.DefaultTrustDomain;
    public TimeSpan CertificateTtl { get; init; } = TimeSpan.FromHours(24);

    /// <summary>The proxy's own pod name and namespace in its xDS node id; null: the ztunnel's (<c>ztunnel-&lt;node&gt;</c>
    /// in istio-system).</summary>
    public string? ProxyName { get; init; }
    public string? ProxyNamespace { get; init; }

    /// <summary>The xDS node id's proxy type (<c>ztunnel</c> or <c>waypoint</c>).</summary>
    public string ProxyType { get; init; } = "ztunnel";

    /// <summary>
    /// The identities to hold certificates for. Null (a ztunnel): every enrolled workload on the node, following
    /// discovery. A waypoint names only its own: it is one workload on the node, not the node's proxy.
    /// </summary>
    public IReadOnlyList<SpiffeId>? Identities { get; init; }

    /// <summary>Further xDS types to subscribe to, optional (see <see cref="DeltaXdsClient.OptionalTypes"/>).</summary>
    public IReadOnlyDictionary<string, Func<DeltaDiscoveryResponse, string?>>? OptionalXdsTypes { get; init; }
}

/// <summary>
/// A proxy's control-plane side wired together: one HTTP/2 channel to istiod shared by workload discovery
/// and the CA client; discovery feeds <see cref="State"/>, whose local identities drive <see cref="Certificates"/>.
/// </summary>
internal sealed class ControlPlane : IAsyncDisposable
{
    // A projected service-account token is about 1 KiB and a node token far less; a file past this is not a token (a
    // log, /dev/zero behind a symbolic link) and is refused rather than read into memory on every request.
    internal const int MaxTokenBytes = 64 * 1024;

    /// <summary>Reads a token file, trimmed; throws <see cref="IOException"/> naming the file when it is too large.</summary>
    internal static string ReadToken(string path, string tokenName)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        var buffer = new byte[MaxTokenBytes + 1];
        var total = 0;
        int read;
        while (total < buffer.Length && (read = stream.Read(buffer, total, buffer.Length - total)) > 0)
        {
            total += read;
        }
        if (total > MaxTokenBytes)
        {
            throw new IOException($"the {tokenName} '{path}' is larger than {MaxTokenBytes / 1024} KiB, which no token is");
        }
        return System.Text.Encoding.UTF8.GetString(buffer, 0, total).Trim();
    }

    private readonly HttpMessageHandler _istiod;

    private ControlPlane(HttpMessageHandler istiod, DeltaXdsClient xds, ProxyState state, CertificateManager certificates)
    {
        _istiod = istiod;
        Xds = xds;
        State = state;
        Certificates = certificates;
    }

    public DeltaXdsClient Xds { get; }
    public ProxyState State { get; }
    public CertificateManager Certificates { get; }

    /// <summary>True once discovery has synced and every local identity holds a valid certificate (/healthz/ready).</summary>
    public bool IsReady => Xds.WaitForSyncAsync(CancellationToken.None).IsCompletedSuccessfully && Certificates.AllReady;

    /// <summary>
    /// Reads the root and wires the pieces; throws naming the file when the root or token cannot be read, or when
    /// the token file is not private to this user (<see cref="InsecureFileException"/>).
    /// </summary>
    public static ControlPlane Create(ControlPlaneOptions options, ILoggerFactory loggers)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        string rootPem;
        try
        {
            rootPem = File.ReadAllText(options.RootCertificatePath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read the mesh root '{options.RootCertificatePath}': {ex.Message}", ex);
        }
        // The file bootstraps the bundle; istiod-lite's pushes replace it (root rotation), a real istiod never does.
        var trust = new TrustBundleSource(TrustBundle.FromPem(rootPem, options.TrustDomain));
        var tokenPath = options.TokenPath;
        var serviceAccountToken = options.ServiceAccountToken;
        var tokenName = serviceAccountToken ? "service-account token" : "node token";
        // A node token is this node's credential: one another user owns or can read is refused now and on every read.
        if (!serviceAccountToken)
        {
            StrictModes.CheckSecretFile(tokenPath, tokenName);
        }
        // Read on every request: the kubelet rotates projected tokens, and a node token may be replaced.
        string Token()
        {
            try
            {
                if (!serviceAccountToken)
                {
                    StrictModes.CheckSecretFile(tokenPath, tokenName);
                }
                return ReadToken(tokenPath, tokenName);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"cannot read the {tokenName} '{tokenPath}': {ex.Message}", ex);
            }
        }

        // One handler, so discovery and the CA share one HTTP/2 connection to istiod; it checks istiod against the
        // proxy's live trust bundle, so a root rotation reaches this connection too.
        var istiod = IstiodChannel.CreateHandler(() => trust.Current.Roots, options.IstiodAddress);
        var xds = new DeltaXdsClient(new DeltaXdsClientOptions
        {
            Address = options.IstiodAddress,
            Roots = trust.Current.Roots,
            Token = Token,
            NodeName = options.NodeName,
            PodName = options.ProxyName ?? "ztunnel-" + options.NodeName,
            PodNamespace = options.ProxyNamespace ?? "istio-system",
            ProxyType = options.ProxyType,
            InstanceIp = options.InstanceIp,
            ClusterId = options.ClusterId,
            Mesh = new MeshOptions { ClusterId = options.ClusterId, TrustDomain = options.TrustDomain },
        }, loggers.CreateLogger("Ambient.Dataplane.Xds"), istiod)
        {
            OptionalTypes = options.OptionalXdsTypes ?? new Dictionary<string, Func<DeltaDiscoveryResponse, string?>>(),
        };
        var state = new ProxyState(options.NodeName);
        var certificates = new CertificateManager(new CertificateManagerOptions
        {
            CaAddress = options.IstiodAddress,
            Token = Token,
            ClusterId = options.ClusterId,
            RequestedTtl = options.CertificateTtl,
        }, trust, loggers.CreateLogger("Ambient.Dataplane.Identity"), istiod);
        xds.SnapshotChanged += state.Update;
        xds.AuthorizationsChanged += policies => state.UpdateAuthorizations(policies);
        xds.TrustBundleReceived = certificates.ApplyTrustBundle;
        if (options.Identities is { } identities)
        {
            certificates.SetIdentities(identities);
        }
        else
        {
            certificates.Attach(state);
        }
        return new ControlPlane(istiod, xds, state, certificates);
    }

    /// <summary>Starts discovery (certificates follow the snapshots it delivers).</summary>
    public void Start() => Xds.Start();

    /// <summary>Waits until <see cref="IsReady"/>.</summary>
    public async Task WaitUntilReadyAsync(CancellationToken cancellationToken)
    {
        await Xds.WaitForSyncAsync(cancellationToken).ConfigureAwait(false);
        while (!Certificates.AllReady)
        {
            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Xds.DisposeAsync().ConfigureAwait(false);
        await Certificates.DisposeAsync().ConfigureAwait(false);
        _istiod.Dispose();
    }
}
