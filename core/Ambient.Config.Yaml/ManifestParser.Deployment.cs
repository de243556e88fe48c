using System.Collections.Immutable;
using System.Text;
using Ambient.Core.Config;
using Ambient.Hbone.Telemetry;

namespace Ambient.Config.Yaml;

// Deployment (apps/v1): replicas, the selector and the pod template, validated as the API server validates them.
// Strategy, revision history and the like mean nothing without a controller and are ignored.
internal static partial class ManifestParser
{
    /// <summary>
    /// Every replica is a process on this machine; a count this large is a typo (an extra zero), not a plan, and
    /// would exhaust the loopback range before it exhausted anything else.
    /// </summary>
    internal const int MaxReplicas = 256;

    private static DeploymentResource? ReadDeployment(
        DocumentContext ctx, YamlMapping root, string prefix, string apiVersion, ObjectMeta metadata, SourceLocation source)
    {
        var specPath = DocumentContext.Field(prefix, "spec");
        var spec = ctx.Map(root.Get("spec"), specPath, root.Line, required: true);
        if (spec is null) return null;

        var replicas = ctx.IntInRange(spec, "replicas", specPath, 0, MaxReplicas) ?? 1;

        var selectorPath = DocumentContext.Field(specPath, "selector");
        var selectorMap = ctx.Map(spec.Get("selector"), selectorPath, spec.Line, required: true);
        var selector = ImmutableSortedDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);
        var selectorOk = false;
        if (selectorMap is not null)
        {
            selector = ctx.StringMap(selectorMap, "matchLabels", selectorPath, Validation.QualifiedName, Validation.LabelValue);
            if (selectorMap.Get("matchExpressions") is { } exprs && exprs is not YamlScalar { Kind: ScalarKind.Null })
            {
                ctx.Error(exprs.Line, DocumentContext.Field(selectorPath, "matchExpressions"), "not supported in a config folder; use matchLabels");
            }
            else if (selector.Count == 0)
            {
                ctx.Error(selectorMap.Line, selectorPath, "Invalid value: {}: empty selector is invalid for deployment");
            }
            else
            {
                selectorOk = true;
            }
        }

        var templatePath = DocumentContext.Field(specPath, "template");
        var template = ctx.Map(spec.Get("template"), templatePath, spec.Line, required: true);
        if (template is null) return null;
        var templateMetaPath = DocumentContext.Field(templatePath, "metadata");
        var templateMeta = ctx.Map(template.Get("metadata"), templateMetaPath, template.Line);
        var labels = ImmutableSortedDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);
        var annotations = labels;
        if (templateMeta is not null)
        {
            labels = ctx.StringMap(templateMeta, "labels", templateMetaPath, Validation.QualifiedName, Validation.LabelValue);
            annotations = ctx.StringMap(templateMeta, "annotations", templateMetaPath, Validation.QualifiedName, valueCheck: null);
        }
        var podSpecPath = DocumentContext.Field(templatePath, "spec");
        var podSpecMap = ctx.Map(template.Get("spec"), podSpecPath, template.Line, required: true);
        if (podSpecMap is null) return null;
        var podSpec = ReadPodSpec(ctx, podSpecMap, podSpecPath);

        if (selectorOk && !Selects(selector, labels))
        {
            ctx.Error(templateMeta?.Line ?? template.Line, DocumentContext.Field(templateMetaPath, "labels"),
                $"Invalid value: {Describe(labels)}: `selector` does not match template `labels` (selector {Describe(selector)})");
        }
        if (labels.ContainsKey(DeploymentPods.TemplateHashLabel))
        {
            ctx.Error(templateMeta!.Line, DocumentContext.Key(DocumentContext.Field(templateMetaPath, "labels"), DeploymentPods.TemplateHashLabel),
                "is set on each pod from the template's hash; do not set it in the template");
        }
        if (metadata.Name.Length > DeploymentPods.MaxDeploymentNameLength)
        {
            ctx.Error(root.Line, DocumentContext.Field(prefix, "metadata.name"),
                $"must be no more than {DeploymentPods.MaxDeploymentNameLength} characters, so its pod names (name-hash-suffix) stay within 253");
        }

        return new DeploymentResource(apiVersion, metadata, source, (int)replicas, selector, labels, annotations,
            podSpec.ServiceAccountName, podSpec.NodeName, podSpec.Containers);
    }

    private static bool Selects(ImmutableSortedDictionary<string, string> selector, ImmutableSortedDictionary<string, string> labels)
    {
        foreach (var (k, v) in selector)
        {
            if (!labels.TryGetValue(k, out var actual) || actual != v) return false;
        }
        return true;
    }

    private static string Describe(ImmutableSortedDictionary<string, string> map)
    {
        var sb = new StringBuilder("{");
        foreach (var (k, v) in map)
        {
            if (sb.Length > 1) sb.Append(", ");
            sb.Append(LogText.Clip(k)).Append(": ").Append(LogText.Clip(v));
        }
        return sb.Append('}').ToString();
    }
}
