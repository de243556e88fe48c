using System.Text.Json;
using Ambient.Core.Model;

namespace Ambient.Istiod.Discovery;

/// <summary>
/// istiod-lite's <c>/debug/waypoints</c>: every waypoint (where it runs, what it takes, what it is sent) and the
/// Gateway API status of waypoint Gateways and HTTPRoutes, shaped like the objects' <c>status</c> so a client can
/// print it as kubectl would.
/// </summary>
internal static class WaypointStatusJson
{
    public static string Describe(MeshSnapshot snapshot, long configGeneration)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            Write(json, snapshot, configGeneration);
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    public static void Write(Utf8JsonWriter json, MeshSnapshot snapshot, long configGeneration)
    {
        var routing = snapshot.Routing;
        json.WriteStartObject();
        json.WriteNumber("configGeneration", configGeneration);
        json.WriteStartArray("waypoints");
        foreach (var w in snapshot.Waypoints)
        {
            var sent = routing.For(w.Key);
            json.WriteStartObject();
            json.WriteString("namespace", w.Namespace);
            json.WriteString("name", w.Name);
            json.WriteString("trafficType", w.TrafficType);
            json.WriteString("pod", w.PodName);
            json.WriteString("node", w.Node);
            json.WriteString("address", w.Address?.ToString() ?? "");
            json.WriteString("service", w.Service.Hostname);
            json.WriteString("identity", WorkloadInfo.SpiffeUri(snapshot.Options.TrustDomain, w.Namespace, w.Name));
            json.WriteString("nodeId", new XdsNodeId(XdsNodeId.WaypointType, w.Address?.ToString() ?? "", w.PodName, w.Namespace).ToString());
            json.WriteStartArray("routes");
            foreach (var r in sent.Routes)
            {
                json.WriteStringValue(r.Namespace + "/" + r.Name);
            }
            json.WriteEndArray();
            json.WriteStartArray("services");
            foreach (var p in sent.Protocols)
            {
                json.WriteStringValue(p.Namespace + "/" + p.Hostname);
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();

        json.WriteStartArray("gateways");
        foreach (var g in routing.Gateways)
        {
            StartWithStatus(json, g.Namespace, g.Name);
            WriteConditions(json, g.Conditions);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        json.WriteEndArray();

        json.WriteStartArray("httpRoutes");
        foreach (var r in routing.Routes)
        {
            StartWithStatus(json, r.Namespace, r.Name);
            json.WriteStartArray("parents");
            foreach (var p in r.Parents)
            {
                json.WriteStartObject();
                json.WriteStartObject("parentRef");
                json.WriteString("group", p.ParentRef.Group);
                json.WriteString("kind", p.ParentRef.Kind);
                json.WriteString("namespace", p.ParentRef.Namespace.Length > 0 ? p.ParentRef.Namespace : r.Namespace);
                json.WriteString("name", p.ParentRef.Name);
                if (p.ParentRef.Port != 0)
                {
                    json.WriteNumber("port", p.ParentRef.Port);
                }
                if (p.ParentRef.SectionName.Length > 0)
                {
                    json.WriteString("sectionName", p.ParentRef.SectionName);
                }
                json.WriteEndObject();
                json.WriteString("controllerName", ControllerName);
                WriteConditions(json, p.Conditions);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>Istio's controller name for waypoints (GatewayClass istio-waypoint).</summary>
    public const string ControllerName = "istio.io/mesh-controller";

    /// <summary>Opens an object <c>{namespace, name, status: {</c>, as kubectl shows a resource's status.</summary>
    private static void StartWithStatus(Utf8JsonWriter json, string @namespace, string name)
    {
        json.WriteStartObject();
        json.WriteString("namespace", @namespace);
        json.WriteString("name", name);
        json.WriteStartObject("status");
    }

    private static void WriteConditions(Utf8JsonWriter json, IEnumerable<StatusCondition> conditions)
    {
        json.WriteStartArray("conditions");
        foreach (var c in conditions)
        {
            json.WriteStartObject();
            json.WriteString("type", c.Type);
            json.WriteString("status", c.Status ? "True" : "False");
            json.WriteString("reason", c.Reason);
            json.WriteString("message", c.Message);
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }
}
