using System.Diagnostics;
using Ambient.Ctl.Install;
using Ambient.TestCommon;
using k8s;
using k8s.Models;

namespace Ambient.Ctl.Tests.Install;

/// <summary>
/// manifests/ as ambientctl carries it: every object kustomize renders, the least-privilege RBAC the brief of each
/// component allows, the ztunnel's capabilities (in-pod mode's and no more), and the images the kustomization sets.
/// </summary>
public sealed class MeshManifestsTests
{
    private static readonly IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Embedded = MeshManifests.LoadEmbedded();

    private static T One<T>(string name) where T : IKubernetesObject<V1ObjectMeta> =>
        Assert.Single(Embedded.OfType<T>(), o => o.Name() == name);

    [Fact]
    public void The_built_in_copy_is_the_repository_folder()
    {
        var folder = MeshManifests.LoadFolder(Path.Combine(RepoPaths.Root, "manifests"));
        Assert.Equal(folder.Select(ClusterApplier.Describe), Embedded.Select(ClusterApplier.Describe));
    }

    [Fact]
    public void Everything_a_cluster_needs_is_there_namespace_first()
    {
        Assert.Equal("Namespace istio-system", ClusterApplier.Describe(Embedded[0]));
        string[] wanted =
        [
            "CustomResourceDefinition authorizationpolicies.security.istio.io",
            "CustomResourceDefinition peerauthentications.security.istio.io",
            "ServiceAccount istio-system/istiod", "ClusterRole istiod-lite", "ClusterRoleBinding istiod-lite",
            "Service istio-system/istiod", "Deployment istio-system/istiod",
            "ServiceAccount istio-system/ztunnel", "DaemonSet istio-system/ztunnel",
            "ServiceAccount istio-system/ambient-node-agent", "ClusterRole ambient-node-agent",
            "ClusterRoleBinding ambient-node-agent", "DaemonSet istio-system/ambient-node-agent",
        ];
        Assert.Equal(wanted.Order(), Embedded.Skip(1).Select(ClusterApplier.Describe).Order());
    }

    [Fact]
    public void Istiod_may_list_and_watch_what_it_reads_write_route_status_review_tokens_and_deploy_waypoints_nothing_else()
    {
        var granted = One<V1ClusterRole>("istiod-lite").Rules
            .SelectMany(r => r.ApiGroups.SelectMany(g => r.Resources.SelectMany(res => r.Verbs.Select(v => $"{v} {res}.{g}"))))
            .Order().ToList();
        string[] reads = ["namespaces.", "pods.", "services.", "serviceaccounts.", "endpointslices.discovery.k8s.io",
            "gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io",
            "authorizationpolicies.security.istio.io", "peerauthentications.security.istio.io"];
        var wanted = reads.SelectMany(r => new[] { "list " + r, "watch " + r })
            .Concat(["update gateways/status.gateway.networking.k8s.io", "update httproutes/status.gateway.networking.k8s.io",
                "create tokenreviews.authentication.k8s.io"])
            // The waypoint deployment controller: server-side apply (create + patch) and delete of each waypoint's
            // objects, and the mesh root published to the waypoint's namespace.
            .Concat(new[] { "serviceaccounts.", "services.", "deployments.apps" }.SelectMany(r => new[] { "create " + r, "patch " + r, "delete " + r }))
            .Concat(["create configmaps.", "patch configmaps."])
            .Order().ToList();
        Assert.Equal(wanted, granted);
        var binding = One<V1ClusterRoleBinding>("istiod-lite");
        Assert.Equal(("ServiceAccount", "istiod", "istio-system"), (binding.Subjects[0].Kind, binding.Subjects[0].Name, binding.Subjects[0].NamespaceProperty));
    }

    [Fact]
    public void Istiod_runs_from_the_kubernetes_api_as_non_root_and_trusts_only_the_ztunnels_to_impersonate()
    {
        var deployment = One<V1Deployment>("istiod");
        var container = Assert.Single(deployment.Spec.Template.Spec.Containers);
        Assert.Equal("istiod", deployment.Spec.Template.Spec.ServiceAccountName);
        Assert.Contains("--config-source kubernetes", string.Join(' ', container.Args));
        Assert.Equal("istio-system/ztunnel", Assert.Single(container.Env, e => e.Name == "CA_TRUSTED_NODE_ACCOUNTS").Value);
        Assert.True(deployment.Spec.Template.Spec.SecurityContext.RunAsNonRoot);
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        Assert.Equal([15012, 15014], One<V1Service>("istiod").Spec.Ports.Select(p => p.Port));
    }

    [Fact]
    public void The_ztunnel_has_in_pod_modes_capabilities_only_and_the_istio_ca_token()
    {
        var pod = One<V1DaemonSet>("ztunnel").Spec.Template.Spec;
        Assert.NotEqual(true, pod.HostNetwork);
        var container = Assert.Single(pod.Containers);
        Assert.NotEqual(true, container.SecurityContext.Privileged);
        Assert.Equal(["NET_ADMIN", "NET_RAW", "SYS_ADMIN"], container.SecurityContext.Capabilities.Add.Order());
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        var token = Assert.Single(pod.Volumes, v => v.Projected is not null).Projected.Sources[0].ServiceAccountToken;
        Assert.Equal(("istio-ca", "istio-token"), (token.Audience, token.Path));
        var args = string.Join(' ', container.Args);
        Assert.Contains("--ca-token-file /var/run/secrets/tokens/istio-token", args);
        Assert.Contains("--zds-socket /var/run/ztunnel/ztunnel.sock", args);
        Assert.Equal("/var/run/ztunnel", Assert.Single(pod.Volumes, v => v.HostPath is not null).HostPath.Path);
    }

    [Fact]
    public void The_node_agent_runs_as_istio_cni_does_with_the_nodes_cni_folders()
    {
        var pod = One<V1DaemonSet>("ambient-node-agent").Spec.Template.Spec;
        Assert.True(pod.HostNetwork);
        var container = Assert.Single(pod.Containers);
        Assert.True(container.SecurityContext.Privileged);
        Assert.Equal("node-agent", container.Args[0]);
        var hostPaths = pod.Volumes.Where(v => v.HostPath is not null).Select(v => v.HostPath.Path).ToList();
        Assert.Contains("/opt/cni/bin", hostPaths);
        Assert.Contains("/etc/cni/net.d", hostPaths);
        Assert.Contains("/var/run/ztunnel", hostPaths);
        // The plugin on the host reaches the agent at the same path; CNI_NETNS paths are the host's, under /host.
        Assert.Contains("/var/run/ambient-cni", hostPaths);
        var args = string.Join(' ', container.Args);
        Assert.Contains("--cni-socket /var/run/ambient-cni/pluginevent.sock", args);
        Assert.Contains("--host-root /host", args);
        Assert.Contains(container.VolumeMounts, m => m.MountPath == "/var/run/ambient-cni");
        var verbs = One<V1ClusterRole>("ambient-node-agent").Rules.SelectMany(r => r.Verbs).Distinct().Order();
        Assert.Equal(["get", "list", "watch"], verbs);
    }

    [Fact]
    public void Images_take_the_kustomization_tag_or_the_hub_and_tag_given()
    {
        Assert.Equal("ambient/ztunnel:dev", Assert.Single(One<V1DaemonSet>("ztunnel").Spec.Template.Spec.Containers).Image);
        var retagged = MeshManifests.LoadEmbedded(hub: "registry.example/mesh/", tag: "1.2");
        var ztunnel = Assert.Single(retagged.OfType<V1DaemonSet>(), d => d.Name() == "ztunnel");
        Assert.Equal("registry.example/mesh/ztunnel:1.2", Assert.Single(ztunnel.Spec.Template.Spec.Containers).Image);
    }

    [Fact]
    public void Kubectl_kustomize_renders_the_same_objects()
    {
        var kubectl = Ambient.Ctl.Local.HostPrograms.Resolve("kubectl");
        if (kubectl is null)
        {
            Assert.Skip("kubectl is not installed");
            return;
        }
        var start = new ProcessStartInfo(kubectl, ["kustomize", Path.Combine(RepoPaths.Root, "manifests")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var rendered = process.StandardOutput.ReadToEnd();
        var errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, errors);
        var objects = KubernetesYaml.LoadAllFromString(rendered).Cast<IKubernetesObject<V1ObjectMeta>>();
        Assert.Equal(Embedded.Select(ClusterApplier.Describe).Order(), objects.Select(ClusterApplier.Describe).Order());
        Assert.Contains("image: ambient/istiod-lite:dev", rendered);
    }
}
