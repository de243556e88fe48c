using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Model;

namespace Ambient.Core.Xds;

/// <summary>Who the node proxy is and where istiod lives; fixed for the client's lifetime.</summary>
internal sealed record DeltaXdsClientOptions
{
    /// <summary>istiod's gRPC address, e.g. <c>https://127.0.0.1:15012</c>.</summary>
    public required Uri Address { get; init; }

    /// <summary>The mesh root(s) istiod's serving certificate must chain to.</summary>
    public required X509Certificate2Collection Roots { get; init; }

    /// <summary>Node bearer token (local mode: <c>&lt;state&gt;/tokens/&lt;node&gt;.token</c>); read at every (re)connect.</summary>
    public required Func<string> Token { get; init; }

    /// <summary>The ztunnel's own pod name and namespace, node and IP (they form the xDS node id).</summary>
    public string PodName { get; init; } = "ztunnel";
    public string PodNamespace { get; init; } = "istio-system";
    public required string NodeName { get; init; }
    public string InstanceIp { get; init; } = "127.0.0.1";
    public string ClusterId { get; init; } = "Kubernetes";

    /// <summary>Extra DNS name accepted on istiod's certificate besides the host dialled.</summary>
    public string? ServerName { get; init; } = IstiodChannel.DefaultServerName;

    /// <summary>Mesh settings used to build snapshots (domain suffix for hostname lookups).</summary>
    public MeshOptions Mesh { get; init; } = MeshOptions.Default;

    /// <summary>First reconnect delay; doubles per failure up to <see cref="MaxBackoff"/>, with jitter.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The first part of the node id: <c>ztunnel</c>, or <c>waypoint</c> for a waypoint (istiod-lite sends a
    /// waypoint its routes only when the id names the waypoint's own pod).</summary>
    public string ProxyType { get; init; } = "ztunnel";

    /// <summary><c>&lt;type&gt;~&lt;ip&gt;~&lt;pod&gt;.&lt;ns&gt;~&lt;ns&gt;.svc.cluster.local</c>, as Istio's proxies send it.</summary>
    public string NodeId => $"{ProxyType}~{InstanceIp}~{PodName}.{PodNamespace}~{PodNamespace}.svc.cluster.local";
}
