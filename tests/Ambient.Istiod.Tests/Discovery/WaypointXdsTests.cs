using System.Collections.Immutable;
using System.Threading.Channels;
using Ambient.Core.Config;
using Ambient.Core.Identity;
using Ambient.Core.Model;
using Ambient.Core.Protos.Ca;
using Ambient.Core.Protos.Discovery;
using Resource = Ambient.Core.Config.Resource;
using Ambient.Core.Protos.Waypoint;
using Ambient.Core.Xds;
using Ambient.Istiod.Ca;
using Ambient.Istiod.Discovery;
using Ambient.Istiod.Tests.Ca;
using Ambient.Istiod.Tests.Config;
using Ambient.TestCommon;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static Ambient.TestCommon.GatewayApiFixtures;

namespace Ambient.Istiod.Tests.Discovery;

/// <summary>
/// A waypoint subscribes on the usual delta ADS stream with its node token and a node id naming its pod; it gets
/// exactly the routes and Service protocols of the Services it serves, and the CA gives its identity to its node only.
/// </summary>
public sealed class WaypointXdsTests : IDisposable
{
    private static readonly ImmutableSortedDictionary<string, string> NoLabels = ImmutableSortedDictionary<string, string>.Empty;
    private static readonly SourceLocation Source = new("mesh.yaml", 1);
    private readonly TempDir _state = new();
    private readonly ListLogger _logs = new(LogLevel.Information);
    private readonly NodeTokens _tokens;

    public WaypointXdsTests()
    {
        _tokens = new NodeTokens(_state.Path);
    }

    public void Dispose() => _state.Dispose();

    // shop and bank each use their own waypoint for their Services; the waypoints run on node-a and node-b.
    private static Resource[] Mesh(params Resource[] routes) =>
    [
        Namespace("shop", ("istio.io/use-waypoint", "waypoint")),
        Namespace("bank", ("istio.io/use-waypoint", "waypoint")),
        Waypoint("shop", node: "node-a"),
        Waypoint("bank", node: "node-b"),
        Service("shop", "echo", new ServicePortSpec("http", 80, TargetPort.FromNumber(8080), null, "TCP")),
        Service("shop", "plain", new ServicePortSpec(null, 80, TargetPort.FromNumber(8080), null, "TCP")) with
        {
            Metadata = new ObjectMeta("plain", "shop", NoLabels.Add("istio.io/use-waypoint", "none"), NoLabels),
        },
        Service("bank", "ledger", new ServicePortSpec("grpc", 9090, TargetPort.FromNumber(9090), null, "TCP")),
        Pod("shop", "echo-0", "node-a"),
        Pod("bank", "ledger-0", "node-b"),
        .. routes,
    ];

    private async Task<MeshController> StartAsync(InMemoryConfigSource source)
    {
        await source.StartAsync(CancellationToken.None);
        return new MeshController(source, new MeshOptions(), _tokens, NullLogger());
    }

    private ILogger<MeshController> NullLogger() => new ListLogger<MeshController>();

    private static string NodeIdOf(MeshSnapshot snapshot, string ns)
    {
        var w = snapshot.Waypoints.Single(w => w.Namespace == ns);
        return $"waypoint~{w.Address}~{w.PodName}.{ns}~{ns}.svc.cluster.local";
    }

    [Fact]
    public async Task A_waypoint_receives_exactly_its_routes_and_protocols_and_a_removal_when_a_parent_ref_moves()
    {
        var source = new InMemoryConfigSource(Mesh(
            Route("shop", "to-echo", [ServiceParent("echo")], Backend("echo", 80)),
            Route("bank", "to-ledger", [ServiceParent("ledger")], Backend("ledger", 9090))));
        using var controller = await StartAsync(source);
        await using var stream = new Stream(controller.Discovery, "node-a", _logs);

        stream.Send(new DeltaDiscoveryRequest { Node = new Node { Id = NodeIdOf(controller.Snapshot, "shop") }, TypeUrl = XdsTypeUrls.HttpRoute });
        var routes = await stream.NextAsync();
        Assert.Equal(XdsTypeUrls.HttpRoute, routes.TypeUrl);
        var route = Assert.Single(routes.Resources);
        Assert.Equal("shop/to-echo", route.Name);
        Assert.Equal("echo", route.Resource_.Unpack<HTTPRoute>().ParentRefs[0].Name);

        stream.Send(new DeltaDiscoveryRequest { TypeUrl = XdsTypeUrls.ServiceProtocols });
        var protocols = await stream.NextAsync();
        var served = Assert.Single(protocols.Resources);
        Assert.Equal("shop/echo.shop.svc.cluster.local", served.Name);
        var ports = served.Resource_.Unpack<ServiceProtocols>().Ports;
        Assert.Equal((80u, PortAppProtocol.Http), (ports[0].ServicePort, ports[0].Protocol));

        // The route now names a Service without a waypoint: the waypoint is told to drop it, and nothing else changes.
        source.Publish(Mesh(
            Route("shop", "to-echo", [ServiceParent("plain")], Backend("echo", 80)),
            Route("bank", "to-ledger", [ServiceParent("ledger")], Backend("ledger", 9090))));
        var removal = await stream.NextAsync();
        Assert.Equal(XdsTypeUrls.HttpRoute, removal.TypeUrl);
        Assert.Empty(removal.Resources);
        Assert.Equal(["shop/to-echo"], removal.RemovedResources);
        Assert.Contains(_logs.Entries, e => e.Message.Contains("is waypoint shop/waypoint", StringComparison.Ordinal));
    }

    // GEP-1294 consumer route: an HTTPRoute in bank for shop's echo. The waypoint serving echo (shop's) gets it, bank's
    // own waypoint does not, and its status is Accepted on the Service parent.
    [Fact]
    public async Task A_consumer_route_goes_to_the_waypoint_of_its_parent_service_and_is_accepted()
    {
        var source = new InMemoryConfigSource(Mesh(
            Route("bank", "consumer", [ServiceParent("echo", ns: "shop")], Backend("echo", 80, "shop"))));
        using var controller = await StartAsync(source);
        await using var shop = new Stream(controller.Discovery, "node-a", _logs);
        await using var bank = new Stream(controller.Discovery, "node-b", _logs);

        shop.Send(new DeltaDiscoveryRequest { Node = new Node { Id = NodeIdOf(controller.Snapshot, "shop") }, TypeUrl = XdsTypeUrls.HttpRoute });
        var route = Assert.Single((await shop.NextAsync()).Resources);
        Assert.Equal("bank/consumer", route.Name);
        var sent = route.Resource_.Unpack<HTTPRoute>();
        Assert.Equal(("bank", "shop", "echo"), (sent.Namespace, sent.ParentRefs[0].Namespace, sent.ParentRefs[0].Name));

        bank.Send(new DeltaDiscoveryRequest { Node = new Node { Id = NodeIdOf(controller.Snapshot, "bank") }, TypeUrl = XdsTypeUrls.HttpRoute });
        Assert.Empty((await bank.NextAsync()).Resources);

        var status = controller.Snapshot.Routing.Routes.Single(r => (r.Namespace, r.Name) == ("bank", "consumer"));
        var conditions = Assert.Single(status.Parents).Conditions;
        Assert.Contains(conditions, c => c is { Type: "Accepted", Status: true, Reason: "Accepted" });
        Assert.Contains(conditions, c => c is { Type: "ResolvedRefs", Status: true });
    }

    [Fact]
    public async Task A_ztunnel_gets_the_waypoint_types_empty()
    {
        using var controller = await StartAsync(new InMemoryConfigSource(Mesh(Route("shop", "to-echo", [ServiceParent("echo")], Backend("echo", 80)))));
        await using var stream = new Stream(controller.Discovery, "node-a", _logs);

        stream.Send(new DeltaDiscoveryRequest { Node = new Node { Id = "ztunnel~127.0.1.1~ztunnel.istio-system~istio-system.svc.cluster.local" }, TypeUrl = XdsTypeUrls.HttpRoute });

        var response = await stream.NextAsync();
        Assert.Empty(response.Resources);
        Assert.Empty(response.RemovedResources);
    }

    private static Resource Policy(string ns, string name, string spec)
    {
        var result = Ambient.Config.Yaml.ManifestParser.Parse("/cfg/p.yaml",
            $"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n");
        Assert.Empty(result.Errors);
        return Assert.Single(result.Resources);
    }

    [Fact]
    public async Task A_waypoint_receives_the_policies_targeting_its_gateway_or_its_services_and_ztunnel_never_does()
    {
        Resource[] policies =
        [
            Policy("shop", "on-gateway", "{targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}], action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}"),
            Policy("shop", "on-echo", "{targetRef: {kind: Service, name: echo}, rules: [{to: [{operation: {paths: [\"/public*\"]}}]}]}"),
            // plain opts out of the waypoint: nobody enforces this one.
            Policy("shop", "on-plain", "{targetRef: {kind: Service, name: plain}, action: DENY, rules: [{}]}"),
            Policy("shop", "selector", "{selector: {matchLabels: {app: echo}}, action: DENY, rules: [{from: [{source: {namespaces: [bad]}}]}]}"),
            Policy("bank", "on-ledger", "{targetRef: {kind: Service, name: ledger}, action: DENY, rules: [{}]}"),
        ];
        var source = new InMemoryConfigSource(Mesh(policies));
        using var controller = await StartAsync(source);
        await using var stream = new Stream(controller.Discovery, "node-a", _logs);

        stream.Send(new DeltaDiscoveryRequest { Node = new Node { Id = NodeIdOf(controller.Snapshot, "shop") }, TypeUrl = XdsTypeUrls.AuthorizationPolicy });
        var pushed = await stream.NextAsync();
        Assert.Equal(XdsTypeUrls.AuthorizationPolicy, pushed.TypeUrl);
        Assert.Equal(["shop/on-echo", "shop/on-gateway"], pushed.Resources.Select(r => r.Name).Order(StringComparer.Ordinal));
        var spec = pushed.Resources.Single(r => r.Name == "shop/on-gateway").Resource_.Unpack<Ambient.Core.Protos.AuthorizationPolicies.AuthorizationPolicySpec>();
        Assert.Equal(Ambient.Core.Protos.AuthorizationPolicies.PolicyAction.Deny, spec.Action);
        Assert.Equal("DELETE", spec.Rules[0].To[0].Methods[0]);

        // ztunnel gets the selector policy and none of those with targetRefs.
        var forZtunnel = controller.Discovery.Current.ResourcesFor(XdsTypeUrls.Authorization)!;
        Assert.Equal(["shop/selector"], forZtunnel.Resources.Select(r => r.Name));

        // Removing a policy removes it from the waypoint.
        source.Publish(Mesh([.. policies.Where(p => p.Metadata.Name != "on-echo")]));
        var removal = await stream.NextAsync();
        Assert.Equal(XdsTypeUrls.AuthorizationPolicy, removal.TypeUrl);
        Assert.Empty(removal.Resources);
        Assert.Equal(["shop/on-echo"], removal.RemovedResources);
    }

    [Fact]
    public async Task A_ztunnel_gets_the_waypoint_policy_type_empty()
    {
        using var controller = await StartAsync(new InMemoryConfigSource(Mesh(
            Policy("shop", "on-gateway", "{targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}], action: DENY, rules: [{}]}"))));
        await using var stream = new Stream(controller.Discovery, "node-a", _logs);

        stream.Send(new DeltaDiscoveryRequest { Node = new Node { Id = "ztunnel~127.0.1.1~ztunnel.istio-system~istio-system.svc.cluster.local" }, TypeUrl = XdsTypeUrls.AuthorizationPolicy });

        var response = await stream.NextAsync();
        Assert.Empty(response.Resources);
    }

    [Fact]
    public async Task Another_nodes_token_cannot_subscribe_as_the_waypoint()
    {
        using var controller = await StartAsync(new InMemoryConfigSource(Mesh()));
        await using var stream = new Stream(controller.Discovery, "node-b", _logs);

        stream.Send(new DeltaDiscoveryRequest { Node = new Node { Id = NodeIdOf(controller.Snapshot, "shop") }, TypeUrl = XdsTypeUrls.HttpRoute });

        var error = await Assert.ThrowsAsync<RpcException>(() => stream.Completion.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
        Assert.Contains("runs on node 'node-a'", error.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_ca_issues_the_waypoint_identity_to_its_node_only()
    {
        using var controller = await StartAsync(new InMemoryConfigSource(Mesh()));
        using var root = CaStore.LoadOrCreate(_state.Path);
        var ca = new CertificateService(new CertificateAuthority(root), _tokens, controller, new ListLogger<CertificateService>());
        const string identity = "spiffe://cluster.local/ns/shop/sa/waypoint";
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(identity));
        var request = new IstioCertificateRequest { Csr = csr.CsrPem, Metadata = new Struct() };
        request.Metadata.Fields[CertificateService.ImpersonatedIdentityField] = Value.ForString(identity);

        var issued = ca.CreateCertificate(request, "Bearer " + _tokens.GetOrCreate("node-a"));
        using var leaf = csr.CombineWithLeaf(issued.CertChain[0]);
        Assert.True(root.CreateTrustBundle().ValidateChain(leaf, null, out var id, out var error), error);
        Assert.Equal(identity, id.ToString());

        Assert.Throws<CaRequestException>(() => ca.CreateCertificate(request, "Bearer " + _tokens.GetOrCreate("node-b")));
    }

    private static NamespaceResource Namespace(string name, params (string Key, string Value)[] labels)
    {
        var map = NoLabels.Add("istio.io/dataplane-mode", "ambient");
        foreach (var (k, v) in labels)
        {
            map = map.SetItem(k, v);
        }
        return new NamespaceResource("v1", new ObjectMeta(name, "", map, NoLabels), Source);
    }

    private static ServiceResource Service(string ns, string name, ServicePortSpec port) =>
        new("v1", new ObjectMeta(name, ns, NoLabels, NoLabels), Source, "ClusterIP", null, NoLabels.Add("app", name), [port]);

    private static PodResource Pod(string ns, string name, string node) =>
        new("v1", new ObjectMeta(name, ns, NoLabels.Add("app", name[..name.LastIndexOf('-')]), NoLabels), Source, "default", node,
            [new ContainerSpec("app", "app:1", [], [], [], NoLabels)], null);

    /// <summary>One delta ADS stream served in process: requests in, responses out, as the gRPC service runs it.</summary>
    private sealed class Stream : IAsyncStreamWriter<DeltaDiscoveryResponse>, IAsyncDisposable
    {
        private readonly Channel<DeltaDiscoveryRequest> _requests = Channel.CreateUnbounded<DeltaDiscoveryRequest>();
        private readonly Channel<DeltaDiscoveryResponse> _responses = Channel.CreateUnbounded<DeltaDiscoveryResponse>();
        private readonly CancellationTokenSource _stop = new();

        public Stream(DiscoveryState state, string node, ILogger logger)
        {
            var session = new DeltaXdsSession(state, logger, node, "test");
            Completion = session.RunAsync(_requests.Reader.ReadAllAsync(), this, _stop.Token);
        }

        public Task Completion { get; }

        public WriteOptions? WriteOptions { get; set; }

        public void Send(DeltaDiscoveryRequest request) => _requests.Writer.TryWrite(request);

        public async Task<DeltaDiscoveryResponse> NextAsync() => await _responses.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

        public Task WriteAsync(DeltaDiscoveryResponse message) => _responses.Writer.WriteAsync(message).AsTask();

        public Task WriteAsync(DeltaDiscoveryResponse message, CancellationToken cancellationToken) => _responses.Writer.WriteAsync(message, cancellationToken).AsTask();

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            try
            {
                await Completion;
            }
            catch (Exception e) when (e is OperationCanceledException or RpcException)
            {
                // Stopped by the test, or the failure the test already asserted.
            }
            _stop.Dispose();
        }
    }
}
