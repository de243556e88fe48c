using Ambient.Hbone.Telemetry;
using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using Ambient.Core.Telemetry;
using Ambient.Core.Config;

namespace Ambient.Config.Yaml;

// A small YAML node tree built from YamlDotNet's event parser. We build our own instead of using the
// representation model because we need (a) documents handed out one at a time, so a syntax error in
// document 3 leaves documents 1-2 usable, (b) duplicate keys reported as config errors rather than
// exceptions, and (c) the 1-based line of every node for error messages.

internal abstract class YamlNode(int line)
{
    /// <summary>1-based line where the node starts.</summary>
    public int Line { get; } = line;

    /// <summary>Nodes in this subtree, counting what aliases expand to (bounds alias bombs).</summary>
    public int Size { get; set; } = 1;

    /// <summary>What the node is, in words a user understands ("a list", "a number", ...).</summary>
    public abstract string Describe();
}

internal enum ScalarKind { Null, Bool, Int, Float, String }

internal sealed class YamlScalar : YamlNode
{
    public YamlScalar(int line, string value, ScalarKind kind) : base(line)
    {
        Value = value;
        Kind = kind;
    }

    public string Value { get; }

    /// <summary>The type the scalar resolves to, as Kubernetes' YAML decoder (YAML 1.1 rules) would see it.</summary>
    public ScalarKind Kind { get; }

    public override string Describe() => Kind switch
    {
        ScalarKind.Null => "null",
        ScalarKind.Bool => $"a boolean ({LogText.Clip(Value)})",
        ScalarKind.Int or ScalarKind.Float => $"a number ({LogText.Clip(Value)})",
        _ => $"a string (\"{LogText.Clip(Value)}\")",
    };
}

internal sealed class YamlMapping(int line) : YamlNode(line)
{
    public List<KeyValuePair<YamlScalar, YamlNode>> Entries { get; } = [];

    public YamlNode? Get(string key)
    {
        foreach (var e in Entries)
        {
            if (e.Key.Value == key) return e.Value;
        }
        return null;
    }

    public override string Describe() => "a map";
}

internal sealed class YamlSequence(int line) : YamlNode(line)
{
    public List<YamlNode> Items { get; } = [];

    public override string Describe() => "a list";
}

/// <summary>A problem found while building the tree (not a syntax error): line and message.</summary>
internal readonly record struct YamlTreeIssue(int Line, string Path, string Message);

/// <summary>One document of a stream: its root (null when the document is empty) and tree-level issues.</summary>
internal sealed record YamlDocumentTree(int Line, YamlNode? Root, IReadOnlyList<YamlTreeIssue> Issues);

/// <summary>Reads a YAML stream document by document.</summary>
internal sealed class YamlDocumentReader
{
    private const string TagStr = "tag:yaml.org,2002:str";
    private const string TagInt = "tag:yaml.org,2002:int";
    private const string TagBool = "tag:yaml.org,2002:bool";
    private const string TagNull = "tag:yaml.org,2002:null";
    private const string TagFloat = "tag:yaml.org,2002:float";

    // Aliases can make a tree exponentially large ("billion laughs"); a config document has no reason
    // to expand to more than this many nodes.
    private const int MaxNodes = 200_000;

    private readonly Parser _parser;
    private readonly Dictionary<string, YamlNode> _anchors = new(StringComparer.Ordinal);
    private List<YamlTreeIssue> _issues = [];
    private int _nodeCount;
    private bool _started;

    public YamlDocumentReader(string text) => _parser = new Parser(new StringReader(text));

    /// <summary>
    /// Returns the next document, or null at the end of the stream. Throws <see cref="YamlException"/> on a
    /// syntax error; the caller stops reading the stream there (the parser cannot resynchronise).
    /// </summary>
    public YamlDocumentTree? Next()
    {
        if (!_started)
        {
            _started = true;
            Expect<StreamStart>();
        }
        if (!_parser.MoveNext()) return null;
        if (_parser.Current is StreamEnd) return null;
        if (_parser.Current is not DocumentStart start)
        {
            throw new YamlException(_parser.Current!.Start, _parser.Current.End, "expected the start of a document");
        }

        _anchors.Clear();
        _issues = [];
        _nodeCount = 0;
        Advance();
        var root = ReadNode(path: "");
        Advance();
        if (_parser.Current is not DocumentEnd)
        {
            throw new YamlException(_parser.Current!.Start, _parser.Current.End, "expected the end of the document");
        }
        if (root is YamlScalar { Kind: ScalarKind.Null }) root = null;
        return new YamlDocumentTree(root?.Line ?? LineOf(start.Start), root, _issues);
    }

    private static int LineOf(Mark mark) => (int)Math.Min(int.MaxValue, mark.Line);

    private void Expect<T>() where T : ParsingEvent
    {
        if (!_parser.MoveNext() || _parser.Current is not T)
        {
            var mark = _parser.Current?.Start ?? Mark.Empty;
            throw new YamlException(mark, mark, $"malformed YAML stream: expected {typeof(T).Name}");
        }
    }

    private void Advance()
    {
        if (!_parser.MoveNext())
        {
            throw new YamlException(Mark.Empty, Mark.Empty, "unexpected end of the YAML stream");
        }
    }

    // Reads the node whose first event is _parser.Current; leaves Current on the node's last event.
    private YamlNode ReadNode(string path)
    {
        if (++_nodeCount > MaxNodes)
        {
            var ev = _parser.Current!;
            throw new YamlException(ev.Start, ev.End, $"document expands to more than {MaxNodes} nodes (alias bomb?)");
        }
        switch (_parser.Current)
        {
            case Scalar s:
            {
                var node = new YamlScalar(LineOf(s.Start), s.Value, Resolve(s));
                Remember(s, node);
                return node;
            }
            case AnchorAlias a:
            {
                if (_anchors.TryGetValue(a.Value.Value, out var target))
                {
                    _nodeCount += target.Size - 1;
                    if (_nodeCount > MaxNodes)
                    {
                        throw new YamlException(a.Start, a.End, $"document expands to more than {MaxNodes} nodes (alias bomb?)");
                    }
                    return target;
                }
                throw new YamlException(a.Start, a.End, $"alias *{LogText.Clip(a.Value.Value)} refers to an unknown anchor");
            }
            case SequenceStart ss:
            {
                var seq = new YamlSequence(LineOf(ss.Start));
                while (true)
                {
                    Advance();
                    if (_parser.Current is SequenceEnd) break;
                    var item = ReadNode(path + "[" + seq.Items.Count.ToString(CultureInfo.InvariantCulture) + "]");
                    seq.Size += item.Size;
                    seq.Items.Add(item);
                }
                // Anchors are registered only once the node is complete, so "&a [*a]" is an unknown-anchor
                // error instead of a cyclic tree.
                Remember(ss, seq);
                return seq;
            }
            case MappingStart ms:
            {
                var map = new YamlMapping(LineOf(ms.Start));
                List<YamlMapping>? merges = null;
                while (true)
                {
                    Advance();
                    if (_parser.Current is MappingEnd) break;
                    var keyEvent = _parser.Current!;
                    var keyNode = ReadNode(path);
                    Advance();
                    if (keyNode is not YamlScalar key)
                    {
                        _issues.Add(new YamlTreeIssue(keyNode.Line, path, $"map keys must be strings, not {keyNode.Describe()}"));
                        ReadNode(path);
                        continue;
                    }
                    var childPath = path.Length == 0 ? LogText.Clip(key.Value) : path + "." + LogText.Clip(key.Value);
                    var value = ReadNode(childPath);
                    map.Size += 1 + value.Size;
                    if (key.Value == "<<" && keyEvent is Scalar { Style: ScalarStyle.Plain })
                    {
                        // YAML 1.1 merge key, which Kubernetes' decoder honours: collect and apply after the
                        // explicit keys so those win.
                        merges ??= [];
                        CollectMerge(value, childPath, merges);
                        continue;
                    }
                    if (map.Get(key.Value) is not null)
                    {
                        _issues.Add(new YamlTreeIssue(key.Line, childPath, $"duplicate key \"{LogText.Clip(key.Value)}\" in the same map"));
                        continue;
                    }
                    map.Entries.Add(new(key, value));
                }
                if (merges is not null)
                {
                    foreach (var source in merges)
                    {
                        foreach (var e in source.Entries)
                        {
                            if (map.Get(e.Key.Value) is null) map.Entries.Add(e);
                        }
                    }
                }
                Remember(ms, map);
                return map;
            }
            default:
            {
                var ev = _parser.Current!;
                throw new YamlException(ev.Start, ev.End, $"unexpected YAML event {ev.GetType().Name}");
            }
        }
    }

    private void CollectMerge(YamlNode value, string path, List<YamlMapping> merges)
    {
        switch (value)
        {
            case YamlMapping m:
                merges.Add(m);
                break;
            case YamlSequence s:
                foreach (var item in s.Items)
                {
                    if (item is YamlMapping im) merges.Add(im);
                    else _issues.Add(new YamlTreeIssue(item.Line, path, $"a merge key (<<) takes maps, not {item.Describe()}"));
                }
                break;
            default:
                _issues.Add(new YamlTreeIssue(value.Line, path, $"a merge key (<<) takes a map or a list of maps, not {value.Describe()}"));
                break;
        }
    }

    private void Remember(NodeEvent ev, YamlNode node)
    {
        if (!ev.Anchor.IsEmpty) _anchors[ev.Anchor.Value] = node;
    }

    private static ScalarKind Resolve(Scalar s)
    {
        if (!s.Tag.IsEmpty && !s.Tag.IsNonSpecific)
        {
            switch (s.Tag.Value)
            {
                case TagStr: return ScalarKind.String;
                case TagInt: return ScalarKind.Int;
                case TagBool: return ScalarKind.Bool;
                case TagNull: return ScalarKind.Null;
                case TagFloat: return ScalarKind.Float;
            }
        }
        // Quoted and block scalars are always strings; only plain scalars are resolved by their text.
        return s.Style == ScalarStyle.Plain ? ResolvePlain(s.Value) : ScalarKind.String;
    }

    /// <summary>
    /// Resolves a plain scalar the way Kubernetes' YAML decoder does (YAML 1.1 core types), so
    /// <c>version: 1</c> or <c>enabled: yes</c> are recognised as non-strings exactly where kubectl
    /// would reject them.
    /// </summary>
    internal static ScalarKind ResolvePlain(string v)
    {
        switch (v)
        {
            case "" or "~" or "null" or "Null" or "NULL":
                return ScalarKind.Null;
            case "y" or "Y" or "yes" or "Yes" or "YES" or "true" or "True" or "TRUE" or "on" or "On" or "ON"
                or "n" or "N" or "no" or "No" or "NO" or "false" or "False" or "FALSE" or "off" or "Off" or "OFF":
                return ScalarKind.Bool;
            case ".nan" or ".NaN" or ".NAN" or ".inf" or ".Inf" or ".INF" or "+.inf" or "+.Inf" or "+.INF"
                or "-.inf" or "-.Inf" or "-.INF":
                return ScalarKind.Float;
        }
        if (TryParseInt(v, out _)) return ScalarKind.Int;
        if (LooksLikeFloat(v)) return ScalarKind.Float;
        return ScalarKind.String;
    }

    /// <summary>Parses a YAML integer: decimal, 0x hex, 0o / leading-0 octal, 0b binary, '_' separators.</summary>
    internal static bool TryParseInt(string v, out long value)
    {
        value = 0;
        if (v.Length == 0) return false;
        var s = v.Replace("_", "", StringComparison.Ordinal);
        var negative = false;
        if (s.Length > 0 && (s[0] == '+' || s[0] == '-'))
        {
            negative = s[0] == '-';
            s = s[1..];
        }
        if (s.Length == 0) return false;
        int radix = 10;
        if (s.Length > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { radix = 16; s = s[2..]; }
        else if (s.Length > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) { radix = 8; s = s[2..]; }
        else if (s.Length > 2 && s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) { radix = 2; s = s[2..]; }
        else if (s.Length > 1 && s[0] == '0') { radix = 8; s = s[1..]; }
        long acc = 0;
        foreach (var c in s)
        {
            int d = c switch
            {
                >= '0' and <= '9' => c - '0',
                >= 'a' and <= 'f' => c - 'a' + 10,
                >= 'A' and <= 'F' => c - 'A' + 10,
                _ => 99,
            };
            if (d >= radix) return false;
            if (acc > (long.MaxValue - d) / radix) return false;
            acc = acc * radix + d;
        }
        value = negative ? -acc : acc;
        return true;
    }

    private static bool LooksLikeFloat(string v)
    {
        // [-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)? in YAML 1.1; accept the common 1.2 forms too.
        var s = v.Replace("_", "", StringComparison.Ordinal);
        if (s.Length == 0 || !(char.IsAsciiDigit(s[0]) || s[0] is '.' or '+' or '-')) return false;
        var hasDigit = false;
        foreach (var c in s) hasDigit |= char.IsAsciiDigit(c);
        return hasDigit && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _);
    }
}
