using System.Text.Json;
using Google.Protobuf;

namespace Ambient.Istiod.Authz;

/// <summary>
/// The /debug/authorizationpolicies document: each policy with where it is enforced, its scope, dry-run flag, the
/// conversion warnings, and what ztunnel receives for it; then each PeerAuthentication with its level, modes, warnings
/// and its converted resource. What <c>ambientctl get authorizationpolicy</c> and <c>get peerauthentication</c> show.
/// </summary>
internal static class PolicyJson
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default);

    public static string Describe(PolicySet policies, string rootNamespace)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("rootNamespace", rootNamespace);
            json.WriteStartArray("policies");
            foreach (var p in policies.Policies)
            {
                var spec = p.Spec;
                json.WriteStartObject();
                json.WriteString("namespace", spec.Namespace);
                json.WriteString("name", spec.Name);
                json.WriteString("source", p.Resource.Source.ToString());
                json.WriteString("action", spec.Action.ToString().ToUpperInvariant());
                if (spec.Provider.Length > 0) json.WriteString("provider", spec.Provider);
                json.WriteString("enforcedBy", p.EnforcedBy switch
                {
                    PolicyEnforcement.Ztunnel => "ztunnel",
                    PolicyEnforcement.Waypoint => "waypoint",
                    _ => "none",
                });
                if (p.Xds is not null)
                {
                    json.WriteString("scope", p.Xds.Scope switch
                    {
                        Ambient.Core.Protos.Security.Scope.Global => "GLOBAL",
                        Ambient.Core.Protos.Security.Scope.Namespace => "NAMESPACE",
                        _ => "WORKLOAD_SELECTOR",
                    });
                }
                WriteSelector(json, spec.HasSelector, spec.MatchLabels);
                if (spec.TargetRefs.Count > 0)
                {
                    json.WriteStartArray("targetRefs");
                    foreach (var t in spec.TargetRefs)
                    {
                        json.WriteStartObject();
                        json.WriteString("group", t.Group);
                        json.WriteString("kind", t.Kind);
                        json.WriteString("name", t.Name);
                        json.WriteEndObject();
                    }
                    json.WriteEndArray();
                }
                json.WriteBoolean("dryRun", spec.DryRun);
                json.WriteNumber("rules", spec.Rules.Count);
                WriteWarnings(json, p.Warnings);
                if (p.Xds is not null)
                {
                    json.WritePropertyName("ztunnel");
                    json.WriteRawValue(Formatter.Format(p.Xds));
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            WritePeerAuthentications(json, policies, rootNamespace);
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>The matchLabels, sorted, when the policy has a selector (even an empty one).</summary>
    private static void WriteSelector(Utf8JsonWriter json, bool hasSelector, IDictionary<string, string> matchLabels)
    {
        if (!hasSelector) return;
        json.WriteStartObject("selector");
        foreach (var (k, v) in matchLabels.OrderBy(static e => e.Key, StringComparer.Ordinal))
        {
            json.WriteString(k, v);
        }
        json.WriteEndObject();
    }

    private static void WriteWarnings(Utf8JsonWriter json, IEnumerable<string> warnings)
    {
        json.WriteStartArray("warnings");
        foreach (var w in warnings)
        {
            json.WriteStringValue(w);
        }
        json.WriteEndArray();
    }

    private static void WritePeerAuthentications(Utf8JsonWriter json, PolicySet policies, string rootNamespace)
    {
        json.WriteStartArray("peerAuthentications");
        foreach (var p in policies.PeerAuthentications)
        {
            var spec = p.Spec;
            json.WriteStartObject();
            json.WriteString("namespace", spec.Namespace);
            json.WriteString("name", spec.Name);
            json.WriteString("source", p.Resource.Source.ToString());
            json.WriteString("level", p.Level.ToString().ToLowerInvariant());
            json.WriteString("mode", spec.Mode.ToString().ToUpperInvariant());
            WriteSelector(json, spec.HasSelector, spec.MatchLabels);
            if (spec.PortLevelMtls.Count > 0)
            {
                json.WriteStartObject("portLevelMtls");
                foreach (var (port, mode) in spec.PortLevelMtls.OrderBy(static e => e.Key))
                {
                    json.WriteString(port.ToString(System.Globalization.CultureInfo.InvariantCulture), mode.ToString().ToUpperInvariant());
                }
                json.WriteEndObject();
            }
            WriteWarnings(json, p.Warnings);
            // What ztunnel enforces for it: its own converted resource, else the static STRICT policy (STRICT) or nothing.
            json.WriteString("enforcedAs", p.Xds is not null
                ? p.Xds.Namespace + "/" + p.Xds.Name
                : spec.Mode == Ambient.Core.Protos.AuthorizationPolicies.MutualTlsMode.Strict && p.Level != PeerAuthenticationLevel.Ignored
                    ? PeerAuthenticationConverter.StaticStrictKey(rootNamespace)
                    : "none");
            if (p.Xds is not null)
            {
                json.WritePropertyName("ztunnel");
                json.WriteRawValue(Formatter.Format(p.Xds));
            }
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }
}
