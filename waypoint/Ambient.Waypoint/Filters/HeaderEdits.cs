using Ambient.Core.Protos.Waypoint;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace Ambient.Waypoint.Filters;

/// <summary>The kind of one header edit, in the order <see cref="HeaderEdits"/> applies them.</summary>
internal enum HeaderEditKind
{
    Remove,
    Set,
    Add,
}

internal readonly record struct HeaderEdit(HeaderEditKind Kind, string Name, string Value);

/// <summary>
/// RequestHeaderModifier / ResponseHeaderModifier (HTTPHeaderFilter), compiled: an ordered list of edits. Within one
/// filter the order is remove, then set, then add, as Envoy (Istio's data plane) applies its
/// headers_to_remove before headers_to_add; several filters (route level, then backendRef level) apply in turn.
/// Names compare case-insensitively, as header names do.
/// </summary>
internal sealed class HeaderEdits
{
    public static readonly HeaderEdits Empty = new([]);

    private HeaderEdits(HeaderEdit[] edits) => Edits = edits;

    public IReadOnlyList<HeaderEdit> Edits { get; }

    public bool IsEmpty => Edits.Count == 0;

    public static HeaderEdits From(HTTPHeaderFilter? filter)
    {
        if (filter is null)
        {
            return Empty;
        }
        var edits = new List<HeaderEdit>(filter.Remove.Count + filter.Set.Count + filter.Add.Count);
        foreach (var name in filter.Remove)
        {
            edits.Add(new HeaderEdit(HeaderEditKind.Remove, name, ""));
        }
        foreach (var header in filter.Set)
        {
            edits.Add(new HeaderEdit(HeaderEditKind.Set, header.Name, header.Value));
        }
        foreach (var header in filter.Add)
        {
            edits.Add(new HeaderEdit(HeaderEditKind.Add, header.Name, header.Value));
        }
        return edits.Count == 0 ? Empty : new HeaderEdits(edits.ToArray());
    }

    /// <summary>This filter's edits followed by <paramref name="then"/>'s (route level first, then backend level).</summary>
    public HeaderEdits Then(HeaderEdits then)
    {
        if (then.IsEmpty)
        {
            return this;
        }
        if (IsEmpty)
        {
            return then;
        }
        var edits = new HeaderEdit[Edits.Count + then.Edits.Count];
        for (var i = 0; i < Edits.Count; i++)
        {
            edits[i] = Edits[i];
        }
        for (var i = 0; i < then.Edits.Count; i++)
        {
            edits[Edits.Count + i] = then.Edits[i];
        }
        return new HeaderEdits(edits);
    }

    /// <summary>Applies the edits to a request's or a response's headers (Kestrel's dictionaries are
    /// case-insensitive).</summary>
    public void ApplyTo(IHeaderDictionary headers)
    {
        foreach (var edit in Edits)
        {
            switch (edit.Kind)
            {
                case HeaderEditKind.Remove:
                    headers.Remove(edit.Name);
                    break;
                case HeaderEditKind.Set:
                    headers[edit.Name] = edit.Value;
                    break;
                default:
                    // "Add adds the given header(s) (name, value) to the request before the action. It appends to
                    // any existing values associated with the header name."
                    headers[edit.Name] = headers.TryGetValue(edit.Name, out var existing)
                        ? StringValues.Concat(existing, edit.Value)
                        : new StringValues(edit.Value);
                    break;
            }
        }
    }
}
