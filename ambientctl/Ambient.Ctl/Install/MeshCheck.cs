using System.Globalization;
using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Ambient.Ctl.Install;

/// <summary>One thing `ambientctl check` looks at: its name, whether it is fine, and what was seen.</summary>
internal sealed record CheckItem(string Name, bool Ok, string Detail);

/// <summary>
/// What a mesh on a cluster needs, read from the API server: the CRDs (Gateway API: a prerequisite; security.istio.io:
/// manifests/crds or Istio's), the mesh CA (Secret cacerts and ConfigMap istio-ca-root-cert), istiod-lite's
/// Deployment with a ready replica, and the ztunnel and node agent DaemonSets ready on every node they are scheduled to.
/// </summary>
internal static class MeshCheck
{
    public const string Namespace = "istio-system";
    public const string IstiodDeployment = "istiod";
    public const string ZtunnelDaemonSet = "ztunnel";
    public const string NodeAgentDaemonSet = "ambient-node-agent";

    /// <summary>The Gateway API kinds istiod-lite watches (standard channel).</summary>
    public static readonly IReadOnlyList<string> GatewayApiCrds =
        ["gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io"];

    public static readonly IReadOnlyList<string> IstioSecurityCrds =
        ["authorizationpolicies.security.istio.io", "peerauthentications.security.istio.io"];

    public static async Task<IReadOnlyList<CheckItem>> RunAsync(IKubernetes client, CancellationToken cancellationToken)
    {
        List<CheckItem> items = [];
        foreach (var crd in GatewayApiCrds)
        {
            items.Add(await CheckCrdAsync(client, crd, "Gateway API prerequisite: kubectl apply -f " + GatewayApi.StandardInstallUrl, cancellationToken).ConfigureAwait(false));
        }
        foreach (var crd in IstioSecurityCrds)
        {
            items.Add(await CheckCrdAsync(client, crd, "apply manifests/ (ambientctl install) or Istio's CRDs", cancellationToken).ConfigureAwait(false));
        }
        var secret = await MeshCaBootstrap.ReadSecretOrNullAsync(client, cancellationToken).ConfigureAwait(false);
        var rootMap = await MeshCaBootstrap.ReadRootConfigMapOrNullAsync(client, cancellationToken).ConfigureAwait(false);
        items.Add((secret, rootMap) switch
        {
            (null, _) => new CheckItem("mesh CA", false, $"Secret {Namespace}/{MeshCaBootstrap.SecretName} is missing (ambientctl install creates one)"),
            (_, null) => new CheckItem("mesh CA", false, $"ConfigMap {Namespace}/{MeshCaBootstrap.RootConfigMapName} is missing (ambientctl install creates it from the Secret)"),
            _ => new CheckItem("mesh CA", true, $"Secret {MeshCaBootstrap.SecretName}, ConfigMap {MeshCaBootstrap.RootConfigMapName}"),
        });
        items.Add(await CheckIstiodAsync(client, cancellationToken).ConfigureAwait(false));
        items.Add(await CheckDaemonSetAsync(client, "ztunnel", ZtunnelDaemonSet, cancellationToken).ConfigureAwait(false));
        items.Add(await CheckDaemonSetAsync(client, "node agent", NodeAgentDaemonSet, cancellationToken).ConfigureAwait(false));
        return items;
    }

    private static async Task<CheckItem> CheckCrdAsync(IKubernetes client, string name, string remedy, CancellationToken cancellationToken)
    {
        var crd = await KubeReads.OrNullAsync(() => client.ApiextensionsV1.ReadCustomResourceDefinitionAsync(name, cancellationToken: cancellationToken)).ConfigureAwait(false);
        if (crd is null) return new CheckItem("CRD " + name, false, "missing: " + remedy);
        // A CRD the server has not accepted yet (names conflict, still being set up) serves nothing.
        var established = crd.Status?.Conditions?.FirstOrDefault(c => c.Type == "Established");
        if (established is not null && established.Status != "True")
        {
            return new CheckItem("CRD " + name, false, $"not established: {established.Reason} {established.Message}".TrimEnd());
        }
        var served = crd.Spec?.Versions?.Where(v => v.Served).Select(v => v.Name) ?? [];
        return new CheckItem("CRD " + name, true, "served " + string.Join(", ", served));
    }

    private static async Task<CheckItem> CheckIstiodAsync(IKubernetes client, CancellationToken cancellationToken)
    {
        var deployment = await KubeReads.OrNullAsync(() => client.AppsV1.ReadNamespacedDeploymentAsync(IstiodDeployment, Namespace, cancellationToken: cancellationToken)).ConfigureAwait(false);
        if (deployment is null) return new CheckItem("istiod-lite", false, $"Deployment {Namespace}/{IstiodDeployment} is missing");
        var wanted = deployment.Spec?.Replicas ?? 1;
        var ready = deployment.Status?.ReadyReplicas ?? 0;
        var counts = string.Create(CultureInfo.InvariantCulture, $"{ready}/{wanted} replicas ready");
        return ready > 0 ? new CheckItem("istiod-lite", true, counts) : new CheckItem("istiod-lite", false, counts);
    }

    private static async Task<CheckItem> CheckDaemonSetAsync(IKubernetes client, string component, string name, CancellationToken cancellationToken)
    {
        var daemonSet = await KubeReads.OrNullAsync(() => client.AppsV1.ReadNamespacedDaemonSetAsync(name, Namespace, cancellationToken: cancellationToken)).ConfigureAwait(false);
        if (daemonSet is null) return new CheckItem(component, false, $"DaemonSet {Namespace}/{name} is missing");
        var desired = daemonSet.Status?.DesiredNumberScheduled ?? 0;
        var ready = daemonSet.Status?.NumberReady ?? 0;
        var counts = string.Create(CultureInfo.InvariantCulture, $"{ready}/{desired} nodes ready");
        // Every node it should run on: a node without its ztunnel or node agent has pods that are not captured.
        return desired > 0 && ready >= desired
            ? new CheckItem(component, true, counts)
            : new CheckItem(component, false, desired == 0 ? "scheduled on no node (" + counts + ")" : counts);
    }

}

/// <summary>The Gateway API release named as the prerequisite (standard channel: Gateway, HTTPRoute, ReferenceGrant).</summary>
internal static class GatewayApi
{
    public const string Version = "v1.4.1";
    public const string StandardInstallUrl = "https://github.com/kubernetes-sigs/gateway-api/releases/download/" + Version + "/standard-install.yaml";
}
