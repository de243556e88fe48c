using Ambient.Core.Protos.Waypoint;

namespace Ambient.Waypoint.Filters;

/// <summary>HTTPPathModifier, shared by URLRewrite and RequestRedirect.</summary>
internal static class PathModifier
{
    /// <summary>
    /// The new path, or null when the modifier leaves the path as it is. <paramref name="matchedPrefix"/> is the
    /// PathPrefix value of the match that selected the rule (null when that match was not a prefix match, where the
    /// API rejects ReplacePrefixMatch; the path is then left alone).
    /// </summary>
    public static string? Apply(HTTPPathModifier? modifier, string path, string? matchedPrefix) => modifier?.Type switch
    {
        PathModifierType.ReplaceFullPath => modifier.ReplaceFullPath.Length == 0 ? "/" : modifier.ReplaceFullPath,
        PathModifierType.ReplacePrefixMatch when matchedPrefix is not null =>
            ReplacePrefix(path, matchedPrefix, modifier.ReplacePrefixMatch),
        _ => null,
    };

    /// <summary>
    /// Replaces the matched prefix with whole path elements, with the slash handling of the spec's table
    /// (apis/v1/httproute_types.go, HTTPPathModifier.ReplacePrefixMatch): a trailing '/' on the prefix or on the
    /// replacement is ignored, and an empty result is "/". For example "/foo/bar" with prefix "/foo" and
    /// replacement "/xyz/" gives "/xyz/bar"; "/foo" with replacement "" or "/" gives "/".
    /// </summary>
    public static string ReplacePrefix(string path, string prefix, string replacement)
    {
        var prefixLength = prefix.AsSpan().TrimEnd('/').Length;
        // The match guarantees path starts with the prefix at a segment boundary; the rest is "" or "/...".
        var rest = path.AsSpan(Math.Min(prefixLength, path.Length));
        var head = replacement.AsSpan().TrimEnd('/');
        if (head.IsEmpty && rest.IsEmpty)
        {
            return "/";
        }
        if (head.IsEmpty)
        {
            return rest[0] == '/' ? rest.ToString() : string.Concat("/", rest);
        }
        var needsSlash = head[0] != '/';
        return needsSlash ? string.Concat("/", head, rest) : string.Concat(head, rest);
    }
}
