using System.Collections.Immutable;
using Ambient.Core.Config;
using Ambient.Hbone.Telemetry;

namespace Ambient.Config.Yaml;

// Gateway (gateway.networking.k8s.io/v1): the class and listeners, validated as the CRD validates them. Other
// fields (addresses, infrastructure, listener hostname/tls/allowedRoutes) do not concern a waypoint and are ignored.
internal static partial class ManifestParser
{
    private const int MaxListeners = 64;

    private static GatewayResource? ReadGateway(
        DocumentContext ctx, YamlMapping root, string prefix, string apiVersion, ObjectMeta metadata, SourceLocation source)
    {
        var specPath = DocumentContext.Field(prefix, "spec");
        var spec = ctx.Map(root.Get("spec"), specPath, root.Line, required: true);
        if (spec is null) return null;

        var className = ctx.Str(spec, "gatewayClassName", specPath, required: true, check: Validation.ObjectName);
        var listenersPath = DocumentContext.Field(specPath, "listeners");
        var seq = ctx.Seq(spec.Get("listeners"), listenersPath, spec.Line, required: true);
        var listeners = ImmutableArray.CreateBuilder<GatewayListener>();
        if (seq is not null && WithinMaxItems(ctx, seq, listenersPath, MaxListeners))
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            var endpoints = new HashSet<(long, string, string)>();
            for (int i = 0; i < seq.Items.Count; i++)
            {
                var path = DocumentContext.Index(listenersPath, i);
                var l = ctx.Map(seq.Items[i], path, seq.Line, required: true);
                if (l is null) continue;
                var name = ctx.Str(l, "name", path, required: true, check: Validation.SectionName);
                var port = ctx.IntInRange(l, "port", path, 1, 65535, required: true);
                var protocol = ctx.Str(l, "protocol", path, required: true, check: Validation.ProtocolType);
                // Only checked (a waypoint listens on every name); the CEL rule below needs it.
                var hostname = ctx.Str(l, "hostname", path, check: Validation.GatewayHostname) ?? "";
                if (name is not null && !names.Add(name))
                {
                    // listType=map with listMapKey=name: the API server refuses two listeners of one name.
                    ctx.Error(l.Get("name")!.Line, DocumentContext.Field(path, "name"), $"Duplicate value: \"{LogText.Clip(name)}\"");
                    continue;
                }
                if (port is { } listenerPort && protocol is not null && !endpoints.Add((listenerPort, protocol, hostname)))
                {
                    ctx.Error(l.Line, listenersPath, "Invalid value: Combination of port, protocol and hostname must be unique for each listener");
                    continue;
                }
                if (name is not null && port is { } p && protocol is not null) listeners.Add(new GatewayListener(name, (int)p, protocol));
            }
        }
        return className is null ? null : new GatewayResource(apiVersion, metadata, source, className, listeners.ToImmutable());
    }

    /// <summary>False (and an error) when a list has more than <paramref name="max"/> items (an OpenAPI MaxItems).</summary>
    private static bool WithinMaxItems(DocumentContext ctx, YamlSequence seq, string path, int max)
    {
        if (seq.Items.Count <= max) return true;
        ctx.Error(seq.Line, path, $"Too many: {seq.Items.Count}: must have at most {max} items");
        return false;
    }
}
