using System.Net;
using System.Text.RegularExpressions;
using Ambient.Core.Config;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Hbone.Telemetry;
using Google.Protobuf.Collections;

namespace Ambient.Config.Yaml;

// AuthorizationPolicy (security.istio.io/v1 and v1beta1), checked as Istio's validation webhook
// (pkg/config/validation ValidateAuthorizationPolicy, pkg/config/security ValidateAttribute) and the CRD's CEL rules
// check it. A policy is a security boundary: any error rejects it whole, and an unknown field is an error (a
// misspelt `notNamespace` silently ignored would widen what the policy lets through).
internal static partial class ManifestParser
{
    private const int MaxTargetRefs = 16;

    private static readonly string[] PolicyActions = ["ALLOW", "DENY", "AUDIT", "CUSTOM"];
    private static readonly string[] SpecFields = ["selector", "targetRef", "targetRefs", "action", "provider", "rules"];
    private static readonly string[] RuleFields = ["from", "to", "when"];
    private static readonly string[] SourceFields =
    [
        "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces", "notNamespaces",
        "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks", "serviceAccounts", "notServiceAccounts",
    ];
    private static readonly string[] OperationFields = ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"];
    private static readonly string[] ConditionFields = ["key", "values", "notValues"];
    private static readonly string[] TargetRefFields = ["group", "kind", "name", "namespace", "sectionName"];

    // Istio's security.unsupportedPathTempRegex: named variables, empty braces, and * or ** outside {*} / {**}.
    [GeneratedRegex(@"\/{\w+\=\*[*]?\}|{\w*\}|\/\*[*]?|\*[*]?\/", RegexOptions.CultureInvariant)]
    private static partial Regex UnsupportedPathTemplate();

    private static AuthorizationPolicyResource? ReadAuthorizationPolicy(
        DocumentContext ctx, YamlMapping root, string prefix, string apiVersion, ObjectMeta metadata, SourceLocation source)
    {
        var errorsBefore = ctx.Errors.Count;
        var policy = new AuthorizationPolicySpec
        {
            Namespace = metadata.Namespace,
            Name = metadata.Name,
            DryRun = metadata.Annotations.TryGetValue(AuthorizationPolicyResource.DryRunAnnotation, out var dryRun) && AuthorizationPolicyResource.ParseDryRun(dryRun) == true,
        };
        var specPath = DocumentContext.Field(prefix, "spec");
        // No spec is an ALLOW policy without rules: allow nothing.
        var spec = ctx.Map(root.Get("spec"), specPath, root.Line);
        if (spec is null)
        {
            return ctx.Errors.Count == errorsBefore ? new AuthorizationPolicyResource(apiVersion, metadata, source, policy) : null;
        }
        RejectUnknownFields(ctx, spec, specPath, SpecFields);

        policy.HasSelector = ReadWorkloadSelector(ctx, spec, specPath, policy.MatchLabels);

        if (ctx.Map(spec.Get("targetRef"), DocumentContext.Field(specPath, "targetRef"), spec.Line) is { } single)
        {
            ReadPolicyTargetRef(ctx, single, DocumentContext.Field(specPath, "targetRef"), policy);
        }
        var refsPath = DocumentContext.Field(specPath, "targetRefs");
        if (ctx.Seq(spec.Get("targetRefs"), refsPath, spec.Line) is { } refs && WithinMaxItems(ctx, refs, refsPath, MaxTargetRefs))
        {
            for (int i = 0; i < refs.Items.Count; i++)
            {
                var path = DocumentContext.Index(refsPath, i);
                if (ctx.Map(refs.Items[i], path, refs.Line, required: true) is { } r) ReadPolicyTargetRef(ctx, r, path, policy);
            }
        }
        var selectorKinds = (spec.Get("selector") is YamlMapping ? 1 : 0) + (spec.Get("targetRef") is YamlMapping ? 1 : 0)
            + (spec.Get("targetRefs") is YamlSequence { Items.Count: > 0 } ? 1 : 0);
        if (selectorKinds > 1)
        {
            ctx.Error(spec.Line, specPath, "Invalid value: only one of targetRefs or workloadSelector can be set");
        }

        var actionText = ctx.Str(spec, "action", specPath, check: static v =>
            Array.IndexOf(PolicyActions, v) >= 0 ? null : "supported values: \"ALLOW\", \"DENY\", \"AUDIT\", \"CUSTOM\"");
        policy.Action = actionText switch
        {
            "DENY" => PolicyAction.Deny,
            "AUDIT" => PolicyAction.Audit,
            "CUSTOM" => PolicyAction.Custom,
            _ => PolicyAction.Allow,
        };

        var providerPath = DocumentContext.Field(specPath, "provider");
        var provider = ctx.Map(spec.Get("provider"), providerPath, spec.Line);
        if (provider is not null)
        {
            RejectUnknownFields(ctx, provider, providerPath, ["name"]);
            policy.Provider = ctx.Str(provider, "name", providerPath) ?? "";
            if (actionText is not null && policy.Action != PolicyAction.Custom)
            {
                ctx.Error(spec.Get("provider")!.Line, providerPath, $"Invalid value: `provider` must not be with non CUSTOM action, found {actionText}");
            }
            else if (actionText is null)
            {
                ctx.Error(spec.Get("provider")!.Line, providerPath, "Invalid value: `provider` must not be with non CUSTOM action, found ALLOW");
            }
        }

        var rulesPath = DocumentContext.Field(specPath, "rules");
        var rulesNode = spec.Get("rules");
        var rules = ctx.Seq(rulesNode, rulesPath, spec.Line);
        var hasRules = rules is { Items.Count: > 0 };
        if (policy.Action == PolicyAction.Deny && !hasRules)
        {
            ctx.Error(rulesNode?.Line ?? spec.Line, rulesPath,
                "Required value: DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
        }
        if (policy.Action == PolicyAction.Custom)
        {
            if (!hasRules)
            {
                ctx.Error(rulesNode?.Line ?? spec.Line, rulesPath,
                    "Required value: CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
            }
            else if (policy.Provider.Length == 0)
            {
                ctx.Error(provider?.Line ?? spec.Line, DocumentContext.Field(providerPath, "name"), "Required value: `provider.name` must not be empty for the CUSTOM action");
            }
        }
        if (rules is not null)
        {
            for (int i = 0; i < rules.Items.Count; i++)
            {
                var path = DocumentContext.Index(rulesPath, i);
                var r = ctx.Map(rules.Items[i], path, rules.Line, required: true);
                if (r is not null) policy.Rules.Add(ReadPolicyRule(ctx, r, path, policy.Action == PolicyAction.Custom));
            }
        }
        return ctx.Errors.Count == errorsBefore ? new AuthorizationPolicyResource(apiVersion, metadata, source, policy) : null;
    }

    private static void ReadPolicyTargetRef(DocumentContext ctx, YamlMapping r, string path, AuthorizationPolicySpec policy)
    {
        RejectUnknownFields(ctx, r, path, TargetRefFields);
        var group = ctx.StrOrEmpty(r, "group", path) ?? "";
        var kind = ctx.Str(r, "kind", path, required: true);
        var name = ctx.Str(r, "name", path, required: true, check: Validation.ObjectName);
        var ns = ctx.StrOrEmpty(r, "namespace", path);
        if (!string.IsNullOrEmpty(ns))
        {
            ctx.Error(r.Get("namespace")!.Line, DocumentContext.Field(path, "namespace"), $"Invalid value: \"{LogText.Clip(ns)}\": cross namespace referencing is not currently supported");
        }
        if (kind is null || name is null) return;
        var supported = (kind == "Service" && group is "" or "core") || (kind == "Gateway" && group == GatewayGroup);
        if (!supported)
        {
            ctx.Error(r.Line, path, $"Invalid value: \"{LogText.Clip(group)}/{LogText.Clip(kind)}\": Support kinds are core/Service and gateway.networking.k8s.io/Gateway");
            return;
        }
        policy.TargetRefs.Add(new PolicyTargetReference { Group = group == "core" ? "" : group, Kind = kind, Name = name, Namespace = policy.Namespace });
    }

    private static PolicyRule ReadPolicyRule(DocumentContext ctx, YamlMapping r, string path, bool custom)
    {
        RejectUnknownFields(ctx, r, path, RuleFields);
        var rule = new PolicyRule();

        rule.From.AddRange(ReadWrappedList(ctx, r, path, "from", "source", (s, sPath) => ReadPolicySource(ctx, s, sPath, custom)));
        rule.To.AddRange(ReadWrappedList(ctx, r, path, "to", "operation", (o, oPath) => ReadPolicyOperation(ctx, o, oPath)));

        var whenPath = DocumentContext.Field(path, "when");
        if (ctx.Seq(r.Get("when"), whenPath, r.Line) is { } whens)
        {
            for (int i = 0; i < whens.Items.Count; i++)
            {
                var wPath = DocumentContext.Index(whenPath, i);
                if (ctx.Map(whens.Items[i], wPath, whens.Line, required: true) is { } w) rule.When.Add(ReadPolicyCondition(ctx, w, wPath, custom));
            }
        }
        return rule;
    }

    /// <summary>
    /// <c>from: [{source: ...}]</c> and <c>to: [{operation: ...}]</c>: a list that, when present, must not be empty,
    /// of maps holding exactly one required map.
    /// </summary>
    private static List<T> ReadWrappedList<T>(
        DocumentContext ctx, YamlMapping r, string path, string listKey, string itemKey, Func<YamlMapping, string, T> read)
    {
        var items = new List<T>();
        var listPath = DocumentContext.Field(path, listKey);
        if (r.Get(listKey) is YamlSequence { Items.Count: 0 } empty)
        {
            ctx.Error(empty.Line, listPath, $"Invalid value: `{listKey}` must not be empty");
        }
        if (ctx.Seq(r.Get(listKey), listPath, r.Line) is not { } seq) return items;
        for (int i = 0; i < seq.Items.Count; i++)
        {
            var itemPath = DocumentContext.Index(listPath, i);
            if (ctx.Map(seq.Items[i], itemPath, seq.Line, required: true) is not { } wrapper) continue;
            RejectUnknownFields(ctx, wrapper, itemPath, [itemKey]);
            var innerPath = DocumentContext.Field(itemPath, itemKey);
            if (ctx.Map(wrapper.Get(itemKey), innerPath, wrapper.Line, required: true) is { } inner) items.Add(read(inner, innerPath));
        }
        return items;
    }

    private static PolicySource ReadPolicySource(DocumentContext ctx, YamlMapping s, string path, bool custom)
    {
        RejectUnknownFields(ctx, s, path, SourceFields);
        var errorsBefore = ctx.Errors.Count;
        var source = new PolicySource();
        ReadPolicyStrings(ctx, s, "principals", path, source.Principals);
        ReadPolicyStrings(ctx, s, "notPrincipals", path, source.NotPrincipals);
        ReadPolicyStrings(ctx, s, "requestPrincipals", path, source.RequestPrincipals);
        ReadPolicyStrings(ctx, s, "notRequestPrincipals", path, source.NotRequestPrincipals);
        ReadPolicyStrings(ctx, s, "namespaces", path, source.Namespaces);
        ReadPolicyStrings(ctx, s, "notNamespaces", path, source.NotNamespaces);
        ReadPolicyStrings(ctx, s, "ipBlocks", path, source.IpBlocks, IpBlock);
        ReadPolicyStrings(ctx, s, "notIpBlocks", path, source.NotIpBlocks, IpBlock);
        ReadPolicyStrings(ctx, s, "remoteIpBlocks", path, source.RemoteIpBlocks, IpBlock);
        ReadPolicyStrings(ctx, s, "notRemoteIpBlocks", path, source.NotRemoteIpBlocks, IpBlock);
        ReadPolicyStrings(ctx, s, "serviceAccounts", path, source.ServiceAccounts, ServiceAccountRef);
        ReadPolicyStrings(ctx, s, "notServiceAccounts", path, source.NotServiceAccounts, ServiceAccountRef);
        if (source.Principals.Count + source.NotPrincipals.Count + source.Namespaces.Count + source.NotNamespaces.Count > 0
            && source.ServiceAccounts.Count + source.NotServiceAccounts.Count > 0)
        {
            ctx.Error(s.Line, path, "Invalid value: cannot set serviceAccounts with namespaces or principals");
        }
        if (source.CalculateSize() == 0 && ctx.Errors.Count == errorsBefore)
        {
            ctx.Error(s.Line, path, "Invalid value: `from.source` must not be empty");
        }
        if (custom)
        {
            foreach (var field in (string[])["namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts", "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals"])
            {
                if (s.Get(field) is { } node)
                {
                    ctx.Error(node.Line, DocumentContext.Field(path, field), "Forbidden: not supported with the CUSTOM action");
                }
            }
        }
        return source;
    }

    private static PolicyOperation ReadPolicyOperation(DocumentContext ctx, YamlMapping o, string path)
    {
        RejectUnknownFields(ctx, o, path, OperationFields);
        var errorsBefore = ctx.Errors.Count;
        var op = new PolicyOperation();
        ReadPolicyStrings(ctx, o, "hosts", path, op.Hosts);
        ReadPolicyStrings(ctx, o, "notHosts", path, op.NotHosts);
        ReadPolicyStrings(ctx, o, "ports", path, op.Ports, PolicyPort);
        ReadPolicyStrings(ctx, o, "notPorts", path, op.NotPorts, PolicyPort);
        ReadPolicyStrings(ctx, o, "methods", path, op.Methods);
        ReadPolicyStrings(ctx, o, "notMethods", path, op.NotMethods);
        ReadPolicyStrings(ctx, o, "paths", path, op.Paths, PathTemplate);
        ReadPolicyStrings(ctx, o, "notPaths", path, op.NotPaths, PathTemplate);
        if (op.CalculateSize() == 0 && ctx.Errors.Count == errorsBefore)
        {
            ctx.Error(o.Line, path, "Invalid value: `to.operation` must not be empty");
        }
        return op;
    }

    private static PolicyCondition ReadPolicyCondition(DocumentContext ctx, YamlMapping w, string path, bool custom)
    {
        RejectUnknownFields(ctx, w, path, ConditionFields);
        var key = ctx.Str(w, "key", path, required: true) ?? "";
        var condition = new PolicyCondition { Key = key };
        var check = ConditionValueCheck(key);
        var errorsBefore = ctx.Errors.Count;
        ReadPolicyStrings(ctx, w, "values", path, condition.Values, check);
        ReadPolicyStrings(ctx, w, "notValues", path, condition.NotValues, check);
        if (condition.Values.Count == 0 && condition.NotValues.Count == 0 && ctx.Errors.Count == errorsBefore)
        {
            ctx.Error(w.Line, path, $"Required value: at least one of `values` or `notValues` must be set for key {LogText.Clip(key)}");
        }
        if (key.Length == 0) return condition;
        var keyPath = DocumentContext.Field(path, "key");
        var keyLine = w.Get("key")!.Line;
        if (ConditionKeyProblem(key) is { } problem)
        {
            ctx.Error(keyLine, keyPath, $"Invalid value: \"{LogText.Clip(key)}\": {problem}");
        }
        else if (custom && (key is "source.namespace" or "source.serviceAccount" or "source.principal" || key.StartsWith("request.auth.", StringComparison.Ordinal)))
        {
            ctx.Error(keyLine, keyPath, $"Forbidden: \"{LogText.Clip(key)}\" is not supported with the CUSTOM action");
        }
        return condition;
    }

    /// <summary>A list of strings where the empty string is an error (Istio's CheckEmptyValues), each value checked.</summary>
    private static void ReadPolicyStrings(DocumentContext ctx, YamlMapping parent, string key, string parentPath, RepeatedField<string> into, Func<string, string?>? check = null)
    {
        var field = DocumentContext.Field(parentPath, key);
        var seq = ctx.Seq(parent.Get(key), field, parent.Line);
        if (seq is null) return;
        for (int i = 0; i < seq.Items.Count; i++)
        {
            var item = seq.Items[i];
            var itemPath = DocumentContext.Index(field, i);
            if (item is YamlScalar { Kind: ScalarKind.Null })
            {
                ctx.Error(item.Line, itemPath, "Invalid value: empty value not allowed");
                continue;
            }
            var s = ctx.AsString(item, itemPath);
            if (s is null) continue;
            if (s.Length == 0)
            {
                ctx.Error(item.Line, itemPath, "Invalid value: empty value not allowed");
                continue;
            }
            if (check?.Invoke(s) is { } problem)
            {
                ctx.Error(item.Line, itemPath, $"Invalid value: \"{LogText.Clip(s)}\": {problem}");
                continue;
            }
            into.Add(s);
        }
    }

    private static void RejectUnknownFields(DocumentContext ctx, YamlMapping map, string path, string[] known)
    {
        foreach (var (k, _) in map.Entries)
        {
            if (Array.IndexOf(known, k.Value) < 0)
            {
                ctx.Error(k.Line, DocumentContext.Field(path, k.Value), $"unknown field \"{LogText.Clip(k.Value)}\" (known: {string.Join(", ", known)})");
            }
        }
    }

    /// <summary>
    /// <c>spec.selector</c> (Istio's WorkloadSelector: <c>matchLabels</c> only, no wildcards) into
    /// <paramref name="matchLabels"/>; true when the spec has a selector, even <c>selector: {}</c>, which Istio tells
    /// from none.
    /// </summary>
    private static bool ReadWorkloadSelector(DocumentContext ctx, YamlMapping spec, string specPath, MapField<string, string> matchLabels)
    {
        var selectorPath = DocumentContext.Field(specPath, "selector");
        if (ctx.Map(spec.Get("selector"), selectorPath, spec.Line) is { } selector)
        {
            RejectUnknownFields(ctx, selector, selectorPath, ["matchLabels"]);
            var labels = ctx.StringMap(selector, "matchLabels", selectorPath, SelectorKey, SelectorValue);
            foreach (var (k, v) in labels) matchLabels[k] = v;
        }
        return spec.Get("selector") is YamlMapping;
    }

    private static string? SelectorKey(string k) =>
        k.Contains('*', StringComparison.Ordinal) ? "wildcard is not supported in selector" : Validation.QualifiedName(k);

    private static string? SelectorValue(string v) =>
        v.Contains('*', StringComparison.Ordinal) ? "wildcard is not supported in selector" : Validation.LabelValue(v);

    /// <summary>A single IP or a CIDR block (Istio's security.ValidateIPs, netip parsing).</summary>
    internal static string? IpBlock(string v)
    {
        var slash = v.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0)
        {
            return Validation.IpAddress(v) is null ? null : "bad IP address: must be a single IP (e.g. 203.0.113.4) or a CIDR block (e.g. 203.0.113.0/24)";
        }
        var address = v[..slash];
        var bits = v[(slash + 1)..];
        if (Validation.IpAddress(address) is not null || !IPAddress.TryParse(address, out var ip))
        {
            return "bad CIDR range: the address part is not an IP address";
        }
        var max = ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128;
        if (bits.Length == 0 || bits.Length > 3 || !bits.All(char.IsAsciiDigit) || (bits.Length > 1 && bits[0] == '0') || int.Parse(bits, System.Globalization.CultureInfo.InvariantCulture) > max)
        {
            return $"bad CIDR range: the prefix length must be a number from 0 to {max}";
        }
        return null;
    }

    /// <summary>A port as a string (the API's type): a number from 1 to 65535.</summary>
    internal static string? PolicyPort(string v)
    {
        if (v.Length is 0 or > 5 || !v.All(char.IsAsciiDigit)) return "bad port: must be a number from 1 to 65535";
        var n = int.Parse(v, System.Globalization.CultureInfo.InvariantCulture);
        return n is >= 1 and <= 65535 ? null : "bad port: must be a number from 1 to 65535";
    }

    private static string? PathTemplate(string v) =>
        (v.Contains("{*}", StringComparison.Ordinal) || v.Contains("{**}", StringComparison.Ordinal)) && UnsupportedPathTemplate().IsMatch(v)
            ? "invalid or unsupported path template"
            : null;

    /// <summary><c>sa</c> (in the policy's namespace) or <c>ns/sa</c>.</summary>
    private static string? ServiceAccountRef(string v)
    {
        var parts = v.Split('/');
        if (parts.Length > 2) return "must be a service account name or namespace/name";
        foreach (var p in parts)
        {
            if (Validation.Dns1123Subdomain(p) is { } problem) return problem;
        }
        return null;
    }

    /// <summary>
    /// The keys of Istio's "Authorization Policy Conditions" page (pkg/config/security ValidateAttribute): null for a
    /// key Istio accepts, else why it does not.
    /// </summary>
    internal static string? ConditionKeyProblem(string key)
    {
        switch (key)
        {
            case "source.ip" or "remote.ip" or "source.namespace" or "source.principal" or "source.serviceAccount"
                or "request.auth.principal" or "request.auth.audiences" or "request.auth.presenter"
                or "destination.ip" or "destination.port" or "connection.sni":
                return null;
            case "destination.namespace":
                return "attribute destination.namespace is replaced by the metadata.namespace";
            case "destination.name" or "destination.user":
                return $"deprecated attribute {key}: only supported in v1alpha1";
        }
        if (key.StartsWith("destination.labels", StringComparison.Ordinal)) return $"attribute {key} is replaced by the workload selector";
        if (key.StartsWith("request.headers", StringComparison.Ordinal) || key.StartsWith("request.auth.claims", StringComparison.Ordinal)
            || key.StartsWith("experimental.envoy.filters.", StringComparison.Ordinal))
        {
            var open = key.IndexOf('[', StringComparison.Ordinal);
            return key.EndsWith(']') && open > 0 && open < key.Length - 2 ? null : $"bad key ({key}): should have format a[b]";
        }
        return "unknown attribute (see Istio's Authorization Policy Conditions for the supported keys)";
    }

    private static Func<string, string?>? ConditionValueCheck(string key) => key switch
    {
        "source.ip" or "remote.ip" or "destination.ip" => IpBlock,
        "destination.port" => PolicyPort,
        _ => null,
    };
}
