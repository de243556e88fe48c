using Ambient.Core.Config;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Hbone.Telemetry;

namespace Ambient.Config.Yaml;

// PeerAuthentication (security.istio.io/v1 and v1beta1), checked as Istio's validation webhook
// (pkg/config/validation ValidatePeerAuthentication, validateWorkloadSelector) and the CRD's schema check it. Like an
// AuthorizationPolicy it is a security boundary: any error rejects it whole, and an unknown field is an error (a
// misspelt `mtls.mode` silently read as UNSET would turn STRICT into PERMISSIVE).
internal static partial class ManifestParser
{
    private static readonly string[] PeerAuthenticationFields = ["selector", "mtls", "portLevelMtls"];
    private static readonly string[] MutualTlsFields = ["mode"];

    private static PeerAuthenticationResource? ReadPeerAuthentication(
        DocumentContext ctx, YamlMapping root, string prefix, string apiVersion, ObjectMeta metadata, SourceLocation source)
    {
        var errorsBefore = ctx.Errors.Count;
        var policy = new PeerAuthenticationSpec { Namespace = metadata.Namespace, Name = metadata.Name };
        var specPath = DocumentContext.Field(prefix, "spec");
        // No spec: a namespace (or mesh) policy with mode UNSET, which changes nothing but is valid.
        var spec = ctx.Map(root.Get("spec"), specPath, root.Line);
        if (spec is null)
        {
            return ctx.Errors.Count == errorsBefore ? new PeerAuthenticationResource(apiVersion, metadata, source, policy) : null;
        }
        RejectUnknownFields(ctx, spec, specPath, PeerAuthenticationFields);

        policy.HasSelector = ReadWorkloadSelector(ctx, spec, specPath, policy.MatchLabels);

        var mtlsPath = DocumentContext.Field(specPath, "mtls");
        if (ctx.Map(spec.Get("mtls"), mtlsPath, spec.Line) is { } mtls)
        {
            policy.Mode = ReadMutualTlsMode(ctx, mtls, mtlsPath);
        }

        var portsPath = DocumentContext.Field(specPath, "portLevelMtls");
        if (ctx.Map(spec.Get("portLevelMtls"), portsPath, spec.Line) is { } ports)
        {
            // Istio: "mesh/namespace peer authentication cannot have port level mTLS" (no selector, or one without
            // labels), and "port level mTLS, if defined, must have at least one element".
            // Reported on the `portLevelMtls:` line (a block map starts on the line of its first entry).
            var keyLine = KeyLine(spec, "portLevelMtls");
            if (policy.MatchLabels.Count == 0)
            {
                ctx.Error(keyLine, portsPath, "Invalid value: mesh/namespace peer authentication cannot have port level mTLS (portLevelMtls requires a selector with matchLabels)");
            }
            if (ports.Entries.Count == 0)
            {
                ctx.Error(keyLine, portsPath, "Invalid value: port level mTLS, if defined, must have at least one element");
            }
            foreach (var (key, value) in ports.Entries)
            {
                var portPath = DocumentContext.Key(portsPath, key.Value);
                if (PolicyPort(key.Value) is not null)
                {
                    ctx.Error(key.Line, portPath, $"Invalid value: \"{LogText.Clip(key.Value)}\": portLevelMtls keys are ports, and a port must be in range 1..65535");
                    continue;
                }
                var port = uint.Parse(key.Value, System.Globalization.CultureInfo.InvariantCulture);
                if (policy.PortLevelMtls.ContainsKey(port))
                {
                    ctx.Error(key.Line, portPath, $"Duplicate value: port {port} is already set");
                    continue;
                }
                if (ctx.Map(value, portPath, key.Line, required: true) is { } portMtls)
                {
                    policy.PortLevelMtls[port] = ReadMutualTlsMode(ctx, portMtls, portPath);
                }
            }
        }
        return ctx.Errors.Count == errorsBefore ? new PeerAuthenticationResource(apiVersion, metadata, source, policy) : null;
    }

    private static int KeyLine(YamlMapping map, string key)
    {
        foreach (var (k, _) in map.Entries)
        {
            if (k.Value == key) return k.Line;
        }
        return map.Line;
    }

    private static MutualTlsMode ReadMutualTlsMode(DocumentContext ctx, YamlMapping mtls, string path)
    {
        RejectUnknownFields(ctx, mtls, path, MutualTlsFields);
        return ctx.Str(mtls, "mode", path, check: static v =>
            v is "UNSET" or "DISABLE" or "PERMISSIVE" or "STRICT" ? null : "supported values: \"UNSET\", \"DISABLE\", \"PERMISSIVE\", \"STRICT\"") switch
        {
            "DISABLE" => MutualTlsMode.Disable,
            "PERMISSIVE" => MutualTlsMode.Permissive,
            "STRICT" => MutualTlsMode.Strict,
            _ => MutualTlsMode.Unset,
        };
    }
}
