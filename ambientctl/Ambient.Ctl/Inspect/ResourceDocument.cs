using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.Core.Config;
using Google.Protobuf;

namespace Ambient.Ctl.Inspect;

/// <summary>
/// A resource as kubectl's <c>-o json</c>/<c>-o yaml</c> shows it: apiVersion, kind, metadata, the spec the mesh read
/// (with defaults applied) and a status from the local mesh where it has one.
/// </summary>
internal static class ResourceDocument
{
    private static readonly JsonFormatter ProtoJson = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));

    // A policy's action is an enum whose default is ALLOW: left out, the spec would not say what the policy does.
    private static readonly JsonFormatter ProtoJsonWithDefaults = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    public static JsonObject Build(Resource r, MeshRuntime mesh)
    {
        var metadata = new JsonObject { ["name"] = r.Metadata.Name };
        if (r is not NamespaceResource) metadata["namespace"] = r.Metadata.Namespace;
        if (!r.Metadata.Labels.IsEmpty) metadata["labels"] = Map(r.Metadata.Labels);
        if (!r.Metadata.Annotations.IsEmpty) metadata["annotations"] = Map(r.Metadata.Annotations);
        var doc = new JsonObject { ["apiVersion"] = r.ApiVersion, ["kind"] = r.Kind, ["metadata"] = metadata };
        switch (r)
        {
            case PodResource pod:
                doc["spec"] = PodSpec(pod);
                var status = new JsonObject { ["phase"] = mesh.Phase(pod) };
                var run = mesh.Pod(pod.Metadata.Namespace, pod.Metadata.Name);
                if ((run?.Address ?? pod.PodIP ?? mesh.Addresses.PodAddress(pod.Metadata.Namespace, pod.Metadata.Name)?.ToString()) is { } ip) status["podIP"] = ip;
                if (run is not null) status["restartCount"] = run.Restarts;
                doc["status"] = status;
                break;
            case ServiceResource svc:
                var ports = new JsonArray();
                foreach (var p in svc.Ports)
                {
                    var port = new JsonObject();
                    if (p.Name is not null) port["name"] = p.Name;
                    port["port"] = p.Port;
                    port["targetPort"] = p.TargetPort.IsNamed ? JsonValue.Create(p.TargetPort.Name) : JsonValue.Create(p.TargetPort.Number);
                    port["protocol"] = p.Protocol;
                    if (p.AppProtocol is not null) port["appProtocol"] = p.AppProtocol;
                    ports.Add(port);
                }
                var spec = new JsonObject { ["type"] = svc.Type };
                if ((svc.ClusterIP ?? mesh.Addresses.ServiceVip(svc.Metadata.Namespace, svc.Metadata.Name)?.ToString()) is { } vip) spec["clusterIP"] = vip;
                if (!svc.Selector.IsEmpty) spec["selector"] = Map(svc.Selector);
                spec["ports"] = ports;
                doc["spec"] = spec;
                break;
            case GatewayResource gw:
                var listeners = new JsonArray();
                foreach (var l in gw.Listeners) listeners.Add(new JsonObject { ["name"] = l.Name, ["port"] = l.Port, ["protocol"] = l.Protocol });
                doc["spec"] = new JsonObject { ["gatewayClassName"] = gw.GatewayClassName, ["listeners"] = listeners };
                AddStatus(doc, mesh.Status.Status(gw));
                break;
            case HttpRouteResource route:
                doc["spec"] = JsonNode.Parse(ProtoJson.Format(route.Spec));
                AddStatus(doc, mesh.Status.Status(route));
                break;
            case AuthorizationPolicyResource policy:
                doc["spec"] = JsonNode.Parse(ProtoJsonWithDefaults.Format(policy.Spec));
                AddStatus(doc, mesh.Status.Status(policy));
                break;
            case PeerAuthenticationResource peer:
                doc["spec"] = PeerAuthenticationSpec(peer.Spec);
                AddStatus(doc, mesh.Status.Status(peer));
                break;
        }
        return doc;
    }

    /// <summary>One resource as itself, several as a kubectl List.</summary>
    public static JsonNode Wrap(List<JsonObject> items, bool single) =>
        single && items.Count == 1 ? items[0] : new JsonObject { ["apiVersion"] = "v1", ["items"] = new JsonArray([.. items]), ["kind"] = "List" };

    /// <summary>The spec in the API's own shape (selector, mtls.mode, portLevelMtls keyed by port), as written.</summary>
    private static JsonObject PeerAuthenticationSpec(Ambient.Core.Protos.AuthorizationPolicies.PeerAuthenticationSpec spec)
    {
        var doc = new JsonObject();
        if (spec.HasSelector)
        {
            var labels = new JsonObject();
            foreach (var (k, v) in spec.MatchLabels.OrderBy(static l => l.Key, StringComparer.Ordinal)) labels[k] = v;
            doc["selector"] = new JsonObject { ["matchLabels"] = labels };
        }
        doc["mtls"] = new JsonObject { ["mode"] = spec.Mode.ToString().ToUpperInvariant() };
        if (spec.PortLevelMtls.Count > 0)
        {
            var ports = new JsonObject();
            foreach (var (port, mode) in spec.PortLevelMtls.OrderBy(static p => p.Key))
            {
                ports[port.ToString(CultureInfo.InvariantCulture)] = new JsonObject { ["mode"] = mode.ToString().ToUpperInvariant() };
            }
            doc["portLevelMtls"] = ports;
        }
        return doc;
    }

    private static JsonObject PodSpec(PodResource pod)
    {
        var containers = new JsonArray();
        foreach (var c in pod.Containers)
        {
            var container = new JsonObject { ["name"] = c.Name };
            if (c.Image is not null) container["image"] = c.Image;
            if (!c.Command.IsEmpty) container["command"] = new JsonArray([.. c.Command.Select(a => (JsonNode)a!)]);
            if (!c.Args.IsEmpty) container["args"] = new JsonArray([.. c.Args.Select(a => (JsonNode)a!)]);
            if (!c.Ports.IsEmpty)
            {
                container["ports"] = new JsonArray([.. c.Ports.Select(p => (JsonNode)new JsonObject
                {
                    ["name"] = p.Name, ["containerPort"] = p.Port, ["protocol"] = p.Protocol,
                })]);
            }
            if (!c.Env.IsEmpty) container["env"] = new JsonArray([.. c.Env.Select(e => (JsonNode)new JsonObject { ["name"] = e.Key, ["value"] = e.Value })]);
            containers.Add(container);
        }
        var spec = new JsonObject { ["serviceAccountName"] = pod.ServiceAccountName };
        if (pod.NodeName is not null) spec["nodeName"] = pod.NodeName;
        spec["containers"] = containers;
        return spec;
    }

    private static void AddStatus(JsonObject doc, JsonObject? status)
    {
        if (status is not null) doc["status"] = status.DeepClone();
    }

    private static JsonObject Map(IEnumerable<KeyValuePair<string, string>> pairs)
    {
        var o = new JsonObject();
        foreach (var (k, v) in pairs) o[k] = v;
        return o;
    }

    public static string ToJson(JsonNode node) => node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

    /// <summary>
    /// The same tree as block YAML: maps and lists indented by two, strings plain when YAML would read them back as
    /// the same string, double-quoted (JSON escapes, which YAML accepts) otherwise.
    /// </summary>
    public static string ToYaml(JsonNode node)
    {
        var sb = new StringBuilder();
        WriteYaml(sb, node, 0, inList: false);
        return sb.ToString();
    }

    private static void WriteYaml(StringBuilder sb, JsonNode? node, int indent, bool inList)
    {
        switch (node)
        {
            case JsonObject o:
                var first = true;
                foreach (var (key, value) in o)
                {
                    if (!(first && inList)) sb.Append(' ', indent);
                    first = false;
                    sb.Append(Scalar(key)).Append(':');
                    WriteChild(sb, value, indent);
                }
                if (o.Count == 0) sb.Append(inList ? "{}\n" : "");
                break;
            case JsonArray a:
                foreach (var item in a)
                {
                    sb.Append(' ', indent).Append("- ");
                    if (item is JsonObject { Count: > 0 }) WriteYaml(sb, item, indent + 2, inList: true);
                    else if (item is JsonArray { Count: > 0 }) { sb.Append('\n'); WriteYaml(sb, item, indent + 2, inList: false); }
                    else sb.Append(ScalarNode(item)).Append('\n');
                }
                break;
            default:
                sb.Append(ScalarNode(node)).Append('\n');
                break;
        }
    }

    private static void WriteChild(StringBuilder sb, JsonNode? value, int indent)
    {
        switch (value)
        {
            case JsonObject { Count: > 0 }:
                sb.Append('\n');
                WriteYaml(sb, value, indent + 2, inList: false);
                break;
            case JsonArray { Count: > 0 }:
                sb.Append('\n');
                WriteYaml(sb, value, indent, inList: false); // kubectl's style: list items at the key's indent
                break;
            default:
                sb.Append(' ').Append(ScalarNode(value)).Append('\n');
                break;
        }
    }

    private static string ScalarNode(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "{}",
        JsonArray => "[]",
        JsonValue v when v.TryGetValue<string>(out var s) => Scalar(s),
        JsonValue v when v.TryGetValue<bool>(out var b) => b ? "true" : "false",
        _ => node.ToJsonString(),
    };

    private static readonly string[] Reserved = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"];

    internal static string Scalar(string s)
    {
        var plain = s.Length > 0
            && !char.IsWhiteSpace(s[0]) && !char.IsWhiteSpace(s[^1])
            && "-?:,[]{}#&*!|>'\"%@`".IndexOf(s[0], StringComparison.Ordinal) < 0
            && !s.Contains(": ", StringComparison.Ordinal) && !s.Contains(" #", StringComparison.Ordinal) && !s.EndsWith(':')
            && !s.Any(char.IsControl)
            && !Array.Exists(Reserved, r => r.Equals(s, StringComparison.OrdinalIgnoreCase))
            && !double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _)
            && !s.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        return plain ? s : JsonSerializer.Serialize(s);
    }
}
