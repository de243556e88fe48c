using Ambient.Hbone.Telemetry;
using System.Collections.Immutable;
using YamlDotNet.Core;
using Ambient.Core.Telemetry;
using Ambient.Core.Config;

namespace Ambient.Config.Yaml;

/// <summary>The resources one file produced and the errors found in it.</summary>
internal sealed record ParseResult(ImmutableArray<Resource> Resources, ImmutableArray<ConfigError> Errors)
{
    public bool IsClean => Errors.IsEmpty;
}

/// <summary>
/// Turns one multi-document YAML file into typed resources. A document with any error yields no resource
/// (and all of its errors); the other documents of the file are unaffected. A YAML syntax error ends the
/// file: the parser cannot find the next document reliably, so documents after it are rejected while
/// documents before it stand.
/// </summary>
internal static partial class ManifestParser
{
    // Kinds whose objects live outside namespaces. Only matters for the Key of kinds we do not model yet.
    private static readonly ImmutableHashSet<string> ClusterScopedKinds = ImmutableHashSet.Create(
        StringComparer.Ordinal,
        "Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
        "CustomResourceDefinition", "GatewayClass", "PriorityClass", "IngressClass", "RuntimeClass",
        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService", "CSIDriver");

    public static ParseResult Parse(string filePath, string text)
    {
        ArgumentNullException.ThrowIfNull(filePath);
        ArgumentNullException.ThrowIfNull(text);
        var resources = ImmutableArray.CreateBuilder<Resource>();
        var errors = ImmutableArray.CreateBuilder<ConfigError>();
        var reader = new YamlDocumentReader(text);
        while (true)
        {
            YamlDocumentTree? doc;
            try
            {
                doc = reader.Next();
            }
            catch (YamlException ex)
            {
                errors.Add(new ConfigError(
                    new SourceLocation(filePath, (int)Math.Clamp(ex.Start.Line, 1, int.MaxValue)),
                    "",
                    "YAML syntax error: " + LogText.Clip(SyntaxMessage(ex), 200) + "; this document and the rest of the file are ignored"));
                break;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // YamlDotNet should only throw YamlException; anything else is still the input's fault.
                errors.Add(new ConfigError(new SourceLocation(filePath, 1), "", "unreadable YAML: " + LogText.Clip(ex.Message, 200)));
                break;
            }
            if (doc is null) break;

            var ctx = new DocumentContext(filePath);
            foreach (var issue in doc.Issues) ctx.Error(issue.Line, issue.Path, issue.Message);
            // Only resources without errors of their own end up in produced (a List keeps its good items);
            // a tree-level issue (duplicate key, ...) rejects the whole document.
            var produced = new List<Resource>();
            if (doc.Root is not null) ReadTopLevel(ctx, doc.Root, produced);
            if (doc.Issues.Count == 0) resources.AddRange(produced);
            errors.AddRange(ctx.Errors);
        }
        return new ParseResult(resources.ToImmutable(), errors.ToImmutable());
    }

    private static string SyntaxMessage(YamlException ex)
    {
        // YamlDotNet prefixes "(Line: 3, Col: 1, Idx: 20) - (Line: 3, Col: 2, Idx: 21): " to the message;
        // we report the line ourselves.
        var m = ex.Message;
        if (m.StartsWith("(Line:", StringComparison.Ordinal))
        {
            var cut = m.IndexOf("): ", StringComparison.Ordinal);
            if (cut >= 0) m = m[(cut + 3)..];
        }
        return m.TrimEnd('.');
    }

    private static void ReadTopLevel(DocumentContext ctx, YamlNode root, List<Resource> produced)
    {
        if (root is not YamlMapping map)
        {
            // A whole document that is one scalar is not a manifest at all (often a key or token saved under a
            // .yaml name): say what it is, never what it says.
            var what = root is YamlScalar scalar ? $"a scalar of {scalar.Value.Length} characters (content not shown)" : root.Describe();
            ctx.Error(root.Line, "", $"a manifest must be a map with apiVersion, kind and metadata, not {what}");
            return;
        }
        // kubectl accepts "kind: List" wrappers (what `kubectl get -o yaml` prints); each item is a resource
        // with its own errors, so a bad item does not take its siblings down.
        if (map.Get("kind") is YamlScalar { Kind: ScalarKind.String, Value: "List" })
        {
            var items = ctx.Seq(map.Get("items"), "items", map.Line);
            if (items is null) return;
            for (int i = 0; i < items.Items.Count; i++)
            {
                var itemCtx = new DocumentContext(ctx.File);
                var itemProduced = new List<Resource>();
                var path = DocumentContext.Index("items", i);
                if (items.Items[i] is YamlMapping item) ReadResource(itemCtx, item, path, itemProduced);
                else itemCtx.Error(items.Items[i].Line, path, $"must be a map, not {items.Items[i].Describe()}");
                if (itemCtx.Errors.Count == 0) produced.AddRange(itemProduced);
                else ctx.Errors.AddRange(itemCtx.Errors);
            }
            return;
        }
        var one = new List<Resource>(1);
        ReadResource(ctx, map, "", one);
        if (ctx.Errors.Count == 0) produced.AddRange(one);
    }

    private static readonly string[] CoreV1 = ["v1"];
    private static readonly string[] AppsV1 = ["apps/v1"];
    // v1beta1 is still served (and identical for these kinds); manifests written for older Gateway API releases load.
    private static readonly string[] GatewayApi = ["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"];
    private static readonly string[] IstioSecurity = ["security.istio.io/v1", "security.istio.io/v1beta1"];

    /// <summary>The apiVersions a modelled kind is read from; null for kinds we keep as <see cref="UnknownResource"/>.</summary>
    private static string[]? ServedVersions(string kind) => kind switch
    {
        "Namespace" or "ServiceAccount" or "Pod" or "Service" => CoreV1,
        "Deployment" => AppsV1,
        "Gateway" or "HTTPRoute" => GatewayApi,
        "AuthorizationPolicy" or "PeerAuthentication" => IstioSecurity,
        _ => null,
    };

    private static void ReadResource(DocumentContext ctx, YamlMapping root, string prefix, List<Resource> produced)
    {
        var apiVersion = ctx.Str(root, "apiVersion", prefix, required: true);
        var kind = ctx.Str(root, "kind", prefix, required: true);
        var metaPath = DocumentContext.Field(prefix, "metadata");
        var meta = ctx.Map(root.Get("metadata"), metaPath, root.Line, required: true);
        if (apiVersion is null || kind is null || meta is null) return;

        if (ServedVersions(kind) is { } served && Array.IndexOf(served, apiVersion) < 0)
        {
            ctx.Error(root.Get("apiVersion")!.Line, DocumentContext.Field(prefix, "apiVersion"),
                $"Invalid value: \"{LogText.Clip(apiVersion)}\": {kind} is served by apiVersion {string.Join(" or ", served.Select(static v => "\"" + v + "\""))}");
        }

        Func<string, string?> nameRule = kind switch
        {
            "Namespace" => Validation.Dns1123Label,
            "Service" => Validation.Dns1035Label,
            _ => Validation.Dns1123Subdomain,
        };
        var name = ctx.Str(meta, "name", metaPath, required: true, check: nameRule);
        string ns;
        if (ClusterScopedKinds.Contains(kind))
        {
            // Kubernetes ignores metadata.namespace on cluster-scoped objects; so do we.
            ns = "";
        }
        else
        {
            ns = ctx.Str(meta, "namespace", metaPath, check: Validation.Dns1123Label) ?? "default";
        }
        var labels = ctx.StringMap(meta, "labels", metaPath, Validation.QualifiedName, Validation.LabelValue);
        var annotations = ctx.StringMap(meta, "annotations", metaPath, Validation.QualifiedName, valueCheck: null);
        if (name is null) return;

        var metadata = new ObjectMeta(name, ns, labels, annotations);
        var source = new SourceLocation(ctx.File, root.Line);
        Resource? resource = kind switch
        {
            "Namespace" => new NamespaceResource(apiVersion, metadata, source),
            "ServiceAccount" => new ServiceAccountResource(apiVersion, metadata, source),
            "Pod" => ReadPod(ctx, root, prefix, apiVersion, metadata, source),
            "Service" => ReadService(ctx, root, prefix, apiVersion, metadata, source),
            "Deployment" => ReadDeployment(ctx, root, prefix, apiVersion, metadata, source),
            "Gateway" => ReadGateway(ctx, root, prefix, apiVersion, metadata, source),
            "HTTPRoute" => ReadHttpRoute(ctx, root, meta, prefix, apiVersion, metadata, source),
            "AuthorizationPolicy" => ReadAuthorizationPolicy(ctx, root, prefix, apiVersion, metadata, source),
            "PeerAuthentication" => ReadPeerAuthentication(ctx, root, prefix, apiVersion, metadata, source),
            _ => new UnknownResource(apiVersion, kind, metadata, source),
        };
        if (resource is not null) produced.Add(resource);
    }
}
