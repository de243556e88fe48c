using System.Net;
using Ambient.Core;
using Ambient.Core.Identity;
using Ambient.Core.Model;
using Ambient.Dataplane.Control;

namespace Ambient.Waypoint;

/// <summary>Command-line settings of one waypoint (one Gateway of class istio-waypoint); immutable.</summary>
/// <param name="Name">The Gateway's name, which is also the waypoint's service account.</param>
/// <param name="Address">The waypoint pod's address: HBONE listens on it, and it is the workload istiod knows.</param>
/// <param name="AdminPort">Readiness (<c>/healthz/ready</c>) on <paramref name="Address"/>; 0 picks a free port.</param>
internal sealed record WaypointOptions(
    string Node,
    string Namespace,
    string Name,
    IPAddress Address,
    Uri Istiod,
    string RootCertificatePath,
    string TokenPath,
    int HbonePort,
    int AdminPort,
    string ClusterId)
{
    /// <summary>The admin port's default, as Istio's proxies' (status port).</summary>
    public const int DefaultAdminPort = 15021;

    /// <summary>SPIFFE trust domain of this mesh.</summary>
    public string TrustDomain { get; init; } = SpiffeId.DefaultTrustDomain;

    /// <summary>
    /// True when <see cref="TokenPath"/> is the waypoint's projected service-account token (Kubernetes mode,
    /// <c>--ca-token-file</c>: the CA reviews it and gives the waypoint its own identity); false for a local-mode node
    /// token (<c>--token-file</c>).
    /// </summary>
    public bool ServiceAccountToken { get; init; }

    /// <summary>
    /// The pod this waypoint runs as, which it names to istiod-lite in its xDS node id: Kubernetes mode passes the
    /// Deployment's pod (<c>--pod-name</c>, the downward API's metadata.name); local mode's pod is named after the Gateway.
    /// </summary>
    public string PodName { get; init; } = "";

    /// <summary>Certificate lifetime asked of the CA (renewed at half-life).</summary>
    public TimeSpan CertificateTtl { get; init; } = TimeSpan.FromHours(24);

    /// <summary><c>spiffe://&lt;td&gt;/ns/&lt;namespace&gt;/sa/&lt;name&gt;</c>, as Istio's waypoints are.</summary>
    public SpiffeId Identity => new(TrustDomain, Namespace, Name);

    public const string Usage =
        """
        usage: waypoint --node NAME --namespace NS --name GATEWAY --address IP --root FILE (--token-file FILE | --ca-token-file FILE)
                        [--istiod https://IP:PORT] [--admin N] [--hbone-port N] [--trust-domain TD] [--cluster-id ID] [--pod-name POD]
          --node NAME          the node this waypoint runs on (its token authorizes the certificate)
          --namespace NS       the Gateway's namespace
          --name GATEWAY       the Gateway's name (also the waypoint's service account and identity)
          --address IP         the waypoint pod's address: HBONE (15008) listens there
          --root FILE          mesh root certificate (istiod-lite state folder: root-cert.pem)
          --token-file FILE    local mode: the node's token (istiod-lite state folder: tokens/NODE.token)
          --ca-token-file FILE Kubernetes mode: the waypoint pod's projected service-account token (audience istio-ca),
                               re-read for every request as the kubelet rotates it; the default when --token-file is
                               not given: /var/run/secrets/tokens/istio-token
          --istiod URL         CA + discovery, default https://127.0.0.1:15012
          --admin N            readiness port on the pod address (/healthz/ready), default 15021, 0 = any free port
          --hbone-port N       HBONE port, default 15008
          --trust-domain TD    SPIFFE trust domain of the mesh, default cluster.local
          --cluster-id ID      default Kubernetes
          --pod-name POD       the waypoint's pod, as istiod-lite knows it (Kubernetes mode: the Deployment's pod); default
                               the pod local mode names after the Gateway
        """;

    public static WaypointOptions? TryParse(string[] args, out string? error)
    {
        var common = new ControlPlaneArguments();
        string? ns = null, name = null, podName = null;
        IPAddress? address = null;
        int admin = DefaultAdminPort, hbone = MeshPorts.Hbone;
        for (var i = 0; i < args.Length; i++)
        {
            var flag = args[i];
            if (flag is "-h" or "--help") { error = Usage; return null; }
            if (i + 1 >= args.Length) { error = $"{flag} needs a value\n{Usage}"; return null; }
            var value = args[++i];
            if (common.TryTake(flag, value, out error))
            {
                if (error is not null) { return null; }
                continue;
            }
            switch (flag)
            {
                case "--namespace": ns = value; break;
                case "--name": name = value; break;
                case "--pod-name": podName = value; break;
                case "--address":
                    if (!ControlPlaneArguments.TryParseAddress(flag, value, out var a, out error)) { return null; }
                    address = a; break;
                case "--admin": if (!ControlPlaneArguments.TryParsePort(value, out admin)) { error = $"--admin: '{value}' is not a port"; return null; } break;
                case "--hbone-port": if (!ControlPlaneArguments.TryParsePort(value, out hbone)) { error = $"--hbone-port: '{value}' is not a port"; return null; } break;
                default: error = $"unknown argument {flag}\n{Usage}"; return null;
            }
        }
        if (common.Node is not { } node || ns is null || name is null || address is null || common.Root is not { } root)
        {
            error = "--node, --namespace, --name, --address, --root and --token-file (or --ca-token-file) are required\n" + Usage;
            return null;
        }
        if (!common.TryResolveToken(Usage, out var token, out var serviceAccountToken, out error)) { return null; }
        if (common.CheckFiles() is { } missing) { error = missing; return null; }
        error = null;
        return new WaypointOptions(node, ns, name, address, common.Istiod, Path.GetFullPath(root), Path.GetFullPath(token), hbone, admin, common.ClusterId)
        {
            TrustDomain = common.TrustDomain,
            ServiceAccountToken = serviceAccountToken,
            PodName = podName ?? WaypointPlacement.PodNameFor(ns, name),
        };
    }
}
