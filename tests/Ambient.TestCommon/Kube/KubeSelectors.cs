using System.Text.Json.Nodes;

namespace Ambient.TestCommon.Kube;

/// <summary>
/// Label and field selectors with the apiserver's syntax: label selectors take <c>k=v</c>, <c>k==v</c>, <c>k!=v</c>,
/// <c>k</c>, <c>!k</c>, <c>k in (a,b)</c>, <c>k notin (a,b)</c>; field selectors take <c>path=v</c>, <c>path==v</c>,
/// <c>path!=v</c> over dotted paths (metadata.name, metadata.namespace, spec.nodeName, status.phase, ...).
/// </summary>
internal sealed class KubeSelector
{
    private readonly List<Func<JsonObject, bool>> _requirements = [];

    public static KubeSelector? ParseLabels(string? text) => string.IsNullOrWhiteSpace(text) ? null : Parse(text, labels: true);

    public static KubeSelector? ParseFields(string? text) => string.IsNullOrWhiteSpace(text) ? null : Parse(text, labels: false);

    public bool Matches(JsonObject obj)
    {
        foreach (var requirement in _requirements)
        {
            if (!requirement(obj))
            {
                return false;
            }
        }
        return true;
    }

    private static KubeSelector Parse(string text, bool labels)
    {
        var selector = new KubeSelector();
        foreach (var term in SplitTerms(text))
        {
            var t = term.Trim();
            if (t.Length == 0)
            {
                continue;
            }
            selector._requirements.Add(labels ? ParseLabelTerm(t) : ParseFieldTerm(t));
        }
        return selector;
    }

    // Commas inside "in (a,b)" do not separate terms.
    private static IEnumerable<string> SplitTerms(string text)
    {
        var depth = 0;
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            switch (text[i])
            {
                case '(':
                    depth++;
                    break;
                case ')':
                    depth--;
                    break;
                case ',' when depth == 0:
                    yield return text[start..i];
                    start = i + 1;
                    break;
            }
        }
        yield return text[start..];
    }

    private static Func<JsonObject, bool> ParseLabelTerm(string term)
    {
        if (term.StartsWith('!'))
        {
            var key = term[1..].Trim();
            return obj => Label(obj, key) is null;
        }
        var words = term.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (words.Length == 2 && (words[1].StartsWith("in ", StringComparison.Ordinal) || words[1].StartsWith("in(", StringComparison.Ordinal)
            || words[1].StartsWith("notin", StringComparison.Ordinal)))
        {
            var key = words[0];
            var negate = words[1].StartsWith("notin", StringComparison.Ordinal);
            var open = words[1].IndexOf('(');
            var close = words[1].LastIndexOf(')');
            if (open < 0 || close < open)
            {
                throw new FormatException($"unable to parse requirement: {term}");
            }
            var values = words[1][(open + 1)..close].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
            return negate
                ? obj => Label(obj, key) is not { } v || !values.Contains(v)
                : obj => Label(obj, key) is { } v && values.Contains(v);
        }
        if (SplitOperator(term) is var (k, op, value))
        {
            return op == "!="
                ? obj => Label(obj, k) != value
                : obj => Label(obj, k) == value;
        }
        var existsKey = term;
        return obj => Label(obj, existsKey) is not null;
    }

    private static Func<JsonObject, bool> ParseFieldTerm(string term)
    {
        if (SplitOperator(term) is not var (path, op, value))
        {
            throw new FormatException($"invalid selector: '{term}'; can't understand '{term}'");
        }
        var segments = path.Split('.');
        return op == "!="
            ? obj => (Field(obj, segments) ?? "") != value
            : obj => (Field(obj, segments) ?? "") == value;
    }

    private static (string Key, string Op, string Value)? SplitOperator(string term)
    {
        foreach (var op in (ReadOnlySpan<string>)["!=", "==", "="])
        {
            var at = term.IndexOf(op, StringComparison.Ordinal);
            if (at > 0)
            {
                return (term[..at].Trim(), op, term[(at + op.Length)..].Trim());
            }
        }
        return null;
    }

    private static string? Label(JsonObject obj, string key) =>
        obj["metadata"]?["labels"]?[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    private static string? Field(JsonObject obj, string[] segments)
    {
        JsonNode? node = obj;
        foreach (var segment in segments)
        {
            node = node is JsonObject o ? o[segment] : null;
        }
        return node switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonValue v => v.ToJsonString(),
            _ => null,
        };
    }
}
