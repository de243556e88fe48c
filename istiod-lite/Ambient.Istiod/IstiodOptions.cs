using System.Net;
using Ambient.Config.Kubernetes;
using Ambient.Core;
using Ambient.Core.Identity;
using Ambient.Core.Model;
using Ambient.Istiod.Ca;

namespace Ambient.Istiod;

/// <summary>Command-line settings of istiod-lite, parsed once at start and never mutated.</summary>
internal sealed record IstiodOptions(
    string ConfigFolder,
    string StateFolder,
    IPEndPoint GrpcEndpoint,
    IPEndPoint? MonitoringEndpoint,
    string ClusterId,
    string TrustDomain,
    string? CaDirectory = null,
    string? CaKeyPasswordFile = null,
    string RootNamespace = "istio-system",
    AddressRanges? Addresses = null,
    string ConfigSource = IstiodOptions.FolderSource,
    string? Kubeconfig = null)
{
    /// <summary>How CA and discovery callers authenticate (<c>--ca-auth</c>).</summary>
    public CaAuthMode CaAuth { get; init; } = CaAuthMode.NodeToken;

    /// <summary>Kubernetes mode: who may impersonate pods of its node (<c>--ca-trusted-node-accounts</c> or <c>CA_TRUSTED_NODE_ACCOUNTS</c>).</summary>
    public TrustedNodeAccounts TrustedNodeAccounts { get; init; } = TrustedNodeAccounts.None;

    /// <summary>Kubernetes mode: the image of the waypoint Deployments istiod-lite creates (<c>--waypoint-image</c>).</summary>
    public string WaypointImage { get; init; } = WaypointDeploymentOptions.DefaultImage;

    /// <summary>Kubernetes mode: istiod-lite's address as waypoint pods reach it (<c>--waypoint-istiod</c>).</summary>
    public string WaypointIstiod { get; init; } = WaypointDeploymentOptions.DefaultIstiod;

    public const string FolderSource = "folder";
    public const string KubernetesSource = "kubernetes";

    /// <summary>True when the config is read from the Kubernetes API rather than a folder.</summary>
    public bool FromKubernetes => ConfigSource == KubernetesSource;

    public static string Usage =>
        """
        usage: istiod-lite (--config DIR | --config-source kubernetes [--kubeconfig FILE]) [--state DIR] [--listen IP:PORT] [--monitoring IP:PORT|off]
                           [--cluster-id ID] [--trust-domain TD] [--ca-dir DIR [--ca-key-password-file FILE]]
                           [--root-namespace NS] [--network loopback|netns [--pod-cidr CIDR] [--service-cidr CIDR]]
                           [--ca-auth node-token|tokenreview [--ca-trusted-node-accounts NS/SA,...]]
                           [--waypoint-image IMAGE] [--waypoint-istiod URL]
          --config PATH      a YAML file, or a folder of them, of Kubernetes-style resources (Namespace, ServiceAccount,
                             Pod, Service), watched live
          --config-source folder|kubernetes
                             where the config comes from: --config (default), or the Kubernetes API (Namespaces,
                             ServiceAccounts, Pods, Services, Gateways, HTTPRoutes, ReferenceGrants,
                             AuthorizationPolicies, PeerAuthentications, listed and watched); Gateway and HTTPRoute
                             status is written back
          --kubeconfig FILE  the cluster to read (--config-source kubernetes) and to ask for TokenReviews (--ca-auth
                             tokenreview); without it, the pod's service account (in-cluster)
          --state DIR        where the mesh root CA and node tokens live (default: .ambient-state beside the config
                             folder, or beside the folder holding the config file)
          --listen IP:PORT   CA + workload discovery (gRPC over TLS), default 127.0.0.1:15012
          --monitoring ...   plain HTTP /ready and /debug endpoints, default 127.0.0.1:15014
          --cluster-id ID    default Kubernetes
          --trust-domain TD  default cluster.local
          --ca-dir DIR       sign with an operator's intermediate CA instead of the self-signed root (Istio's
                             cacerts layout: ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem); the proxies'
                             trust bundle is then DIR/root-cert.pem
          --ca-key-password-file FILE
                             the password of an encrypted ca-key.pem (the file's first line)
          --root-namespace NS
                             Istio's root namespace, default istio-system: its AuthorizationPolicies without a
                             selector apply mesh-wide, its selector policies to workloads of every namespace
          --network MODE     the address plan to publish, as `ambientctl local up --network` runs it: loopback (default;
                             pods 127.1-127.127.x.x, VIPs 127.128-127.254.x.x) or netns (node i's pods in the i-th /24
                             of --pod-cidr, default 10.244.0.0/16; VIPs from --service-cidr, default 10.96.0.0/16)
          --ca-auth MODE     how CA and discovery callers authenticate: node-token (default with --config; local mode, the
                             <state>/tokens/<node>.token files) or tokenreview (default with --config-source kubernetes, as Istio: a projected
                             service-account token with audience istio-ca, checked by a TokenReview)
          --ca-trusted-node-accounts NS/SA,...
                             tokenreview: the service accounts that may obtain the identities of pods on their own node
                             (the ztunnel's, e.g. istio-system/ztunnel); default: $CA_TRUSTED_NODE_ACCOUNTS, else none
          --waypoint-image IMAGE
                             --config-source kubernetes: the image of the Deployment istiod-lite creates for each Gateway
                             of class istio-waypoint (with its ServiceAccount and Service), default ambient/waypoint
          --waypoint-istiod URL
                             how those waypoint pods reach istiod-lite, default https://istiod.istio-system.svc:15012
        """;

    /// <summary>Parses arguments; returns null and an error naming the bad argument instead of throwing.</summary>
    public static IstiodOptions? TryParse(string[] args, out string? error) =>
        TryParse(args, Environment.GetEnvironmentVariable, out error);

    /// <summary>Parses arguments, reading <c>CA_TRUSTED_NODE_ACCOUNTS</c> through <paramref name="environment"/>.</summary>
    public static IstiodOptions? TryParse(string[] args, Func<string, string?> environment, out string? error)
    {
        string? caAuth = null, trustedAccounts = null;
        string? config = null, state = null, clusterId = "Kubernetes", trustDomain = "cluster.local", caDirectory = null, caKeyPasswordFile = null, rootNamespace = "istio-system";
        string configSource = FolderSource;
        string? kubeconfig = null;
        string? waypointImage = null, waypointIstiod = null;
        string network = "loopback", podCidr = AddressRanges.DefaultPodCidr.ToString(), serviceCidr = AddressRanges.DefaultServiceCidr.ToString();
        var grpc = new IPEndPoint(IPAddress.Loopback, MeshPorts.IstiodGrpc);
        IPEndPoint? monitoring = new(IPAddress.Loopback, MeshPorts.IstiodMonitoring);
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (name is "-h" or "--help") { error = Usage; return null; }
            if (i + 1 >= args.Length) { error = $"{name} needs a value\n{Usage}"; return null; }
            var value = args[++i];
            switch (name)
            {
                case "--config": config = value; break;
                case "--config-source":
                    if (value is not (FolderSource or KubernetesSource)) { error = $"--config-source: '{value}' is not folder or kubernetes"; return null; }
                    configSource = value; break;
                case "--kubeconfig": kubeconfig = Path.GetFullPath(value); break;
                case "--state": state = value; break;
                case "--cluster-id": clusterId = value; break;
                case "--trust-domain":
                    if (SpiffeId.ValidateTrustDomain(value) is { } tdError) { error = $"--trust-domain: {tdError}"; return null; }
                    trustDomain = value; break;
                case "--ca-dir": caDirectory = Path.GetFullPath(value); break;
                case "--ca-key-password-file": caKeyPasswordFile = Path.GetFullPath(value); break;
                case "--root-namespace":
                    if (value.Length == 0 || value.Length > 63 || !value.All(static c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-') || value[0] == '-' || value[^1] == '-')
                    { error = $"--root-namespace: '{value}' is not a namespace name"; return null; }
                    rootNamespace = value; break;
                case "--listen":
                    if (!IPEndPoint.TryParse(value, out var g) || g.Port == 0 && !value.EndsWith(":0", StringComparison.Ordinal))
                    { error = $"--listen: '{value}' is not IP:PORT"; return null; }
                    grpc = g; break;
                case "--monitoring":
                    if (value == "off") { monitoring = null; break; }
                    if (!IPEndPoint.TryParse(value, out var m)) { error = $"--monitoring: '{value}' is not IP:PORT or off"; return null; }
                    monitoring = m; break;
                case "--network":
                    if (value is not ("loopback" or "netns")) { error = $"--network: '{value}' is not loopback or netns"; return null; }
                    network = value; break;
                case "--pod-cidr": podCidr = value; break;
                case "--service-cidr": serviceCidr = value; break;
                case "--ca-auth":
                    if (value is not ("node-token" or "tokenreview")) { error = $"--ca-auth: '{value}' is not node-token or tokenreview"; return null; }
                    caAuth = value; break;
                case "--ca-trusted-node-accounts": trustedAccounts = value; break;
                case "--waypoint-image":
                    if (value.Length == 0) { error = "--waypoint-image: empty"; return null; }
                    waypointImage = value; break;
                case "--waypoint-istiod":
                    if (!Uri.TryCreate(value, UriKind.Absolute, out var u) || u.Scheme != "https") { error = $"--waypoint-istiod: '{value}' is not an https URL"; return null; }
                    waypointIstiod = value; break;
                default: error = $"unknown argument {name}\n{Usage}"; return null;
            }
        }
        if (configSource == KubernetesSource)
        {
            if (config is not null) { error = "--config and --config-source kubernetes exclude each other"; return null; }
            if (kubeconfig is not null && !File.Exists(kubeconfig)) { error = $"--kubeconfig: '{kubeconfig}' does not exist"; return null; }
        }
        else if (waypointImage is not null || waypointIstiod is not null)
        { error = "--waypoint-image and --waypoint-istiod need --config-source kubernetes (local mode runs waypoints as processes)"; return null; }
        else if (kubeconfig is not null && caAuth != "tokenreview") { error = "--kubeconfig needs --config-source kubernetes or --ca-auth tokenreview"; return null; }
        else if (config is null) { error = "--config PATH is required\n" + Usage; return null; }
        if (caKeyPasswordFile is not null && caDirectory is null) { error = "--ca-key-password-file needs --ca-dir DIR"; return null; }
        // A Kubernetes config source implies TokenReview (the cluster issues the tokens then); node tokens otherwise.
        caAuth ??= configSource == KubernetesSource ? "tokenreview" : "node-token";
        var mode = caAuth == "tokenreview" ? CaAuthMode.TokenReview : CaAuthMode.NodeToken;
        if (mode == CaAuthMode.NodeToken && trustedAccounts is not null)
        { error = "--ca-trusted-node-accounts needs --ca-auth tokenreview (node tokens never impersonate beyond their node)"; return null; }
        var trusted = TrustedNodeAccounts.None;
        if (mode == CaAuthMode.TokenReview)
        {
            var flag = trustedAccounts is not null;
            trustedAccounts ??= environment(TrustedNodeAccounts.EnvironmentVariable);
            if (TrustedNodeAccounts.TryParse(trustedAccounts, out var accountsError) is not { } parsed)
            { error = $"{(flag ? "--ca-trusted-node-accounts" : TrustedNodeAccounts.EnvironmentVariable)}: {accountsError}"; return null; }
            trusted = parsed;
        }
        var addresses = AddressRanges.Loopback;
        if (network == "netns")
        {
            if (AddressRanges.ParseNetns(podCidr, serviceCidr, out error) is not { } netns) return null;
            addresses = netns;
        }
        if (config is null)
        {
            // No folder to sit beside: the state is the working folder's (a Deployment mounts a volume there or passes --state).
            state = Path.GetFullPath(state ?? ".ambient-state");
            error = null;
            return new IstiodOptions("", state, grpc, monitoring, clusterId, trustDomain, caDirectory, caKeyPasswordFile, rootNamespace, addresses,
                configSource, kubeconfig)
            {
                CaAuth = mode,
                TrustedNodeAccounts = trusted,
                WaypointImage = waypointImage ?? WaypointDeploymentOptions.DefaultImage,
                WaypointIstiod = waypointIstiod ?? WaypointDeploymentOptions.DefaultIstiod,
            };
        }
        config = Path.GetFullPath(config);
        var isFile = File.Exists(config);
        if (!isFile && !Directory.Exists(config)) { error = $"--config: '{config}' is neither a file nor a folder"; return null; }
        state = Path.GetFullPath(state ?? Path.Combine(isFile ? Path.GetDirectoryName(config)! : config, "..", ".ambient-state"));
        error = null;
        return new IstiodOptions(config, state, grpc, monitoring, clusterId, trustDomain, caDirectory, caKeyPasswordFile, rootNamespace, addresses,
            configSource, kubeconfig)
        {
            CaAuth = mode,
            TrustedNodeAccounts = trusted,
        };
    }
}

/// <summary>How istiod-lite authenticates proxies on the CA and discovery.</summary>
internal enum CaAuthMode
{
    /// <summary>Local mode: one token per node in the state folder.</summary>
    NodeToken,

    /// <summary>Kubernetes mode: projected service-account tokens (audience istio-ca) checked by TokenReview.</summary>
    TokenReview,
}
