using System.Collections.Immutable;
using System.Text.Json;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Istiod.Discovery;
using static Ambient.TestCommon.GatewayApiFixtures;

namespace Ambient.Istiod.Tests.Discovery;

/// <summary>/debug/waypoints: the waypoint list and the Gateway API status of waypoints and routes, as JSON.</summary>
public sealed class WaypointStatusJsonTests
{
    private static readonly ImmutableSortedDictionary<string, string> NoLabels = ImmutableSortedDictionary<string, string>.Empty;

    [Fact]
    public void Lists_waypoints_with_how_to_subscribe_and_the_status_of_gateways_and_routes()
    {
        var source = new SourceLocation("mesh.yaml", 1);
        var snapshot = MeshBuilder.Build([
            new NamespaceResource("v1", new ObjectMeta("shop", "", NoLabels.Add("istio.io/use-waypoint", "waypoint"), NoLabels), source),
            Waypoint("shop", node: "node-a"),
            new ServiceResource("v1", new ObjectMeta("echo", "shop", NoLabels, NoLabels), source, "ClusterIP", null, NoLabels.Add("app", "echo"),
                [new ServicePortSpec("http", 80, TargetPort.FromNumber(8080), null, "TCP")]),
            Route("shop", "r", [ServiceParent("echo"), ServiceParent("ghost")], Backend("missing", 80)),
        ]);

        using var doc = JsonDocument.Parse(WaypointStatusJson.Describe(snapshot, configGeneration: 7));
        var root = doc.RootElement;
        Assert.Equal(7, root.GetProperty("configGeneration").GetInt64());
        var waypoint = root.GetProperty("waypoints")[0];
        var info = snapshot.Waypoints[0];
        Assert.Equal("node-a", waypoint.GetProperty("node").GetString());
        Assert.Equal($"waypoint~{info.Address}~{info.PodName}.shop~shop.svc.cluster.local", waypoint.GetProperty("nodeId").GetString());
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/waypoint", waypoint.GetProperty("identity").GetString());
        Assert.Equal(["shop/r"], waypoint.GetProperty("routes").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["shop/echo.shop.svc.cluster.local"], waypoint.GetProperty("services").EnumerateArray().Select(e => e.GetString()));

        var gatewayConditions = root.GetProperty("gateways")[0].GetProperty("status").GetProperty("conditions");
        Assert.Equal(["Accepted=True", "Programmed=True"], gatewayConditions.EnumerateArray().Select(Condition));

        var parents = root.GetProperty("httpRoutes")[0].GetProperty("status").GetProperty("parents");
        Assert.Equal("istio.io/mesh-controller", parents[0].GetProperty("controllerName").GetString());
        Assert.Equal("echo", parents[0].GetProperty("parentRef").GetProperty("name").GetString());
        Assert.Equal(["Accepted=True", "ResolvedRefs=False/BackendNotFound"], parents[0].GetProperty("conditions").EnumerateArray().Select(Condition));
        Assert.Equal(["Accepted=False/NoMatchingParent", "ResolvedRefs=False/BackendNotFound"], parents[1].GetProperty("conditions").EnumerateArray().Select(Condition));
    }

    private static string Condition(JsonElement c)
    {
        var status = c.GetProperty("status").GetString();
        return c.GetProperty("type").GetString() + "=" + status + (status == "False" ? "/" + c.GetProperty("reason").GetString() : "");
    }
}
