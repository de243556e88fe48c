using System.Text;
using System.Text.RegularExpressions;
using Ambient.Config.Yaml;
using Ambient.Core.Config;

namespace Ambient.Ctl.Labels;

/// <summary>A label change as kubectl writes it: <c>key=value</c> sets, <c>key-</c> (or <c>key=-</c>) removes.</summary>
internal sealed record LabelChange(string Key, string? Value)
{
    public static LabelChange? Parse(string text, out string? error)
    {
        string key;
        string? value;
        if (text.EndsWith('-') && !text.Contains('='))
        {
            key = text[..^1];
            value = null;
        }
        else
        {
            var eq = text.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                error = $"'{text}' is not KEY=VALUE or KEY-";
                return null;
            }
            key = text[..eq];
            value = text[(eq + 1)..] == "-" ? null : text[(eq + 1)..];
        }
        if (Validation.QualifiedName(key) is { } keyError)
        {
            error = $"label key '{key}': {keyError}";
            return null;
        }
        if (value is not null && Validation.LabelValue(value) is { } valueError)
        {
            error = $"label value '{value}': {valueError}";
            return null;
        }
        error = null;
        return new LabelChange(key, value);
    }
}

/// <summary>
/// Edits a Namespace's labels in the YAML files of a folder, in place, keeping everything else (comments, order,
/// other documents) as written, so a running istiod-lite picks the change up like any edit. The result is parsed
/// again before it is written; if it does not read back as intended the file is left untouched.
/// </summary>
internal static partial class NamespaceLabelEditor
{
    [GeneratedRegex(@"^---(\s|$)")]
    private static partial Regex DocumentSeparator();

    [GeneratedRegex(@"^[A-Za-z][A-Za-z0-9._-]*$")]
    private static partial Regex PlainScalar();

    /// <summary>
    /// Applies the change to the namespace declared in <paramref name="config"/> (a file or a folder); returns the file
    /// written (or that already had it), or null with an error, or null and no error when no file declares the namespace
    /// (<paramref name="brokenFiles"/> then counts the files with errors, which may hide it).
    /// </summary>
    public static string? Apply(string config, string @namespace, LabelChange change, out bool changed, out string? error) =>
        Apply(config, @namespace, change, out changed, out error, out _);

    public static string? Apply(string config, string @namespace, LabelChange change, out bool changed, out string? error, out int brokenFiles)
    {
        changed = false;
        brokenFiles = 0;
        foreach (var file in YamlFiles(config))
        {
            var text = File.ReadAllText(file);
            var parsed = ManifestParser.Parse(file, text);
            if (!parsed.IsClean) brokenFiles++;
            NamespaceResource? ns = null;
            foreach (var r in parsed.Resources)
            {
                if (r is NamespaceResource n && n.Metadata.Name == @namespace) ns = n;
            }
            if (ns is null) continue;
            if (ns.Metadata.Label(change.Key) == change.Value)
            {
                error = null;
                return file;
            }
            var edited = Edit(text, ns.Source.Line, change);
            if (edited is null || !ReadsBack(file, edited, @namespace, change))
            {
                error = $"{ns.Source}: could not edit the labels of namespace '{@namespace}' safely; edit the file by hand";
                return null;
            }
            WriteAtomically(file, edited);
            changed = true;
            error = null;
            return file;
        }
        error = null;
        return null;
    }

    /// <summary>
    /// The text with the change applied to the document starting at 1-based <paramref name="documentLine"/>;
    /// null when the document's shape is not the block style this editor understands.
    /// </summary>
    internal static string? Edit(string text, int documentLine, LabelChange change)
    {
        var newline = text.Contains("\r\n", StringComparison.Ordinal) ? "\r\n" : "\n";
        var lines = new List<string>(text.Split('\n'));
        for (var i = 0; i < lines.Count; i++) lines[i] = lines[i].TrimEnd('\r');
        var start = Math.Max(0, documentLine - 1);
        if (start < lines.Count && DocumentSeparator().IsMatch(lines[start])) start++;
        var end = start;
        while (end < lines.Count && !DocumentSeparator().IsMatch(lines[end])) end++;

        var metadata = FindKey(lines, start, end, 0, "metadata");
        if (metadata < 0) return null;
        var metaEnd = BlockEnd(lines, metadata, end);
        var childIndent = ChildIndent(lines, metadata, metaEnd) ?? 2;
        var labels = FindKey(lines, metadata + 1, metaEnd, childIndent, "labels");
        if (labels >= 0)
        {
            var after = lines[labels].Trim()["labels:".Length..].Trim();
            if (after is "{}" or "") lines[labels] = new string(' ', childIndent) + "labels:";
            else return null; // flow-style map: leave it to a human
            var labelsEnd = BlockEnd(lines, labels, metaEnd);
            var labelIndent = ChildIndent(lines, labels, labelsEnd) ?? childIndent + 2;
            var existing = -1;
            for (var i = labels + 1; i < labelsEnd; i++)
            {
                if (Indent(lines[i]) == labelIndent && KeyOf(lines[i]) == change.Key) existing = i;
            }
            if (change.Value is null)
            {
                if (existing >= 0) lines.RemoveAt(existing);
                if (ChildIndent(lines, labels, BlockEnd(lines, labels, metaEnd - 1)) is null) lines.RemoveAt(labels);
            }
            else if (existing >= 0)
            {
                lines[existing] = new string(' ', labelIndent) + change.Key + ": " + Scalar(change.Value);
            }
            else
            {
                lines.Insert(labelsEnd, new string(' ', labelIndent) + change.Key + ": " + Scalar(change.Value));
            }
        }
        else if (change.Value is not null)
        {
            lines.Insert(metaEnd, new string(' ', childIndent) + "labels:");
            lines.Insert(metaEnd + 1, new string(' ', childIndent + 2) + change.Key + ": " + Scalar(change.Value));
        }
        return string.Join(newline, lines);
    }

    private static int FindKey(List<string> lines, int from, int to, int indent, string key)
    {
        for (var i = from; i < to; i++)
        {
            if (IsContent(lines[i]) && Indent(lines[i]) == indent && KeyOf(lines[i]) == key) return i;
        }
        return -1;
    }

    /// <summary>First line after the block opened at <paramref name="owner"/> (trailing blank/comment lines excluded).</summary>
    private static int BlockEnd(List<string> lines, int owner, int limit)
    {
        var indent = Indent(lines[owner]);
        var last = owner;
        for (var i = owner + 1; i < limit && i < lines.Count; i++)
        {
            if (!IsContent(lines[i])) continue;
            if (Indent(lines[i]) <= indent) break;
            last = i;
        }
        return last + 1;
    }

    private static int? ChildIndent(List<string> lines, int owner, int end)
    {
        for (var i = owner + 1; i < end && i < lines.Count; i++)
        {
            if (IsContent(lines[i]) && Indent(lines[i]) > Indent(lines[owner])) return Indent(lines[i]);
        }
        return null;
    }

    private static bool IsContent(string line)
    {
        var t = line.TrimStart();
        return t.Length > 0 && t[0] != '#';
    }

    private static int Indent(string line)
    {
        var n = 0;
        while (n < line.Length && line[n] == ' ') n++;
        return n;
    }

    private static string? KeyOf(string line)
    {
        var t = line.Trim();
        var colon = t.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0) return null;
        return t[..colon].Trim().Trim('"', '\'');
    }

    /// <summary>Plain when YAML would read it back as that string; quoted otherwise (true, 1.0, null ...).</summary>
    internal static string Scalar(string value) =>
        PlainScalar().IsMatch(value) && value.ToLowerInvariant() is not ("true" or "false" or "yes" or "no" or "on" or "off" or "null" or "y" or "n")
            ? value
            : "\"" + value + "\"";

    private static bool ReadsBack(string file, string text, string @namespace, LabelChange change)
    {
        var parsed = ManifestParser.Parse(file, text);
        foreach (var r in parsed.Resources)
        {
            if (r is NamespaceResource n && n.Metadata.Name == @namespace) return n.Metadata.Label(change.Key) == change.Value;
        }
        return false;
    }

    internal static void WriteAtomically(string path, string text)
    {
        // The temporary name does not end in .yaml, so the config watcher never reads a half-written file.
        var temp = path + ".ambientctl.tmp";
        File.WriteAllText(temp, text, new UTF8Encoding(false));
        File.Move(temp, path, overwrite: true);
    }

    private static List<string> YamlFiles(string config)
    {
        if (File.Exists(config)) return [config];
        var folder = config;
        var files = new List<string>();
        foreach (var f in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            if (f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase)) files.Add(f);
        }
        files.Sort(StringComparer.Ordinal);
        return files;
    }
}
