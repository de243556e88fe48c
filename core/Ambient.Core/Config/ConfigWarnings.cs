using System.Collections.Immutable;
using System.Text;

namespace Ambient.Core.Config;

/// <summary>
/// Config that is valid but almost certainly not what the user meant: a kind nobody acts on (often a typo of one
/// we do: <c>kind: Servce</c>) and a Service whose selector matches no pod. Not errors (Kubernetes accepts both),
/// so they change nothing; they are shown where a user looks (<c>ambientctl local status</c>).
/// </summary>
internal static class ConfigWarnings
{
    private static readonly string[] ModelledKinds = ["Namespace", "ServiceAccount", "Pod", "Service", "Deployment", "Gateway", "HTTPRoute", "AuthorizationPolicy", "PeerAuthentication"];

    public static ImmutableArray<ConfigError> Find(ConfigSnapshot config)
    {
        var warnings = ImmutableArray.CreateBuilder<ConfigError>();
        foreach (var u in config.Ignored)
        {
            var guess = ClosestKind(u.Kind);
            warnings.Add(new ConfigError(u.Source, "kind", guess is null
                ? $"kind \"{u.Kind}\" ({u.ApiVersion}) is not supported yet; {u.Key} is ignored"
                : $"kind \"{u.Kind}\" is not a kind we know (did you mean {guess}?); {u.Key} is ignored"));
        }
        var podLabels = new List<PodResource>();
        foreach (var r in config.Resources)
        {
            if (r is PodResource pod) podLabels.Add(pod);
        }
        foreach (var r in config.Resources)
        {
            if (r is not ServiceResource svc || svc.Selector.Count == 0) continue; // no selector: endpoints managed by hand
            if (!podLabels.Exists(p => p.Metadata.Namespace == svc.Metadata.Namespace && Selects(svc.Selector, p.Metadata.Labels)))
            {
                warnings.Add(new ConfigError(svc.Source, "spec.selector",
                    $"Service {svc.Metadata.Namespace}/{svc.Metadata.Name} selects no pod ({Describe(svc.Selector)}); it has no endpoints"));
            }
        }
        warnings.Sort(static (a, b) => SourceOrder.Compare(a.Source, b.Source));
        return warnings.ToImmutable();
    }

    private static bool Selects(ImmutableSortedDictionary<string, string> selector, ImmutableSortedDictionary<string, string> labels)
    {
        foreach (var (k, v) in selector)
        {
            if (!labels.TryGetValue(k, out var actual) || actual != v) return false;
        }
        return true;
    }

    private static string Describe(ImmutableSortedDictionary<string, string> selector)
    {
        var sb = new StringBuilder("selector ");
        foreach (var (k, v) in selector)
        {
            if (sb.Length > "selector ".Length) sb.Append(',');
            sb.Append(k).Append('=').Append(v);
        }
        return sb.ToString();
    }

    /// <summary>A kind we model within two edits (case-insensitive) of <paramref name="kind"/>, if any.</summary>
    internal static string? ClosestKind(string kind)
    {
        string? best = null;
        var bestDistance = 3;
        foreach (var k in ModelledKinds)
        {
            var d = EditDistance(kind.ToLowerInvariant(), k.ToLowerInvariant());
            if (d < bestDistance)
            {
                best = k;
                bestDistance = d;
            }
        }
        return best == kind ? null : best;
    }

    private static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitution, Math.Min(previous[j] + 1, current[j - 1] + 1));
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}

/// <summary>File order, then line order: how problems are listed, so a user reads them top to bottom.</summary>
internal static class SourceOrder
{
    public static int Compare(SourceLocation a, SourceLocation b)
    {
        var byFile = string.CompareOrdinal(a.File, b.File);
        return byFile != 0 ? byFile : a.Line.CompareTo(b.Line);
    }
}
