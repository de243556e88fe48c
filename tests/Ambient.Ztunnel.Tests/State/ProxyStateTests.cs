using System.Net;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Ambient.TestCommon;
using Ambient.Dataplane.State;
using static Ambient.Ztunnel.Tests.State.TestMeshes;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>Node-1's view of the demo mesh, received over xDS from a real istiod-lite once for the class.</summary>
public sealed class ProxyStateFixture : IAsyncLifetime
{
    private IstiodTestHost _istiod = null!;

    internal MeshSnapshot Snapshot { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        _istiod = await IstiodTestHost.StartAsync(Demo());
        await using var client = _istiod.CreateXdsClient("node-1", new ListLogger());
        client.Start();
        await client.WaitForSyncAsync().WaitAsync(TimeSpan.FromSeconds(15));
        Snapshot = client.Current;
    }

    public async ValueTask DisposeAsync() => await _istiod.DisposeAsync();
}

public sealed class ProxyStateTests(ProxyStateFixture fixture) : IClassFixture<ProxyStateFixture>
{
    private ProxyState Node(string node = "node-1") => new(node, fixture.Snapshot);

    private WorkloadInfo Workload(string ns, string name) => fixture.Snapshot.FindPod(ns, name)!;

    private WorkloadInfo Client => Workload("demo", "client");

    [Theory]
    [InlineData("echo.demo.svc.cluster.local")]
    [InlineData("echo.demo.svc")]
    [InlineData("echo.demo")]
    [InlineData("echo")]
    public void Service_hostname_forms_resolve_to_an_echo_pod_over_hbone_on_the_named_target_port(string host)
    {
        var result = Node().ResolveDestination(Client, host, 80);
        Assert.True(result.Succeeded, result.Error);
        var d = result.Destination!;
        Assert.Equal("echo", d.Workload!.ServiceAccount);
        Assert.True(d.UseHbone);
        Assert.Equal("spiffe://cluster.local/ns/demo/sa/echo", d.ExpectedIdentity);
        Assert.Equal(8080, d.Target.Port); // targetPort: http -> containerPort 8080
        Assert.Equal(d.Workload.Addresses[0], d.Target.Address);
        Assert.Equal(new IPEndPoint(d.Target.Address, 15008), d.TunnelEndpoint);
        Assert.Equal("echo.demo.svc.cluster.local", d.Service!.Hostname);
        Assert.False(d.IsPassthrough);
    }

    [Fact]
    public void Bare_name_is_looked_up_in_the_source_namespace_only()
    {
        var legacySource = Workload("legacy", "legacy-echo");
        var fromLegacy = Node().ResolveDestination(legacySource, "echo", 80);
        Assert.Equal(ResolveFailure.UnknownHost, fromLegacy.Failure);
        Assert.Contains("legacy", fromLegacy.Error, StringComparison.Ordinal);
        var noSource = Node().ResolveDestination(null, "echo", 80);
        Assert.Equal(ResolveFailure.UnknownHost, noSource.Failure);
    }

    [Fact]
    public void Service_vip_balances_round_robin_over_both_endpoints_and_honours_numeric_target_ports()
    {
        var state = Node();
        var vip = fixture.Snapshot.FindServiceByKey("demo/echo.demo.svc.cluster.local")!.Vips[0];
        var seen = new HashSet<string>();
        for (var i = 0; i < 4; i++)
        {
            var r = state.ResolveDestination(Client, vip.ToString(), 81);
            Assert.True(r.Succeeded, r.Error);
            Assert.Equal(9081, r.Destination!.Target.Port);
            seen.Add(r.Destination.Workload!.Name);
        }
        Assert.Equal(["echo-v1", "echo-v2"], seen.Order());
        // The IPAddress overload (captured original destination) agrees.
        var byAddress = state.ResolveDestination(Client, vip, 81);
        Assert.Equal("echo.demo.svc.cluster.local", byAddress.Destination!.Service!.Hostname);
    }

    [Fact]
    public void Pod_ip_goes_straight_to_that_pod_on_the_requested_port()
    {
        var echo = Workload("demo", "echo-v2");
        var r = Node().ResolveDestination(Client, echo.Addresses[0].ToString(), 12345);
        Assert.True(r.Succeeded, r.Error);
        Assert.Same(echo, r.Destination!.Workload);
        Assert.Equal(new IPEndPoint(echo.Addresses[0], 12345), r.Destination.Target);
        Assert.True(r.Destination.UseHbone);
        Assert.Null(r.Destination.Service);
    }

    [Fact]
    public void Non_mesh_pod_and_its_service_use_plain_tcp_without_an_identity()
    {
        var legacy = Workload("legacy", "legacy-echo");
        var direct = Node().ResolveDestination(Client, legacy.Addresses[0].ToString(), 8080);
        Assert.False(direct.Destination!.UseHbone);
        Assert.Null(direct.Destination.ExpectedIdentity);
        Assert.Null(direct.Destination.TunnelEndpoint);

        var viaService = Node().ResolveDestination(Client, "legacy-echo.legacy", 80);
        Assert.True(viaService.Succeeded, viaService.Error);
        Assert.Same(legacy, viaService.Destination!.Workload);
        Assert.False(viaService.Destination.UseHbone);
        Assert.Equal(new IPEndPoint(legacy.Addresses[0], 8080), viaService.Destination.Target);
    }

    [Fact]
    public void Unknown_ip_is_passed_through_and_unknown_hostname_is_an_error()
    {
        var passthrough = Node().ResolveDestination(Client, "192.0.2.7", 443);
        Assert.True(passthrough.Succeeded);
        Assert.True(passthrough.Destination!.IsPassthrough);
        Assert.False(passthrough.Destination.UseHbone);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.0.2.7"), 443), passthrough.Destination.Target);

        var v6 = Node().ResolveDestination(Client, "[2001:db8::1]", 80);
        Assert.Equal(IPAddress.Parse("2001:db8::1"), v6.Destination!.Target.Address);

        var unknown = Node().ResolveDestination(Client, "nope.demo.svc.cluster.local", 80);
        Assert.False(unknown.Succeeded);
        Assert.Equal(ResolveFailure.UnknownHost, unknown.Failure);
        Assert.Contains("nope.demo.svc.cluster.local", unknown.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Port_not_exposed_named_target_port_missing_and_no_endpoints_are_reported()
    {
        var wrongPort = Node().ResolveDestination(Client, "echo", 8443);
        Assert.Equal(ResolveFailure.PortNotExposed, wrongPort.Failure);
        Assert.Contains("8443", wrongPort.Error, StringComparison.Ordinal);

        // grpc's targetPort is the name "grpc", which no echo pod declares.
        var named = Node().ResolveDestination(Client, "grpc", 90);
        Assert.Equal(ResolveFailure.PortNotExposed, named.Failure);

        var nobody = Node().ResolveDestination(Client, "nobody", 80);
        Assert.Equal(ResolveFailure.NoHealthyEndpoint, nobody.Failure);

        Assert.Equal(ResolveFailure.PortNotExposed, Node().ResolveDestination(Client, "echo", 0).Failure);
    }

    [Fact]
    public void Local_workloads_split_by_mesh_membership_per_node()
    {
        var node2 = Node("node-2").LocalWorkloads;
        Assert.Equal(["echo-v1", "echo-v2"], node2.InMesh.Select(w => w.Name).Order());
        Assert.Equal(["legacy-echo"], node2.NotInMesh.Select(w => w.Name));
        var node1 = Node("node-1").LocalWorkloads;
        Assert.Equal(["client"], node1.InMesh.Select(w => w.Name));
        Assert.Empty(node1.NotInMesh);
        Assert.Same(LocalWorkloads.Empty, Node("node-9").LocalWorkloads);
        var echo = Workload("demo", "echo-v1");
        Assert.Same(echo, Node().FindWorkloadByAddress(echo.Addresses[0]));
        Assert.Same(echo, Node().FindWorkloadByAddress(echo.Addresses[0].MapToIPv6()));
    }

    [Fact]
    public void Update_swaps_the_snapshot_and_notifies()
    {
        var state = new ProxyState("node-2");
        Assert.Empty(state.LocalWorkloads.InMesh);
        ProxyState? notified = null;
        state.Changed += s => notified = s;
        state.Update(fixture.Snapshot);
        Assert.Same(state, notified);
        Assert.Same(fixture.Snapshot, state.Snapshot);
        Assert.Equal(2, state.LocalWorkloads.InMesh.Length);
    }

    [Fact]
    public void Unhealthy_endpoints_are_skipped_and_all_unhealthy_is_no_healthy_endpoint()
    {
        var service = new ServiceInfo("svc", "ns", "svc.ns.svc.cluster.local")
        {
            Vips = [IPAddress.Parse("10.96.0.1")],
            Ports = [new ServicePortInfo(80, 8080, AppProtocol.Unknown)],
        };
        WorkloadInfo Pod(string name, string ip, WorkloadStatus status) => new($"Kubernetes//Pod/ns/{name}", "ns", "cluster.local", "sa")
        {
            Name = name,
            CanonicalName = name,
            WorkloadName = name,
            Addresses = [IPAddress.Parse(ip)],
            TunnelProtocol = TunnelProtocol.Hbone,
            Status = status,
            Services = [new WorkloadServicePorts(service.Key, [new PortMapping(80, 8080, AppProtocol.Unknown)])],
        };
        var mixed = MeshSnapshot.Create([Pod("a", "10.0.0.1", WorkloadStatus.Unhealthy), Pod("b", "10.0.0.2", WorkloadStatus.Healthy)], [service], MeshOptions.Default);
        var state = new ProxyState("n", mixed);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("b", state.ResolveDestination(null, "10.96.0.1", 80).Destination!.Workload!.Name);
        }
        var down = MeshSnapshot.Create([Pod("a", "10.0.0.1", WorkloadStatus.Unhealthy)], [service], MeshOptions.Default);
        var r = new ProxyState("n", down).ResolveDestination(null, "svc.ns", 80);
        Assert.Equal(ResolveFailure.NoHealthyEndpoint, r.Failure);
        Assert.Contains("1 can serve", r.Error, StringComparison.Ordinal);
    }
}
