using System.Globalization;
using Ambient.Core.Config;
using Ambient.Core.Protos.Waypoint;
using Ambient.Hbone.Telemetry;

namespace Ambient.Config.Yaml;

// HTTPRoute (gateway.networking.k8s.io/v1), the whole object, into the route.proto form the waypoint runs: every
// OpenAPI and CEL rule of apis/v1/httproute_types.go and shared_types.go is checked with the CRD's message, and the
// API's defaults are applied here so nothing downstream re-derives them.
internal static partial class ManifestParser
{
    private const int MaxParentRefs = 32;
    private const int MaxHostnames = 16;
    private const int MaxRules = 16;
    private const int MaxMatchesPerRule = 64;
    private const int MaxMatchesPerRoute = 128;
    private const int MaxFilters = 16;
    private const int MaxBackendRefs = 16;
    private const int MaxHeaderMatches = 16;
    private const int MaxHeaderModifications = 16;
    private const int MaxPathLength = 1024;
    private const int MaxHeaderValueLength = 4096;
    private const int MaxQueryValueLength = 1024;
    private const int MaxWeight = 1_000_000;

    private const string GatewayGroup = "gateway.networking.k8s.io";
    private const string InvalidKindReason = "InvalidKind";

    private static readonly string[] Methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    private static readonly string[] FilterFields =
        ["requestHeaderModifier", "responseHeaderModifier", "requestMirror", "requestRedirect", "urlRewrite", "cors", "extensionRef", "externalAuth"];

    private static readonly string[] RfcTimestampFormats =
        ["yyyy-MM-dd'T'HH:mm:ssK", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK", "yyyy-MM-dd't'HH:mm:ssK", "yyyy-MM-dd't'HH:mm:ss.FFFFFFFK"];

    private static HttpRouteResource? ReadHttpRoute(
        DocumentContext ctx, YamlMapping root, YamlMapping meta, string prefix, string apiVersion, ObjectMeta metadata, SourceLocation source)
    {
        var errorsBefore = ctx.Errors.Count;
        var metaPath = DocumentContext.Field(prefix, "metadata");
        var route = new HTTPRoute { Namespace = metadata.Namespace, Name = metadata.Name };
        var created = ctx.Str(meta, "creationTimestamp", metaPath, check: static v =>
            DateTimeOffset.TryParseExact(v, RfcTimestampFormats, CultureInfo.InvariantCulture, DateTimeStyles.None, out _)
                ? null
                : "must be an RFC 3339 timestamp (e.g. '2024-01-02T15:04:05Z')");
        if (created is not null)
        {
            route.CreationTimestampMs = DateTimeOffset.ParseExact(created, RfcTimestampFormats, CultureInfo.InvariantCulture, DateTimeStyles.None)
                .ToUnixTimeMilliseconds();
        }
        route.Generation = ctx.IntInRange(meta, "generation", metaPath, 0, long.MaxValue) ?? 0;

        var specPath = DocumentContext.Field(prefix, "spec");
        var spec = ctx.Map(root.Get("spec"), specPath, root.Line, required: true);
        if (spec is null) return null;

        ReadParentRefs(ctx, spec, specPath, route);

        route.Hostnames.AddRange(ReadStrings(ctx, spec, "hostnames", specPath, MaxHostnames, Validation.GatewayHostname, unique: false));

        var rulesPath = DocumentContext.Field(specPath, "rules");
        var rules = ctx.Seq(spec.Get("rules"), rulesPath, spec.Line);
        if (rules is null || rules.Items.Count == 0)
        {
            // +kubebuilder:default: one rule matching every request (without backendRefs: a 500 on a Gateway parent, the
            // parent Service itself on a Service parent).
            route.Rules.Add(new HTTPRouteRule { Matches = { DefaultMatch() } });
        }
        else if (WithinMaxItems(ctx, rules, rulesPath, MaxRules))
        {
            var ruleNames = new HashSet<string>(StringComparer.Ordinal);
            var totalMatches = 0;
            for (int i = 0; i < rules.Items.Count; i++)
            {
                var path = DocumentContext.Index(rulesPath, i);
                var r = ctx.Map(rules.Items[i], path, rules.Line, required: true);
                if (r is null) continue;
                var rule = ReadRule(ctx, r, path, metadata.Namespace);
                if (rule is null) continue;
                if (rule.Name.Length > 0 && !ruleNames.Add(rule.Name))
                {
                    ctx.Error(r.Get("name")!.Line, rulesPath, "Invalid value: rule name must be unique within the route: " + LogText.Clip(rule.Name));
                }
                totalMatches += rule.Matches.Count;
                route.Rules.Add(rule);
            }
            if (totalMatches > MaxMatchesPerRoute)
            {
                ctx.Error(rules.Line, rulesPath,
                    $"Invalid value: {totalMatches} matches: While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than {MaxMatchesPerRoute}");
            }
        }
        return ctx.Errors.Count == errorsBefore ? new HttpRouteResource(apiVersion, metadata, source, route) : null;
    }

    private static HTTPRouteMatch DefaultMatch() => new() { Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" } };

    private static void ReadParentRefs(DocumentContext ctx, YamlMapping spec, string specPath, HTTPRoute route)
    {
        var refsPath = DocumentContext.Field(specPath, "parentRefs");
        var refs = ctx.Seq(spec.Get("parentRefs"), refsPath, spec.Line);
        if (refs is null || !WithinMaxItems(ctx, refs, refsPath, MaxParentRefs)) return;
        for (int i = 0; i < refs.Items.Count; i++)
        {
            var path = DocumentContext.Index(refsPath, i);
            var p = ctx.Map(refs.Items[i], path, refs.Line, required: true);
            if (p is null) continue;
            var group = ctx.StrOrEmpty(p, "group", path, Validation.GatewayGroup) ?? GatewayGroup;
            var kind = ctx.Str(p, "kind", path, check: Validation.GatewayKind) ?? "Gateway";
            var ns = ctx.Str(p, "namespace", path, check: Validation.Dns1123Label) ?? route.Namespace;
            var name = ctx.Str(p, "name", path, required: true, check: Validation.ObjectName);
            var section = ctx.Str(p, "sectionName", path, check: Validation.SectionName);
            var port = ctx.IntInRange(p, "port", path, 1, 65535);
            if (name is null) continue;
            var parent = new ParentReference { Group = group, Kind = kind, Namespace = ns, Name = name, SectionName = section ?? "", Port = (uint)(port ?? 0) };

            // CEL on parentRefs: several references to one parent must each name a distinct section or port, and
            // all of them must use the same combination of those two fields.
            foreach (var other in route.ParentRefs)
            {
                if (other.Group != group || other.Kind != kind || other.Namespace != ns || other.Name != name) continue;
                if ((other.SectionName.Length > 0) != (parent.SectionName.Length > 0) || (other.Port != 0) != (parent.Port != 0))
                {
                    ctx.Error(p.Line, refsPath, "Invalid value: sectionName or port must be specified when parentRefs includes 2 or more references to the same parent");
                }
                else if (other.SectionName == parent.SectionName && other.Port == parent.Port)
                {
                    ctx.Error(p.Line, refsPath, "Invalid value: sectionName or port must be unique when parentRefs includes 2 or more references to the same parent");
                }
            }
            route.ParentRefs.Add(parent);
        }
    }

    private static HTTPRouteRule? ReadRule(DocumentContext ctx, YamlMapping r, string path, string routeNamespace)
    {
        var errorsBefore = ctx.Errors.Count;
        var rule = new HTTPRouteRule { Name = ctx.Str(r, "name", path, check: Validation.SectionName) ?? "" };

        var matchesPath = DocumentContext.Field(path, "matches");
        var matches = ctx.Seq(r.Get("matches"), matchesPath, r.Line);
        if (matches is null || matches.Items.Count == 0)
        {
            rule.Matches.Add(DefaultMatch());
        }
        else if (WithinMaxItems(ctx, matches, matchesPath, MaxMatchesPerRule))
        {
            for (int i = 0; i < matches.Items.Count; i++)
            {
                var mPath = DocumentContext.Index(matchesPath, i);
                var m = ctx.Map(matches.Items[i], mPath, matches.Line, required: true);
                if (m is not null && ReadMatch(ctx, m, mPath) is { } match) rule.Matches.Add(match);
            }
        }

        var filters = ReadFilters(ctx, r, path, routeNamespace, out var ruleUsesPrefixReplace);
        if (filters is not null) rule.Filters.AddRange(filters);

        var backendsPath = DocumentContext.Field(path, "backendRefs");
        var backends = ctx.Seq(r.Get("backendRefs"), backendsPath, r.Line);
        var backendUsesPrefixReplace = false;
        if (backends is not null && WithinMaxItems(ctx, backends, backendsPath, MaxBackendRefs))
        {
            for (int i = 0; i < backends.Items.Count; i++)
            {
                var bPath = DocumentContext.Index(backendsPath, i);
                var b = ctx.Map(backends.Items[i], bPath, backends.Line, required: true);
                if (b is null) continue;
                var backendRef = ReadBackendObjectRef(ctx, b, bPath, routeNamespace);
                var weight = ctx.IntInRange(b, "weight", bPath, 0, MaxWeight) ?? 1;
                var backendFilters = ReadFilters(ctx, b, bPath, routeNamespace, out var prefixReplace);
                backendUsesPrefixReplace |= prefixReplace;
                if (backendRef is null || backendFilters is null) continue;
                var backend = new HTTPBackendRef { BackendRef = backendRef, Weight = (uint)weight, Filters = { backendFilters } };
                // Not an error: the spec keeps the route and answers 500 for this backend's share of requests.
                if (!(backendRef.Group.Length == 0 && backendRef.Kind == "Service")) backend.InvalidReason = InvalidKindReason;
                rule.BackendRefs.Add(backend);
            }
        }

        if (backends is { Items.Count: > 0 } && rule.Filters.Any(static f => f.Type == HTTPRouteFilterType.RequestRedirect))
        {
            ctx.Error(r.Line, path, "Invalid value: RequestRedirect filter must not be used together with backendRefs");
        }
        if ((ruleUsesPrefixReplace || backendUsesPrefixReplace)
            && (rule.Matches.Count != 1 || rule.Matches[0].Path.Type != PathMatchType.PathPrefix))
        {
            ctx.Error(r.Line, path, (backendUsesPrefixReplace && !ruleUsesPrefixReplace ? "Invalid value: within backendRefs, when" : "Invalid value: when")
                + " using a RequestRedirect or URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified");
        }

        var timeoutsPath = DocumentContext.Field(path, "timeouts");
        if (ctx.Map(r.Get("timeouts"), timeoutsPath, r.Line) is { } t)
        {
            var timeouts = new HTTPRouteTimeouts();
            if (ReadDuration(ctx, t, "request", timeoutsPath) is { } request) timeouts.RequestMs = request;
            if (ReadDuration(ctx, t, "backendRequest", timeoutsPath) is { } backend) timeouts.BackendRequestMs = backend;
            if (timeouts.HasRequestMs && timeouts.HasBackendRequestMs && timeouts.RequestMs != 0 && timeouts.BackendRequestMs > timeouts.RequestMs)
            {
                ctx.Error(t.Line, timeoutsPath, "Invalid value: backendRequest timeout cannot be longer than request timeout");
            }
            rule.Timeouts = timeouts;
        }

        var retryPath = DocumentContext.Field(path, "retry");
        if (ctx.Map(r.Get("retry"), retryPath, r.Line) is { } rt)
        {
            var retry = new HTTPRouteRetry();
            var codesPath = DocumentContext.Field(retryPath, "codes");
            if (ctx.Seq(rt.Get("codes"), codesPath, rt.Line) is { } codes)
            {
                for (int i = 0; i < codes.Items.Count; i++)
                {
                    var cPath = DocumentContext.Index(codesPath, i);
                    var node = codes.Items[i];
                    if (node is not YamlScalar { Kind: ScalarKind.Int } s || !YamlDocumentReader.TryParseInt(s.Value, out var code))
                    {
                        ctx.Error(node.Line, cPath, $"must be an integer, not {node.Describe()}");
                    }
                    else if (code is < 400 or > 599)
                    {
                        ctx.Error(node.Line, cPath, $"Invalid value: {code}: must be between 400 and 599, inclusive");
                    }
                    else if (retry.Codes.Contains((uint)code))
                    {
                        ctx.Error(node.Line, cPath, $"Duplicate value: {code}");
                    }
                    else
                    {
                        retry.Codes.Add((uint)code);
                    }
                }
            }
            if (ctx.IntInRange(rt, "attempts", retryPath, 0, int.MaxValue) is { } attempts) retry.Attempts = (uint)attempts;
            if (ReadDuration(ctx, rt, "backoff", retryPath) is { } backoff) retry.BackoffMs = backoff;
            rule.Retry = retry;
        }
        return ctx.Errors.Count == errorsBefore ? rule : null;
    }

    private static HTTPRouteMatch? ReadMatch(DocumentContext ctx, YamlMapping m, string path)
    {
        var errorsBefore = ctx.Errors.Count;
        var match = new HTTPRouteMatch();
        var pathPath = DocumentContext.Field(path, "path");
        var p = ctx.Map(m.Get("path"), pathPath, m.Line);
        if (p is null)
        {
            match.Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" };
        }
        else
        {
            var type = ctx.Str(p, "type", pathPath, check: static v => v is "Exact" or "PathPrefix" or "RegularExpression"
                ? null
                : "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']") ?? "PathPrefix";
            var value = ctx.Str(p, "value", pathPath, check: static v => v.Length > MaxPathLength ? $"must be no more than {MaxPathLength} characters" : null) ?? "/";
            var problem = type == "RegularExpression" ? Validation.RegularExpression(value) : Validation.AbsolutePath(value);
            if (problem is not null) ctx.Error(p.Get("value")?.Line ?? p.Line, DocumentContext.Field(pathPath, "value"), $"Invalid value: \"{LogText.Clip(value)}\": {problem}");
            match.Path = new HTTPPathMatch
            {
                Type = type switch { "Exact" => PathMatchType.Exact, "RegularExpression" => PathMatchType.RegularExpression, _ => PathMatchType.PathPrefix },
                Value = value,
            };
        }

        // Header names compare case-insensitively: sent lower-cased, and (as the spec says) an entry whose name
        // repeats an earlier one's in another case is ignored. The same name twice is a listMapKey violation.
        foreach (var (name, type, value) in ReadValueMatches(ctx, m, "headers", path, MaxHeaderValueLength, caseInsensitive: true))
        {
            match.Headers.Add(new HTTPHeaderMatch { Name = name.ToLowerInvariant(), Type = type, Value = value });
        }
        foreach (var (name, type, value) in ReadValueMatches(ctx, m, "queryParams", path, MaxQueryValueLength, caseInsensitive: false))
        {
            match.QueryParams.Add(new HTTPQueryParamMatch { Name = name, Type = type, Value = value });
        }
        match.Method = ctx.Str(m, "method", path, check: static v => Array.IndexOf(Methods, v) >= 0
            ? null
            : "supported values: \"GET\", \"HEAD\", \"POST\", \"PUT\", \"DELETE\", \"CONNECT\", \"OPTIONS\", \"TRACE\", \"PATCH\"") ?? "";
        return ctx.Errors.Count == errorsBefore ? match : null;
    }

    private static List<(string Name, HeaderMatchType Type, string Value)> ReadValueMatches(
        DocumentContext ctx, YamlMapping m, string key, string parentPath, int maxValueLength, bool caseInsensitive)
    {
        var result = new List<(string, HeaderMatchType, string)>();
        var listPath = DocumentContext.Field(parentPath, key);
        var seq = ctx.Seq(m.Get(key), listPath, m.Line);
        if (seq is null || !WithinMaxItems(ctx, seq, listPath, MaxHeaderMatches)) return result;
        var exact = new HashSet<string>(StringComparer.Ordinal);
        var equivalent = new HashSet<string>(caseInsensitive ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
        for (int i = 0; i < seq.Items.Count; i++)
        {
            var path = DocumentContext.Index(listPath, i);
            var h = ctx.Map(seq.Items[i], path, seq.Line, required: true);
            if (h is null) continue;
            var type = ctx.Str(h, "type", path, check: static v => v is "Exact" or "RegularExpression"
                ? null
                : "supported values: \"Exact\", \"RegularExpression\"") ?? "Exact";
            var name = ctx.Str(h, "name", path, required: true, check: Validation.HeaderName);
            var value = ctx.Str(h, "value", path, required: true, check: v => v.Length > maxValueLength ? $"must be no more than {maxValueLength} characters" : null);
            if (name is null || value is null) continue;
            if (type == "RegularExpression" && Validation.RegularExpression(value) is { } problem)
            {
                ctx.Error(h.Get("value")!.Line, DocumentContext.Field(path, "value"), $"Invalid value: \"{LogText.Clip(value)}\": {problem}");
                continue;
            }
            if (!exact.Add(name))
            {
                ctx.Error(h.Get("name")!.Line, DocumentContext.Field(path, "name"), $"Duplicate value: \"{LogText.Clip(name)}\"");
                continue;
            }
            if (!equivalent.Add(name)) continue;
            result.Add((name, type == "Exact" ? HeaderMatchType.HeaderExact : HeaderMatchType.HeaderRegularExpression, value));
        }
        return result;
    }

    /// <summary>
    /// The <c>filters</c> of a rule or of a backendRef; null when any is invalid. <paramref name="usesPrefixReplace"/>
    /// tells the caller to check the rule's matches (ReplacePrefixMatch needs exactly one PathPrefix match).
    /// </summary>
    private static List<HTTPRouteFilter>? ReadFilters(DocumentContext ctx, YamlMapping parent, string parentPath, string routeNamespace, out bool usesPrefixReplace)
    {
        usesPrefixReplace = false;
        var errorsBefore = ctx.Errors.Count;
        var result = new List<HTTPRouteFilter>();
        var listPath = DocumentContext.Field(parentPath, "filters");
        var seq = ctx.Seq(parent.Get("filters"), listPath, parent.Line);
        if (seq is null) return result;
        if (!WithinMaxItems(ctx, seq, listPath, MaxFilters)) return null;
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < seq.Items.Count; i++)
        {
            var path = DocumentContext.Index(listPath, i);
            var f = ctx.Map(seq.Items[i], path, seq.Line, required: true);
            if (f is null) continue;
            var type = ctx.Str(f, "type", path, required: true);
            if (type is null) continue;
            seen[type] = seen.GetValueOrDefault(type) + 1;
            if (ReadFilter(ctx, f, path, type, routeNamespace, ref usesPrefixReplace) is { } filter) result.Add(filter);
        }
        foreach (var once in (ReadOnlySpan<string>)["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"])
        {
            if (seen.GetValueOrDefault(once) > 1) ctx.Error(seq.Line, listPath, $"Invalid value: {once} filter cannot be repeated");
        }
        if (seen.ContainsKey("RequestRedirect") && seen.ContainsKey("URLRewrite"))
        {
            ctx.Error(seq.Line, listPath, "Invalid value: May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both");
        }
        return ctx.Errors.Count == errorsBefore ? result : null;
    }

    private static HTTPRouteFilter? ReadFilter(
        DocumentContext ctx, YamlMapping f, string path, string type, string routeNamespace, ref bool usesPrefixReplace)
    {
        var (filterType, field) = type switch
        {
            "RequestHeaderModifier" => (HTTPRouteFilterType.RequestHeaderModifier, "requestHeaderModifier"),
            "ResponseHeaderModifier" => (HTTPRouteFilterType.ResponseHeaderModifier, "responseHeaderModifier"),
            "RequestRedirect" => (HTTPRouteFilterType.RequestRedirect, "requestRedirect"),
            "URLRewrite" => (HTTPRouteFilterType.UrlRewrite, "urlRewrite"),
            "RequestMirror" => (HTTPRouteFilterType.RequestMirror, "requestMirror"),
            _ => (HTTPRouteFilterType.FilterUnspecified, null),
        };
        var typePath = DocumentContext.Field(path, "type");
        if (field is null)
        {
            var message = type is "ExtensionRef" or "CORS" or "ExternalAuth"
                ? $"Unsupported value: \"{LogText.Clip(type)}\": the {type} filter is not supported by this mesh; supported filters: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror"
                : $"Unsupported value: \"{LogText.Clip(type)}\": supported values: \"RequestHeaderModifier\", \"ResponseHeaderModifier\", \"RequestMirror\", \"RequestRedirect\", \"URLRewrite\", \"ExtensionRef\", \"CORS\"";
            ctx.Error(f.Get("type")!.Line, typePath, message);
            return null;
        }
        // CEL: the filter carries exactly the field of its type.
        var ok = true;
        foreach (var other in FilterFields)
        {
            if (other == field || f.Get(other) is null or YamlScalar { Kind: ScalarKind.Null }) continue;
            ctx.Error(f.Get(other)!.Line, DocumentContext.Field(path, other), $"Invalid value: filter.{other} must be nil if the filter.type is not {UpperFirst(other)}");
            ok = false;
        }
        var bodyPath = DocumentContext.Field(path, field);
        var body = ctx.Map(f.Get(field), bodyPath, f.Line);
        if (body is null)
        {
            if (f.Get(field) is null or YamlScalar { Kind: ScalarKind.Null }) ctx.Error(f.Line, bodyPath, $"Required value: filter.{field} must be specified for {type} filter.type");
            return null;
        }
        var filter = new HTTPRouteFilter { Type = filterType };
        switch (filterType)
        {
            case HTTPRouteFilterType.RequestHeaderModifier:
                filter.RequestHeaderModifier = ReadHeaderFilter(ctx, body, bodyPath);
                break;
            case HTTPRouteFilterType.ResponseHeaderModifier:
                filter.ResponseHeaderModifier = ReadHeaderFilter(ctx, body, bodyPath);
                break;
            case HTTPRouteFilterType.RequestRedirect:
                filter.RequestRedirect = ReadRedirect(ctx, body, bodyPath, ref usesPrefixReplace);
                break;
            case HTTPRouteFilterType.UrlRewrite:
                var rewrite = new HTTPURLRewriteFilter { Hostname = ctx.Str(body, "hostname", bodyPath, check: Validation.PreciseHostname) ?? "" };
                if (ReadPathModifier(ctx, body, bodyPath, ref usesPrefixReplace) is { } rewritePath) rewrite.Path = rewritePath;
                filter.UrlRewrite = rewrite;
                break;
            case HTTPRouteFilterType.RequestMirror:
                filter.RequestMirror = ReadMirror(ctx, body, bodyPath, routeNamespace);
                break;
        }
        return ok ? filter : null;
    }

    private static string UpperFirst(string field) => field switch
    {
        "urlRewrite" => "URLRewrite",
        "cors" => "CORS",
        _ => char.ToUpperInvariant(field[0]) + field[1..],
    };

    private static HTTPHeaderFilter ReadHeaderFilter(DocumentContext ctx, YamlMapping body, string path)
    {
        var filter = new HTTPHeaderFilter();
        foreach (var key in (ReadOnlySpan<string>)["set", "add"])
        {
            var listPath = DocumentContext.Field(path, key);
            var seq = ctx.Seq(body.Get(key), listPath, body.Line);
            if (seq is null || !WithinMaxItems(ctx, seq, listPath, MaxHeaderModifications)) continue;
            var target = key == "set" ? filter.Set : filter.Add;
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < seq.Items.Count; i++)
            {
                var hPath = DocumentContext.Index(listPath, i);
                var h = ctx.Map(seq.Items[i], hPath, seq.Line, required: true);
                if (h is null) continue;
                var name = ctx.Str(h, "name", hPath, required: true, check: Validation.HeaderName);
                var value = ctx.Str(h, "value", hPath, required: true,
                    check: static v => v.Length > MaxHeaderValueLength ? $"must be no more than {MaxHeaderValueLength} characters" : null);
                if (name is null || value is null) continue;
                if (!names.Add(name))
                {
                    ctx.Error(h.Get("name")!.Line, DocumentContext.Field(hPath, "name"), $"Duplicate value: \"{LogText.Clip(name)}\"");
                    continue;
                }
                target.Add(new HTTPHeader { Name = name, Value = value });
            }
        }
        filter.Remove.AddRange(ReadStrings(ctx, body, "remove", path, MaxHeaderModifications, check: null, unique: true));
        return filter;
    }

    private static HTTPRequestRedirectFilter ReadRedirect(DocumentContext ctx, YamlMapping body, string path, ref bool usesPrefixReplace)
    {
        var redirect = new HTTPRequestRedirectFilter
        {
            Scheme = ctx.Str(body, "scheme", path, check: static v => v is "http" or "https" ? null : "supported values: \"http\", \"https\"") ?? "",
            Hostname = ctx.Str(body, "hostname", path, check: Validation.PreciseHostname) ?? "",
            Port = (uint)(ctx.IntInRange(body, "port", path, 1, 65535) ?? 0),
            StatusCode = 302,
        };
        if (ctx.Int(body, "statusCode", path) is { } code)
        {
            if (code is 301 or 302 or 303 or 307 or 308) redirect.StatusCode = (uint)code;
            else ctx.Error(body.Get("statusCode")!.Line, DocumentContext.Field(path, "statusCode"), $"Unsupported value: {code}: supported values: \"301\", \"302\", \"303\", \"307\", \"308\"");
        }
        if (ReadPathModifier(ctx, body, path, ref usesPrefixReplace) is { } modifier) redirect.Path = modifier;
        return redirect;
    }

    private static HTTPPathModifier? ReadPathModifier(DocumentContext ctx, YamlMapping parent, string parentPath, ref bool usesPrefixReplace)
    {
        var path = DocumentContext.Field(parentPath, "path");
        var m = ctx.Map(parent.Get("path"), path, parent.Line);
        if (m is null) return null;
        var type = ctx.Str(m, "type", path, required: true, check: static v => v is "ReplaceFullPath" or "ReplacePrefixMatch"
            ? null
            : "supported values: \"ReplaceFullPath\", \"ReplacePrefixMatch\"");
        Func<string, string?> lengthCheck = static v => v.Length > MaxPathLength ? $"must be no more than {MaxPathLength} characters" : null;
        var full = ctx.StrOrEmpty(m, "replaceFullPath", path, lengthCheck);
        var prefix = ctx.StrOrEmpty(m, "replacePrefixMatch", path, lengthCheck);
        if (type is null) return null;
        var ok = true;
        if (type == "ReplaceFullPath" && full is null) ok = Fail(ctx, m.Line, path, "replaceFullPath must be specified when type is set to 'ReplaceFullPath'");
        if (full is not null && type != "ReplaceFullPath") ok = Fail(ctx, m.Line, path, "type must be 'ReplaceFullPath' when replaceFullPath is set");
        if (type == "ReplacePrefixMatch" && prefix is null) ok = Fail(ctx, m.Line, path, "replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'");
        if (prefix is not null && type != "ReplacePrefixMatch") ok = Fail(ctx, m.Line, path, "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set");
        if (!ok) return null;
        if (type == "ReplacePrefixMatch")
        {
            usesPrefixReplace = true;
            return new HTTPPathModifier { Type = PathModifierType.ReplacePrefixMatch, ReplacePrefixMatch = prefix! };
        }
        return new HTTPPathModifier { Type = PathModifierType.ReplaceFullPath, ReplaceFullPath = full! };
    }

    private static bool Fail(DocumentContext ctx, int line, string path, string message)
    {
        ctx.Error(line, path, "Invalid value: " + message);
        return false;
    }

    private static HTTPRequestMirrorFilter ReadMirror(DocumentContext ctx, YamlMapping body, string path, string routeNamespace)
    {
        var mirror = new HTTPRequestMirrorFilter();
        var refPath = DocumentContext.Field(path, "backendRef");
        if (ctx.Map(body.Get("backendRef"), refPath, body.Line, required: true) is { } b
            && ReadBackendObjectRef(ctx, b, refPath, routeNamespace) is { } backendRef)
        {
            mirror.BackendRef = backendRef;
        }
        if (ctx.IntInRange(body, "percent", path, 0, 100) is { } percent) mirror.Percent = (uint)percent;
        var fractionPath = DocumentContext.Field(path, "fraction");
        if (ctx.Map(body.Get("fraction"), fractionPath, body.Line) is { } fr)
        {
            var numerator = ctx.IntInRange(fr, "numerator", fractionPath, 0, int.MaxValue, required: true);
            var denominator = ctx.IntInRange(fr, "denominator", fractionPath, 1, int.MaxValue) ?? 100;
            if (numerator is { } n)
            {
                if (n > denominator) ctx.Error(fr.Line, fractionPath, "Invalid value: numerator must be less than or equal to denominator");
                mirror.Fraction = new Fraction { Numerator = (uint)n, Denominator = (uint)denominator };
            }
            if (body.Get("percent") is not (null or YamlScalar { Kind: ScalarKind.Null }))
            {
                ctx.Error(body.Line, path, "Invalid value: Only one of percent or fraction may be specified in HTTPRequestMirrorFilter");
            }
        }
        return mirror;
    }

    /// <summary>A BackendObjectReference with the API's defaults: group "" (core), kind Service, the route's namespace.</summary>
    private static BackendRef? ReadBackendObjectRef(DocumentContext ctx, YamlMapping b, string path, string routeNamespace)
    {
        var group = ctx.StrOrEmpty(b, "group", path, Validation.GatewayGroup) ?? "";
        var kind = ctx.Str(b, "kind", path, check: Validation.GatewayKind) ?? "Service";
        var name = ctx.Str(b, "name", path, required: true, check: Validation.ObjectName);
        var ns = ctx.Str(b, "namespace", path, check: Validation.Dns1123Label) ?? routeNamespace;
        var port = ctx.IntInRange(b, "port", path, 1, 65535);
        if (group.Length == 0 && kind == "Service" && port is null && b.Get("port") is null or YamlScalar { Kind: ScalarKind.Null })
        {
            ctx.Error(b.Line, path, "Invalid value: Must have port for Service reference");
            return null;
        }
        return name is null ? null : new BackendRef { Group = group, Kind = kind, Namespace = ns, Name = name, Port = (uint)(port ?? 0) };
    }

    /// <summary>A list of strings with an OpenAPI MaxItems, each checked; <paramref name="unique"/> for a listType=set.</summary>
    private static List<string> ReadStrings(
        DocumentContext ctx, YamlMapping parent, string key, string parentPath, int maxItems, Func<string, string?>? check, bool unique)
    {
        var result = new List<string>();
        var listPath = DocumentContext.Field(parentPath, key);
        var seq = ctx.Seq(parent.Get(key), listPath, parent.Line);
        if (seq is null || !WithinMaxItems(ctx, seq, listPath, maxItems)) return result;
        for (int i = 0; i < seq.Items.Count; i++)
        {
            var path = DocumentContext.Index(listPath, i);
            var item = seq.Items[i];
            var value = ctx.AsString(item, path);
            if (value is null) continue;
            if (check?.Invoke(value) is { } problem) ctx.Error(item.Line, path, $"Invalid value: \"{LogText.Clip(value)}\": {problem}");
            else if (unique && result.Contains(value)) ctx.Error(item.Line, path, $"Duplicate value: \"{LogText.Clip(value)}\"");
            else result.Add(value);
        }
        return result;
    }

    private static ulong? ReadDuration(DocumentContext ctx, YamlMapping parent, string key, string parentPath)
    {
        var text = ctx.Str(parent, key, parentPath);
        if (text is null) return null;
        var ms = Validation.Duration(text, out var problem);
        if (problem is not null) ctx.Error(parent.Get(key)!.Line, DocumentContext.Field(parentPath, key), $"Invalid value: \"{LogText.Clip(text)}\": {problem}");
        return ms;
    }
}
