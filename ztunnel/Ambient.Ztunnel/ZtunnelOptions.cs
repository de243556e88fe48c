using System.Collections.Immutable;
using System.Net;
using Ambient.Core;
using Ambient.Core.Identity;
using Ambient.Dataplane.Control;
using Ambient.Ztunnel.Admin;

namespace Ambient.Ztunnel;

/// <summary>Command-line settings of one node proxy; immutable.</summary>
internal sealed record ZtunnelOptions(
    string Node,
    IPAddress Address,
    Uri Istiod,
    string RootCertificatePath,
    string TokenPath,
    int HbonePort,
    int SocksPort,
    AdminPorts AdminPorts,
    string ClusterId)
{
    /// <summary>Workload certificate lifetime asked of the CA (Istio default 24 h; renewed at half-life).</summary>
    public TimeSpan CertificateTtl { get; init; } = TimeSpan.FromHours(24);

    /// <summary>SPIFFE trust domain of this mesh: peers of any other are refused.</summary>
    public string TrustDomain { get; init; } = SpiffeId.DefaultTrustDomain;

    /// <summary>Port of the DNS proxy (UDP and TCP) on <see cref="Address"/>; null: no DNS proxy (the default).</summary>
    public int? DnsPort { get; init; }

    /// <summary>Where the DNS proxy sends names the mesh does not answer; empty: the nameservers of /etc/resolv.conf.</summary>
    public ImmutableArray<IPEndPoint> DnsUpstreams { get; init; } = [];

    /// <summary>The node agent's ZDS socket: in-pod mode (listeners inside each pod's network namespace); null: loopback mode.</summary>
    public string? ZdsSocket { get; init; }

    /// <summary>
    /// True when <see cref="TokenPath"/> is the ztunnel's projected service-account token (Kubernetes mode,
    /// <c>--ca-token-file</c>); false for a local-mode node token (<c>--token-file</c>).
    /// </summary>
    public bool ServiceAccountToken { get; init; }

    /// <summary>Where Istio's ztunnel DaemonSet mounts its projected token (audience istio-ca).</summary>
    public const string DefaultCaTokenFile = ControlPlaneArguments.DefaultCaTokenFile;

    /// <summary>
    /// On SIGTERM, how long open connections (HBONE tunnels; in in-pod mode also captured ones) may go on after it stops
    /// accepting, before they are cut; the process exits as soon as none is open.
    /// </summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public const string Usage =
        """
        usage: ztunnel --node NAME --root FILE (--token-file FILE | --ca-token-file FILE) [--istiod https://IP:PORT] [--address IP]
                       [--hbone-port N] [--socks-port N] [--admin-port N] [--metrics-port N] [--readiness-port N]
                       [--dns-port N [--dns-upstream IP[:PORT]]...] [--zds-socket PATH]
                       [--drain-timeout SECONDS]
          --node NAME          the node this proxy serves (pods with spec.nodeName = NAME)
          --root FILE          mesh root certificate (istiod-lite state folder: root-cert.pem)
          --token-file FILE    local mode: this node's token (istiod-lite state folder: tokens/NAME.token)
          --ca-token-file FILE Kubernetes mode: the ztunnel's projected service-account token (audience istio-ca),
                               re-read for every request as the kubelet rotates it; the default when --token-file is
                               not given: /var/run/secrets/tokens/istio-token
          --istiod URL         CA + discovery, default https://127.0.0.1:15012
          --address IP         where the node-wide admin ports listen, default 127.0.0.1
          --cert-ttl SECONDS   workload certificate lifetime to request, default 86400, at most 7776000 (90 days)
          --trust-domain TD    SPIFFE trust domain of the mesh (as istiod-lite's), default cluster.local
          --dns-port N         serve the DNS proxy (UDP and TCP) on --address:N (Istio: 15053); off by default
          --dns-upstream IP[:PORT]
                               resolver for names that are not the mesh's (repeatable), default: /etc/resolv.conf's
          --zds-socket PATH    in-pod mode (root): take enrolled pods' network namespaces from the node agent's ZDS
                               socket and listen inside each pod (15001, 15006, 15008, 127.0.0.1:15053, 127.0.0.1:15080);
                               off by default (loopback mode: a listener per pod address)
          --drain-timeout SECONDS
                               on SIGTERM, how long open connections may go on once it stops accepting, default 5;
                               in in-pod mode a newer ztunnel may meanwhile serve the pods' listening sockets
        """;

    private const int MaxCertTtlSeconds = 90 * 24 * 3600;

    public static ZtunnelOptions? TryParse(string[] args, out string? error)
    {
        var common = new ControlPlaneArguments();
        var address = IPAddress.Loopback;
        int hbone = MeshPorts.Hbone, socks = MeshPorts.Socks5, admin = MeshPorts.Admin, metrics = MeshPorts.Metrics, ready = MeshPorts.Readiness;
        var ttl = TimeSpan.FromHours(24);
        int? dnsPort = null;
        string? zdsSocket = null;
        var drain = TimeSpan.FromSeconds(5);
        var dnsUpstreams = ImmutableArray.CreateBuilder<IPEndPoint>();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (name is "-h" or "--help") { error = Usage; return null; }
            if (i + 1 >= args.Length) { error = $"{name} needs a value\n{Usage}"; return null; }
            var value = args[++i];
            if (common.TryTake(name, value, out error))
            {
                if (error is not null) { return null; }
                continue;
            }
            switch (name)
            {
                case "--address":
                    if (!ControlPlaneArguments.TryParseAddress(name, value, out address, out error)) { return null; }
                    break;
                case "--hbone-port": if (!Port(value, out hbone)) { error = $"--hbone-port: '{value}' is not a port"; return null; } break;
                case "--socks-port": if (!Port(value, out socks)) { error = $"--socks-port: '{value}' is not a port"; return null; } break;
                case "--admin-port": if (!Port(value, out admin)) { error = $"--admin-port: '{value}' is not a port"; return null; } break;
                case "--metrics-port": if (!Port(value, out metrics)) { error = $"--metrics-port: '{value}' is not a port"; return null; } break;
                case "--readiness-port": if (!Port(value, out ready)) { error = $"--readiness-port: '{value}' is not a port"; return null; } break;
                case "--dns-port":
                    if (!Port(value, out var dns)) { error = $"--dns-port: '{value}' is not a port"; return null; }
                    dnsPort = dns; break;
                case "--dns-upstream":
                    if (!IPEndPoint.TryParse(value, out var upstream)) { error = $"--dns-upstream: '{value}' is not IP or IP:PORT"; return null; }
                    dnsUpstreams.Add(upstream.Port == 0 ? new IPEndPoint(upstream.Address, 53) : upstream); break;
                case "--zds-socket": zdsSocket = Path.GetFullPath(value); break;
                case "--drain-timeout":
                    if (!int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var drainSeconds))
                    { error = $"--drain-timeout: '{value}' is not a number of seconds"; return null; }
                    drain = TimeSpan.FromSeconds(drainSeconds); break;
                case "--cert-ttl":
                    if (!int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seconds) || seconds < 1)
                    { error = $"--cert-ttl: '{value}' is not a positive number of seconds"; return null; }
                    // The CA refuses more than 90 days (INVALID_ARGUMENT): say so now rather than retry forever.
                    if (seconds > MaxCertTtlSeconds)
                    { error = $"--cert-ttl: {seconds} s is over the CA's maximum of {MaxCertTtlSeconds} s (90 days)"; return null; }
                    ttl = TimeSpan.FromSeconds(seconds); break;
                default: error = $"unknown argument {name}\n{Usage}"; return null;
            }
        }
        if (common.Node is not { } node || common.Root is not { } root)
        {
            error = "--node, --root and --token-file (or --ca-token-file) are required\n" + Usage;
            return null;
        }
        if (!common.TryResolveToken(Usage, out var token, out var serviceAccountToken, out error)) { return null; }
        if (common.CheckFiles() is { } missing) { error = missing; return null; }
        error = null;
        return new ZtunnelOptions(node, address, common.Istiod, Path.GetFullPath(root), Path.GetFullPath(token), hbone, socks,
            new AdminPorts(admin, metrics, ready), common.ClusterId)
        {
            CertificateTtl = ttl,
            TrustDomain = common.TrustDomain,
            DnsPort = dnsPort,
            DnsUpstreams = dnsUpstreams.ToImmutable(),
            ZdsSocket = zdsSocket,
            ServiceAccountToken = serviceAccountToken,
            DrainTimeout = drain,
        };
    }

    private static bool Port(string value, out int port) => ControlPlaneArguments.TryParsePort(value, out port);
}
