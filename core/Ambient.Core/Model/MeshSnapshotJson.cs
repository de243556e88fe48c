using System.Text.Json;

namespace Ambient.Core.Model;

/// <summary>
/// The JSON view of a snapshot that the debug endpoints share (istiod-lite's /debug/workloads, ztunnel's
/// /config_dump), so tools read one shape from either.
/// </summary>
internal static class MeshSnapshotJson
{
    public static void WriteWorkloads(Utf8JsonWriter json, MeshSnapshot snapshot)
    {
        json.WriteStartArray("workloads");
        foreach (var w in snapshot.Workloads)
        {
            json.WriteStartObject();
            json.WriteString("uid", w.Uid);
            json.WriteString("name", w.Name);
            json.WriteString("namespace", w.Namespace);
            json.WriteString("node", w.Node);
            json.WriteString("serviceAccount", w.ServiceAccount);
            json.WriteString("identity", w.Identity);
            json.WriteString("protocol", w.IsInMesh ? "HBONE" : "NONE");
            json.WriteString("address", w.Addresses.Length > 0 ? w.Addresses[0].ToString() : "");
            json.WriteStartArray("addresses");
            foreach (var a in w.Addresses)
            {
                json.WriteStringValue(a.ToString());
            }
            json.WriteEndArray();
            if (w.Hostname.Length > 0)
            {
                json.WriteString("hostname", w.Hostname);
            }
            WriteGateway(json, "waypoint", w.Waypoint);
            WriteGateway(json, "networkGateway", w.NetworkGateway);
            if (w.AuthorizationPolicies.Length > 0)
            {
                // The selector policies and converted PeerAuthentications that apply by name (ztunnel's field).
                json.WriteStartArray("authorizationPolicies");
                foreach (var p in w.AuthorizationPolicies)
                {
                    json.WriteStringValue(p);
                }
                json.WriteEndArray();
            }
            if (w.Locality is { } l)
            {
                json.WriteStartObject("locality");
                json.WriteString("region", l.Region);
                json.WriteString("zone", l.Zone);
                json.WriteString("subzone", l.Subzone);
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }

    public static void WriteServices(Utf8JsonWriter json, MeshSnapshot snapshot)
    {
        json.WriteStartArray("services");
        foreach (var s in snapshot.Services)
        {
            json.WriteStartObject();
            json.WriteString("hostname", s.Hostname);
            json.WriteString("namespace", s.Namespace);
            json.WriteString("vip", s.Vips.Length > 0 ? s.Vips[0].ToString() : "");
            json.WriteStartArray("vips");
            foreach (var v in s.Vips)
            {
                json.WriteStringValue(v.ToString());
            }
            json.WriteEndArray();
            WriteGateway(json, "waypoint", s.Waypoint);
            if (s.LoadBalancing is { } lb)
            {
                json.WriteStartObject("loadBalancer");
                json.WriteStartArray("routingPreferences");
                foreach (var scope in lb.RoutingPreference)
                {
                    json.WriteStringValue(scope.ToString());
                }
                json.WriteEndArray();
                json.WriteString("mode", lb.Mode.ToString());
                json.WriteString("healthPolicy", lb.HealthPolicy.ToString());
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }

    private static void WriteGateway(Utf8JsonWriter json, string name, GatewayInfo? gateway)
    {
        if (gateway is null)
        {
            return;
        }
        json.WriteStartObject(name);
        json.WriteString("destination", gateway.Destination);
        json.WriteNumber("hboneMtlsPort", gateway.HboneMtlsPort);
        json.WriteEndObject();
    }
}
