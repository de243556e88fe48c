using Ambient.Core.Files;
using Ambient.Core.Identity;
using Ambient.Core.Model;
using Ambient.Core.Xds;
using Ambient.Ztunnel.Identity;
using Ambient.Ztunnel.State;
using Ambient.Ztunnel.Xds;

namespace Ambient.Ztunnel.Control;

/// <summary>What the node proxy needs to reach istiod: its address, the mesh root, the node's token file.</summary>
internal sealed record ControlPlaneOptions
{
    public required Uri IstiodAddress { get; init; }

    /// <summary>PEM file of the mesh root (local mode: <c>&lt;state&gt;/root-cert.pem</c>).</summary>
    public required string RootCertificatePath { get; init; }

    /// <summary>The node's bearer token file (local mode: <c>&lt;state&gt;/tokens/&lt;node&gt;.token</c>); re-read per request.</summary>
    public required string TokenPath { get; init; }

    public required string NodeName { get; init; }
    public string InstanceIp { get; init; } = "127.0.0.1";
    public string ClusterId { get; init; } = "Kubernetes";
    public string TrustDomain { get; init; } = SpiffeId.DefaultTrustDomain;
    public TimeSpan CertificateTtl { get; init; } = TimeSpan.FromHours(24);
}

/// <summary>
/// The ztunnel's control-plane side wired together: one HTTP/2 channel to istiod shared by workload discovery
/// and the CA client; discovery feeds <see cref="State"/>, whose local identities drive <see cref="Certificates"/>.
/// </summary>
internal sealed class ControlPlane : IAsyncDisposable
{
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
        // The token is this node's credential: one another user owns or can read is refused now and on every read.
        StrictModes.CheckSecretFile(tokenPath, "node token");
        string Token()
        {
            try
            {
                StrictModes.CheckSecretFile(tokenPath, "node token");
                return File.ReadAllText(tokenPath).Trim();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"cannot read the node token '{tokenPath}': {ex.Message}", ex);
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
            PodName = "ztunnel-" + options.NodeName,
            InstanceIp = options.InstanceIp,
            ClusterId = options.ClusterId,
            Mesh = new MeshOptions { ClusterId = options.ClusterId, TrustDomain = options.TrustDomain },
        }, loggers.CreateLogger("Ambient.Ztunnel.Xds"), istiod);
        var state = new ProxyState(options.NodeName);
        var certificates = new CertificateManager(new CertificateManagerOptions
        {
            CaAddress = options.IstiodAddress,
            Token = Token,
            ClusterId = options.ClusterId,
            RequestedTtl = options.CertificateTtl,
        }, trust, loggers.CreateLogger("Ambient.Ztunnel.Identity"), istiod);
        xds.SnapshotChanged += state.Update;
        xds.AuthorizationsChanged += policies => state.UpdateAuthorizations(policies);
        xds.TrustBundleReceived = certificates.ApplyTrustBundle;
        certificates.Attach(state);
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
