using System.Collections.Immutable;
using Ambient.Core.Config;

namespace Ambient.Config.Yaml;

// ReferenceGrant (gateway.networking.k8s.io/v1beta1 and v1, identical schemas): the OpenAPI rules of
// apis/v1beta1/referencegrant_types.go. Any well-formed group and kind is accepted, as the API server accepts them;
// which pairs the mesh acts on (HTTPRoute -> Service) is the route binder's business.
internal static partial class ManifestParser
{
    private const int MaxGrantEntries = 16;

    private static ReferenceGrantResource? ReadReferenceGrant(
        DocumentContext ctx, YamlMapping root, string prefix, string apiVersion, ObjectMeta metadata, SourceLocation source)
    {
        var errorsBefore = ctx.Errors.Count;
        var specPath = DocumentContext.Field(prefix, "spec");
        var spec = ctx.Map(root.Get("spec"), specPath, root.Line, required: true);
        if (spec is null) return null;

        var from = ReadGrantEntries(ctx, spec, specPath, "from", static (doc, f, path) =>
        {
            var group = RequiredGroup(doc, f, path);
            var kind = doc.Str(f, "kind", path, required: true, check: Validation.GatewayKind);
            var ns = doc.Str(f, "namespace", path, required: true, check: Validation.Dns1123Label);
            return group is not null && kind is not null && ns is not null ? new ReferenceGrantFrom(group, kind, ns) : null;
        });
        var to = ReadGrantEntries(ctx, spec, specPath, "to", static (doc, t, path) =>
        {
            var group = RequiredGroup(doc, t, path);
            var kind = doc.Str(t, "kind", path, required: true, check: Validation.GatewayKind);
            var name = doc.Str(t, "name", path, check: Validation.ObjectName);
            return group is not null && kind is not null ? new ReferenceGrantTo(group, kind, name) : null;
        });
        return ctx.Errors.Count == errorsBefore ? new ReferenceGrantResource(apiVersion, metadata, source, from, to) : null;
    }

    /// <summary><c>spec.from</c> or <c>spec.to</c>: required, 1 to 16 maps, each read by <paramref name="read"/>.</summary>
    private static ImmutableArray<T> ReadGrantEntries<T>(DocumentContext ctx, YamlMapping spec, string specPath, string key,
        Func<DocumentContext, YamlMapping, string, T?> read) where T : class
    {
        var entries = ImmutableArray.CreateBuilder<T>();
        var listPath = DocumentContext.Field(specPath, key);
        var seq = ctx.Seq(spec.Get(key), listPath, spec.Line, required: true);
        if (seq is null || !WithinMaxItems(ctx, seq, listPath, MaxGrantEntries)) return entries.ToImmutable();
        for (int i = 0; i < seq.Items.Count; i++)
        {
            var path = DocumentContext.Index(listPath, i);
            if (ctx.Map(seq.Items[i], path, seq.Line, required: true) is { } entry && read(ctx, entry, path) is { } value) entries.Add(value);
        }
        return entries.ToImmutable();
    }

    /// <summary><c>group</c> is required but may be empty (the core group): absent is an error, <c>""</c> is not.</summary>
    private static string? RequiredGroup(DocumentContext ctx, YamlMapping entry, string path)
    {
        if (entry.Get("group") is null or YamlScalar { Kind: ScalarKind.Null })
        {
            ctx.Error(entry.Line, DocumentContext.Field(path, "group"), "Required value: use \"\" for the core group (Service)");
            return null;
        }
        return ctx.StrOrEmpty(entry, "group", path, Validation.GatewayGroup);
    }
}
