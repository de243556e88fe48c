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

        var from = ImmutableArray.CreateBuilder<ReferenceGrantFrom>();
        var fromPath = DocumentContext.Field(specPath, "from");
        var fromSeq = ctx.Seq(spec.Get("from"), fromPath, spec.Line, required: true);
        if (fromSeq is not null && WithinMaxItems(ctx, fromSeq, fromPath, MaxGrantEntries))
        {
            for (int i = 0; i < fromSeq.Items.Count; i++)
            {
                var path = DocumentContext.Index(fromPath, i);
                var f = ctx.Map(fromSeq.Items[i], path, fromSeq.Line, required: true);
                if (f is null) continue;
                var group = RequiredGroup(ctx, f, path);
                var kind = ctx.Str(f, "kind", path, required: true, check: Validation.GatewayKind);
                var ns = ctx.Str(f, "namespace", path, required: true, check: Validation.Dns1123Label);
                if (group is not null && kind is not null && ns is not null) from.Add(new ReferenceGrantFrom(group, kind, ns));
            }
        }

        var to = ImmutableArray.CreateBuilder<ReferenceGrantTo>();
        var toPath = DocumentContext.Field(specPath, "to");
        var toSeq = ctx.Seq(spec.Get("to"), toPath, spec.Line, required: true);
        if (toSeq is not null && WithinMaxItems(ctx, toSeq, toPath, MaxGrantEntries))
        {
            for (int i = 0; i < toSeq.Items.Count; i++)
            {
                var path = DocumentContext.Index(toPath, i);
                var t = ctx.Map(toSeq.Items[i], path, toSeq.Line, required: true);
                if (t is null) continue;
                var group = RequiredGroup(ctx, t, path);
                var kind = ctx.Str(t, "kind", path, required: true, check: Validation.GatewayKind);
                var name = ctx.Str(t, "name", path, check: Validation.ObjectName);
                if (group is not null && kind is not null) to.Add(new ReferenceGrantTo(group, kind, name));
            }
        }
        return ctx.Errors.Count == errorsBefore ? new ReferenceGrantResource(apiVersion, metadata, source, from.ToImmutable(), to.ToImmutable()) : null;
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
