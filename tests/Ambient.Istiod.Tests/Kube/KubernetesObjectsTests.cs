using System.Text.Json;
using Ambient.Config.Kubernetes;
using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using k8s;
using k8s.Models;
using Xunit;

namespace Ambient.Istiod.Tests.Kube;

/// <summary>KubernetesClient objects become the records a manifest of the same object yields in a folder.</summary>
public sealed class KubernetesObjectsTests
{
    private static V1Pod RunningPod(string name = "web-1", string ip = "10.244.1.7", bool ready = true) => new()
    {
        ApiVersion = "v1",
        Kind = "Pod",
        Metadata = new V1ObjectMeta
        {
            Name = name,
            NamespaceProperty = "shop",
            Labels = new Dictionary<string, string> { ["app"] = "web" },
            Annotations = new Dictionary<string, string> { ["kubectl.kubernetes.io/last-applied-configuration"] = "{...}", ["team"] = "a" },
            ResourceVersion = "42",
            Uid = "0b6d",
        },
        Spec = new V1PodSpec
        {
            ServiceAccountName = "web",
            NodeName = "node-a",
            Containers = [new V1Container { Name = "app", Image = "web:1", Ports = [new V1ContainerPort { Name = "http", ContainerPort = 8080 }] }],
        },
        Status = new V1PodStatus
        {
            Phase = "Running",
            PodIP = ip,
            PodIPs = [new V1PodIP { Ip = ip }],
            Conditions = [new V1PodCondition { Type = "Ready", Status = ready ? "True" : "False" }],
        },
    };

    [Fact]
    public void A_running_pod_equals_the_folder_form_of_its_manifest()
    {
        var converted = KubernetesObjects.Pod(RunningPod()).Resource;

        var manifest = ManifestParser.Parse("pod.yaml", """
            apiVersion: v1
            kind: Pod
            metadata:
              name: web-1
              namespace: shop
              uid: 0b6d
              labels: {app: web}
              annotations: {team: a}
            spec:
              serviceAccountName: web
              nodeName: node-a
              containers:
              - name: app
                image: web:1
                ports: [{name: http, containerPort: 8080}]
            status:
              podIP: 10.244.1.7
            """).Resources.Single();
        Assert.Equal(manifest with { Source = converted!.Source }, converted);
        Assert.Equal("Pod shop/web-1", converted.Source.ToString());
    }

    [Fact]
    public void Pod_address_node_account_and_readiness_come_from_the_api_object()
    {
        var pod = Assert.IsType<PodResource>(KubernetesObjects.Pod(RunningPod(ready: false)).Resource);
        Assert.Equal("10.244.1.7", pod.PodIP);
        Assert.Equal("node-a", pod.NodeName);
        Assert.Equal("web", pod.ServiceAccountName);
        Assert.False(pod.Ready);

        var snapshot = MeshBuilder.Build([pod, new NamespaceResource("v1", new ObjectMeta("shop", "", Labels("istio.io/dataplane-mode", "ambient"), Labels()), new SourceLocation("x", 0))]);
        var workload = Assert.Single(snapshot.Workloads);
        Assert.Equal("10.244.1.7", workload.Addresses.Single().ToString());
        Assert.Equal(WorkloadStatus.Unhealthy, workload.Status);
    }

    [Theory]
    [InlineData("Succeeded")]
    [InlineData("Failed")]
    public void Finished_pods_are_not_workloads(string phase)
    {
        var pod = RunningPod();
        pod.Status.Phase = phase;
        Assert.Null(KubernetesObjects.Pod(pod).Resource);
    }

    [Fact]
    public void A_pod_without_an_address_yet_is_not_a_workload_and_no_error()
    {
        var pod = RunningPod();
        pod.Status = new V1PodStatus { Phase = "Pending" };
        var converted = KubernetesObjects.Pod(pod);
        Assert.Null(converted.Resource);
        Assert.Empty(converted.Errors);
    }

    [Fact]
    public void A_service_keeps_cluster_ip_selector_and_named_target_ports()
    {
        var svc = new V1Service
        {
            ApiVersion = "v1",
            Metadata = new V1ObjectMeta { Name = "web", NamespaceProperty = "shop" },
            Spec = new V1ServiceSpec
            {
                ClusterIP = "10.96.0.12",
                Selector = new Dictionary<string, string> { ["app"] = "web" },
                Ports =
                [
                    KubernetesJson.Deserialize<V1ServicePort>("""{"name":"http","port":80,"targetPort":"http","appProtocol":"http"}"""),
                    KubernetesJson.Deserialize<V1ServicePort>("""{"name":"admin","port":9000,"targetPort":9001}"""),
                    new V1ServicePort { Name = "plain", Port = 7000 },
                ],
            },
        };
        var converted = Assert.IsType<ServiceResource>(KubernetesObjects.Service(svc).Resource);
        Assert.Equal("10.96.0.12", converted.ClusterIP);
        Assert.Equal("ClusterIP", converted.Type);
        Assert.Equal("web", converted.Selector["app"]);
        Assert.Equal([TargetPort.FromName("http"), TargetPort.FromNumber(9001), TargetPort.FromNumber(7000)], converted.Ports.Select(p => p.TargetPort));
        Assert.Equal("TCP", converted.Ports[0].Protocol);
        Assert.Equal("http", converted.Ports[0].AppProtocol);
    }

    [Fact]
    public void A_custom_resource_is_validated_as_in_a_folder_and_errors_name_the_object()
    {
        var route = Custom("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",
             "metadata":{"name":"bad","namespace":"shop","resourceVersion":"7","generation":2,"managedFields":[]},
             "spec":{"parentRefs":[{"group":"","kind":"Service","name":"web"}],
                     "rules":[{"backendRefs":[{"name":"web","port":99999}]}]},
             "status":{"parents":[]}}
            """);
        var converted = KubernetesObjects.Custom(route, "HTTPRoute");
        Assert.Null(converted.Resource);
        var error = Assert.Single(converted.Errors);
        Assert.StartsWith("HTTPRoute shop/bad: spec.rules[0].backendRefs[0].port:", error.ToString());
    }

    [Fact]
    public void A_valid_waypoint_gateway_converts_like_its_manifest()
    {
        var gateway = Custom("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"Gateway",
             "metadata":{"name":"waypoint","namespace":"shop","labels":{"istio.io/waypoint-for":"service"},"uid":"1","generation":1},
             "spec":{"gatewayClassName":"istio-waypoint","listeners":[{"name":"mesh","port":15008,"protocol":"HBONE"}]}}
            """);
        var converted = Assert.IsType<GatewayResource>(KubernetesObjects.Custom(gateway, "Gateway").Resource);
        Assert.True(converted.IsWaypoint);
        Assert.Equal("Gateway shop/waypoint", converted.Source.ToString());
        Assert.Equal(15008, converted.Listeners.Single().Port);
    }

    private static CustomResource Custom(string json) => KubernetesJson.Deserialize<CustomResource>(json);

    private static System.Collections.Immutable.ImmutableSortedDictionary<string, string> Labels(params string[] kv)
    {
        var b = System.Collections.Immutable.ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < kv.Length; i += 2) b[kv[i]] = kv[i + 1];
        return b.ToImmutable();
    }

    [Fact]
    public void A_dual_stack_pod_and_service_keep_the_address_of_the_other_family()
    {
        var pod = RunningPod();
        pod.Status.PodIPs = [new V1PodIP { Ip = "10.244.1.7" }, new V1PodIP { Ip = "fd00:10:244::7" }];
        var converted = Assert.IsType<PodResource>(KubernetesObjects.Pod(pod).Resource);
        Assert.Equal("10.244.1.7", converted.PodIP);
        Assert.Equal(["fd00:10:244::7"], converted.SecondaryPodIPs);

        var svc = new V1Service
        {
            ApiVersion = "v1",
            Metadata = new V1ObjectMeta { Name = "web", NamespaceProperty = "shop" },
            Spec = new V1ServiceSpec
            {
                ClusterIP = "10.96.0.10", ClusterIPs = ["10.96.0.10", "fd00:96::10"], IpFamilies = ["IPv4", "IPv6"],
                Selector = new Dictionary<string, string> { ["app"] = "web" }, Ports = [new V1ServicePort { Name = "http", Port = 80 }],
            },
        };
        var service = Assert.IsType<ServiceResource>(KubernetesObjects.Service(svc).Resource);
        Assert.Equal(("10.96.0.10", "fd00:96::10"), (service.ClusterIP, Assert.Single(service.SecondaryClusterIPs)));

        pod.Status.PodIPs[1].Ip = "fd00::7/64";
        var rejected = KubernetesObjects.Pod(pod);
        Assert.Null(rejected.Resource);
        Assert.Equal("status.podIPs[1].ip", Assert.Single(rejected.Errors).Field);
    }

    [Fact]
    public void An_endpoint_slice_keeps_its_service_endpoints_readiness_target_pods_and_ports()
    {
        var slice = new V1EndpointSlice
        {
            ApiVersion = "discovery.k8s.io/v1",
            AddressType = "IPv4",
            Metadata = new V1ObjectMeta { Name = "db-x1", NamespaceProperty = "shop", Labels = new Dictionary<string, string> { ["kubernetes.io/service-name"] = "db" } },
            Endpoints =
            [
                new V1Endpoint { Addresses = ["10.244.1.9"], TargetRef = new V1ObjectReference { Kind = "Pod", Name = "db-0" } },
                new V1Endpoint { Addresses = ["192.0.2.1"], Conditions = new V1EndpointConditions { Ready = false } },
            ],
            Ports = [new Discoveryv1EndpointPort { Name = "sql", Port = 5432, Protocol = "TCP" }, new Discoveryv1EndpointPort { Port = 53, Protocol = "UDP" }],
        };

        var converted = Assert.IsType<EndpointSliceResource>(KubernetesObjects.EndpointSlice(slice).Resource);

        Assert.Equal(("EndpointSlice/shop/db-x1", "db", "IPv4"), (converted.Key, converted.ServiceName, converted.AddressType));
        Assert.Equal(new EndpointSliceEndpoint(["10.244.1.9"], true, new ObjectKeyRef("shop", "db-0")), converted.Endpoints[0]);
        Assert.Equal(new EndpointSliceEndpoint(["192.0.2.1"], false, null), converted.Endpoints[1]);
        Assert.Equal([new EndpointSlicePort("sql", 5432, "TCP"), new EndpointSlicePort(null, 53, "UDP")], converted.Ports);
        // Equal objects convert to equal records: a status-only update publishes nothing.
        Assert.Equal(converted, KubernetesObjects.EndpointSlice(slice).Resource);
    }
}
