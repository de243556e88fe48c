using Ambient.Hbone.Telemetry;
using System.Collections.Immutable;
using System.Globalization;
using Ambient.Core.Telemetry;
using Ambient.Core.Config;

namespace Ambient.Config.Yaml;

/// <summary>
/// Typed, error-collecting access to one document's YAML tree. Every accessor reports a wrong type or a
/// bad value as a <see cref="ConfigError"/> (file, line of the offending node, field path) and returns
/// null/empty instead of throwing, so one document can report all its problems at once.
/// </summary>
internal sealed class DocumentContext(string file)
{
    public string File { get; } = file;

    public List<ConfigError> Errors { get; } = [];

    public void Error(int line, string field, string message) =>
        Errors.Add(new ConfigError(new SourceLocation(File, Math.Max(1, line)), field, message));

    public static string Field(string parent, string name) => parent.Length == 0 ? name : parent + "." + name;

    public static string Index(string parent, int i) => parent + "[" + i.ToString(CultureInfo.InvariantCulture) + "]";

    public static string Key(string parent, string key) => parent + "[" + LogText.Clip(key) + "]";

    private static bool IsAbsent(YamlNode? node) => node is null or YamlScalar { Kind: ScalarKind.Null };

    public YamlMapping? Map(YamlNode? node, string field, int parentLine, bool required = false)
    {
        if (IsAbsent(node))
        {
            if (required) Error(node?.Line ?? parentLine, field, "Required value");
            return null;
        }
        if (node is YamlMapping m) return m;
        Error(node!.Line, field, $"must be a map, not {node.Describe()}");
        return null;
    }

    public YamlSequence? Seq(YamlNode? node, string field, int parentLine, bool required = false)
    {
        if (IsAbsent(node) || node is YamlSequence { Items.Count: 0 })
        {
            if (required) Error(node?.Line ?? parentLine, field, "Required value: at least one entry is required");
            return node as YamlSequence;
        }
        if (node is YamlSequence s) return s;
        Error(node!.Line, field, $"must be a list, not {node.Describe()}");
        return null;
    }

    /// <summary>A string field of <paramref name="parent"/>; null (or empty) counts as absent, like Kubernetes.</summary>
    public string? Str(YamlMapping parent, string key, string parentPath, bool required = false, Func<string, string?>? check = null)
    {
        var field = Field(parentPath, key);
        var node = parent.Get(key);
        if (IsAbsent(node))
        {
            if (required) Error(parent.Line, field, "Required value");
            return null;
        }
        var s = AsString(node!, field);
        if (s is null) return null;
        if (s.Length == 0)
        {
            if (required) Error(node!.Line, field, "Required value");
            return null;
        }
        if (check?.Invoke(s) is { } problem)
        {
            Error(node!.Line, field, $"Invalid value: \"{LogText.Clip(s)}\": {problem}");
            return null;
        }
        return s;
    }

    /// <summary>
    /// A string field where the empty string is a value of its own (the Gateway API tells an empty <c>group</c> or
    /// <c>replacePrefixMatch</c> from an absent one): null only when the field is absent or null.
    /// </summary>
    public string? StrOrEmpty(YamlMapping parent, string key, string parentPath, Func<string, string?>? check = null)
    {
        var field = Field(parentPath, key);
        var node = parent.Get(key);
        if (IsAbsent(node)) return null;
        var s = AsString(node!, field);
        if (s is null) return null;
        if (check?.Invoke(s) is { } problem)
        {
            Error(node!.Line, field, $"Invalid value: \"{LogText.Clip(s)}\": {problem}");
            return null;
        }
        return s;
    }

    /// <summary>An integer field that must lie in [<paramref name="min"/>, <paramref name="max"/>], as an OpenAPI Minimum/Maximum.</summary>
    public long? IntInRange(YamlMapping parent, string key, string parentPath, long min, long max, bool required = false)
    {
        var v = Int(parent, key, parentPath, required);
        if (v is not { } n || (n >= min && n <= max)) return v;
        var message = max == long.MaxValue
            ? $"Invalid value: {n}: must be greater than or equal to {min}"
            : $"Invalid value: {n}: must be between {min} and {max}, inclusive";
        Error(parent.Get(key)!.Line, Field(parentPath, key), message);
        return null;
    }

    /// <summary>The text of a string scalar; numbers and booleans are errors, as kubectl reports them.</summary>
    public string? AsString(YamlNode node, string field)
    {
        if (node is YamlScalar { Kind: ScalarKind.String } s) return s.Value;
        if (node is YamlScalar { Kind: ScalarKind.Int or ScalarKind.Float or ScalarKind.Bool } other)
        {
            Error(node.Line, field, $"must be a string, not {other.Describe()}; quote it (\"{LogText.Clip(other.Value)}\") to use it as text");
            return null;
        }
        Error(node.Line, field, $"must be a string, not {node.Describe()}");
        return null;
    }

    /// <summary>An integer field; quoted numbers are rejected like the API server rejects them.</summary>
    public long? Int(YamlMapping parent, string key, string parentPath, bool required = false)
    {
        var field = Field(parentPath, key);
        var node = parent.Get(key);
        if (IsAbsent(node))
        {
            if (required) Error(parent.Line, field, "Required value");
            return null;
        }
        if (node is YamlScalar { Kind: ScalarKind.Int } s && YamlDocumentReader.TryParseInt(s.Value, out var v)) return v;
        Error(node!.Line, field, $"must be an integer, not {node.Describe()}");
        return null;
    }

    public ImmutableArray<string> StringList(YamlMapping parent, string key, string parentPath)
    {
        var field = Field(parentPath, key);
        var seq = Seq(parent.Get(key), field, parent.Line);
        if (seq is null) return [];
        var b = ImmutableArray.CreateBuilder<string>(seq.Items.Count);
        for (int i = 0; i < seq.Items.Count; i++)
        {
            var item = seq.Items[i];
            // A null entry is an empty string to Kubernetes' decoder; keep the position so args line up.
            var s = item is YamlScalar { Kind: ScalarKind.Null } ? "" : AsString(item, Index(field, i));
            if (s is not null) b.Add(s);
        }
        return b.ToImmutable();
    }

    /// <summary>A map of string to string (labels, annotations, selectors): keys and values checked.</summary>
    public ImmutableSortedDictionary<string, string> StringMap(
        YamlMapping parent, string key, string parentPath, Func<string, string?>? keyCheck, Func<string, string?>? valueCheck)
    {
        var field = Field(parentPath, key);
        var map = Map(parent.Get(key), field, parent.Line);
        if (map is null) return ImmutableSortedDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);
        var b = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        foreach (var (k, valueNode) in map.Entries)
        {
            var entryField = Key(field, k.Value);
            if (keyCheck?.Invoke(k.Value) is { } keyProblem)
            {
                Error(k.Line, entryField, $"Invalid value: \"{LogText.Clip(k.Value)}\": {keyProblem}");
                continue;
            }
            // An explicit null is the empty string to Kubernetes' decoder.
            var value = valueNode is YamlScalar { Kind: ScalarKind.Null } ? "" : AsString(valueNode, entryField);
            if (value is null) continue;
            if (valueCheck?.Invoke(value) is { } valueProblem)
            {
                Error(valueNode.Line, entryField, $"Invalid value: \"{LogText.Clip(value)}\": {valueProblem}");
                continue;
            }
            b[k.Value] = value;
        }
        return b.ToImmutable();
    }
}
