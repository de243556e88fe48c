using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Ambient.TestCommon.Kube;

/// <summary>How a <see cref="FakeKubeApiServer"/> starts.</summary>
public sealed record FakeKubeApiServerOptions
{
    /// <summary>Serve the Gateway API kinds from the start, as if their CRDs were installed.</summary>
    public bool GatewayApi { get; init; } = true;

    /// <summary>Serve the security.istio.io kinds from the start, as if Istio's CRDs were installed.</summary>
    public bool IstioSecurity { get; init; } = true;

    /// <summary>How often watches that asked for bookmarks get one; null = only when a test calls <see cref="FakeKubeApiServer.SendBookmarks"/>.</summary>
    public TimeSpan? BookmarkInterval { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>Who a bearer token is, for API calls and for TokenReview.</summary>
public sealed record FakeKubeUser(string Username, IReadOnlyList<string> Groups)
{
    public string Uid { get; init; } = Guid.NewGuid().ToString();

    /// <summary>The audiences the token was issued for; empty = the API server's own audience.</summary>
    public IReadOnlyList<string> Audiences { get; init; } = [];

    public IReadOnlyDictionary<string, IReadOnlyList<string>> Extra { get; init; } = new Dictionary<string, IReadOnlyList<string>>();
}

/// <summary>What an API request asks, for a test's authorizer.</summary>
public sealed record FakeKubeRequest(FakeKubeUser User, string Verb, KubeResourceType? Resource, string? Namespace, string? Name, string? Subresource);

/// <summary>
/// A Kubernetes API server for tests (no kube-apiserver runs on these machines): HTTPS on 127.0.0.1 with its own CA,
/// bearer-token authentication, an in-memory store with one global resourceVersion, and the apiserver's JSON for
/// discovery, list (selectors, limit/continue), watch (chunked JSON lines, bookmarks, 410 Gone from compacted history),
/// get/create/update/patch/delete, the status subresource, dryRun, CRDs and TokenReview. kubectl 1.32 and
/// KubernetesClient talk to it as to a real cluster; tests reach the store directly to seed objects and to break
/// watches (<see cref="DropWatches"/>, <see cref="Compact"/>, <see cref="ExpireWatches"/>).
/// </summary>
public sealed class FakeKubeApiServer : IAsyncDisposable
{
    /// <summary>The audience of tokens the API server itself accepts (a TokenReview without audiences asks for it).</summary>
    public const string ApiAudience = "https://kubernetes.default.svc.cluster.local";

    private static readonly JsonSerializerOptions CompactJson = new() { WriteIndented = false };

    private readonly LoopbackKestrel _kestrel;
    private readonly KubeStore _store;
    private readonly Lock _typesGate = new();
    private readonly List<KubeResourceType> _types = [];
    private readonly ConcurrentDictionary<string, FakeKubeUser> _tokens = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _bookmarks;

    private FakeKubeApiServer(LoopbackKestrel kestrel, KubeStore store, X509Certificate2 ca, FakeKubeApiServerOptions options)
    {
        _kestrel = kestrel;
        _store = store;
        CaCertificate = ca;
        _bookmarks = options.BookmarkInterval is { } interval ? SendBookmarksEvery(interval) : Task.CompletedTask;
    }

    /// <summary>https://127.0.0.1:port/ .</summary>
    public Uri BaseAddress => _kestrel.BaseAddress;

    /// <summary>The CA that issued the serving certificate (what a kubeconfig's certificate-authority-data holds).</summary>
    public X509Certificate2 CaCertificate { get; }

    /// <summary>A token for user "admin" in system:masters; every request with it is allowed.</summary>
    public string AdminToken { get; } = "admin-" + Guid.NewGuid().ToString("N");

    /// <summary>Decides API requests (not the admin's); null allows every authenticated request.</summary>
    public Func<FakeKubeRequest, bool>? Authorize { get; set; }

    /// <summary>"VERB path?query" of every request, in arrival order, for tests that assert on what a client asked.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>The current (latest) resourceVersion.</summary>
    public long ResourceVersion => _store.ResourceVersion;

    /// <summary>How many watch streams are open.</summary>
    public int OpenWatches => _store.WatchCount;

    public static async Task<FakeKubeApiServer> StartAsync(FakeKubeApiServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new FakeKubeApiServerOptions();
        var ca = TestCertificates.CreateRoot("fake-kube-ca");
        using var serving = TestCertificates.IssueServer(ca, "localhost", "kubernetes", "kubernetes.default.svc");
        FakeKubeApiServer? server = null;
        var store = new KubeStore((type, before, after) => server!.OnStoreChange(type, before, after));
        var kestrel = await LoopbackKestrel.StartAsync(
            endpoints => endpoints.Map("/{**path}", context => server!.HandleAsync(context)),
            new LoopbackKestrelOptions
            {
                Protocols = HttpProtocols.Http1AndHttp2,
                ServerCertificate = X509CertificateLoader.LoadPkcs12(serving.Export(X509ContentType.Pkcs12), null),
                MinimumLogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
            },
            cancellationToken).ConfigureAwait(false);
        server = new FakeKubeApiServer(kestrel, store, ca, options);
        server._tokens[server.AdminToken] = new FakeKubeUser("admin", ["system:masters", "system:authenticated"]);
        server.RegisterTypes(KubeResourceType.BuiltIn);
        if (options.GatewayApi)
        {
            server.RegisterTypes(KubeResourceType.GatewayApi);
        }
        if (options.IstioSecurity)
        {
            server.RegisterTypes(KubeResourceType.IstioSecurity);
        }
        foreach (var ns in (ReadOnlySpan<string>)["default", "kube-system", "kube-public", "kube-node-lease"])
        {
            server.Put(new JsonObject { ["apiVersion"] = "v1", ["kind"] = "Namespace", ["metadata"] = new JsonObject { ["name"] = ns } });
        }
        return server;
    }

    // ---- Test-facing API ----

    /// <summary>Serves more kinds (as installing their CRDs would).</summary>
    public void RegisterTypes(IEnumerable<KubeResourceType> types)
    {
        lock (_typesGate)
        {
            foreach (var type in types)
            {
                _types.RemoveAll(t => t.Key == type.Key);
                _types.Add(type);
            }
        }
    }

    /// <summary>A bearer token for a user (API calls authenticate as it; TokenReview reports it).</summary>
    public string AddToken(FakeKubeUser user, string? token = null)
    {
        token ??= "token-" + Guid.NewGuid().ToString("N");
        _tokens[token] = user;
        return token;
    }

    /// <summary>
    /// A projected service-account token as the kubelet mounts it: TokenReview answers with
    /// system:serviceaccount:NS:SA, its groups, and the pod-bound extras (pod-name, pod-uid, node-name).
    /// </summary>
    public string AddServiceAccountToken(string ns, string serviceAccount, IReadOnlyList<string> audiences,
        string? podName = null, string? podUid = null, string? nodeName = null, string? token = null)
    {
        var extra = new Dictionary<string, IReadOnlyList<string>>();
        if (podName is not null)
        {
            extra["authentication.kubernetes.io/pod-name"] = [podName];
            extra["authentication.kubernetes.io/pod-uid"] = [podUid ?? Guid.NewGuid().ToString()];
        }
        if (nodeName is not null)
        {
            extra["authentication.kubernetes.io/node-name"] = [nodeName];
        }
        return AddToken(new FakeKubeUser($"system:serviceaccount:{ns}:{serviceAccount}",
            ["system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"]) { Audiences = audiences, Extra = extra }, token);
    }

    public void RemoveToken(string token) => _tokens.TryRemove(token, out _);

    /// <summary>Stores an object as given, status included, creating or replacing it (a test's seeding, no admission).</summary>
    public JsonObject Put(JsonObject obj)
    {
        var type = TypeOf(obj);
        var name = obj["metadata"]?["name"]?.GetValue<string>() ?? throw new ArgumentException("metadata.name is required");
        var ns = type.Namespaced ? obj["metadata"]?["namespace"]?.GetValue<string>() ?? "default" : null;
        var stored = _store.Mutate(type, ns, name, dryRun: false, (current, _) =>
        {
            var next = (JsonObject)obj.DeepClone();
            FillMetadata(next, type, ns, current);
            return next;
        })!;
        return Parse(stored.Json);
    }

    /// <summary>Parses YAML-free JSON text and <see cref="Put(JsonObject)"/>s it.</summary>
    public JsonObject Put(string json) => Put(JsonNode.Parse(json)!.AsObject());

    /// <summary>The stored object, or null.</summary>
    public JsonObject? Get(string apiVersion, string kind, string? ns, string name)
    {
        var type = TypeOf(apiVersion, kind);
        return _store.Get(type, type.Namespaced ? ns ?? "default" : null, name) is { } obj ? Parse(obj.Json) : null;
    }

    /// <summary>Deletes an object (no finalizers, no grace); false when it did not exist.</summary>
    public bool Delete(string apiVersion, string kind, string? ns, string name)
    {
        var type = TypeOf(apiVersion, kind);
        return _store.Mutate(type, type.Namespaced ? ns ?? "default" : null, name, dryRun: false, (_, _) => null) is not null;
    }

    /// <summary>Queues a BOOKMARK on every watch that allowed them.</summary>
    public void SendBookmarks() => _store.Bookmark();

    /// <summary>Cuts every open watch connection (as a network failure); returns how many.</summary>
    public int DropWatches() => _store.DropWatches();

    /// <summary>Forgets history: watches from an older resourceVersion then get 410 Gone, as after etcd compaction.</summary>
    public void Compact() => _store.Compact();

    /// <summary>Ends every open watch with an ERROR event carrying Status 410 (too old resource version).</summary>
    public void ExpireWatches() => _store.ExpireWatches();

    /// <summary>Writes a kubeconfig for this server (context and cluster named <paramref name="contextName"/>) and returns its path.</summary>
    public string WriteKubeconfig(string path, string contextName = "fake", string? token = null, string? defaultNamespace = null)
    {
        var ca = Convert.ToBase64String(Encoding.ASCII.GetBytes(CaCertificate.ExportCertificatePem()));
        var server = BaseAddress.ToString().TrimEnd('/');
        var text = $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: {contextName}
              cluster:
                server: {server}
                certificate-authority-data: {ca}
            contexts:
            - name: {contextName}
              context:
                cluster: {contextName}
                user: {contextName}-user
            {(defaultNamespace is null ? "" : "    namespace: " + defaultNamespace)}
            current-context: {contextName}
            users:
            - name: {contextName}-user
              user:
                token: {token ?? AdminToken}

            """;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>A KubernetesClient for this server (admin unless <paramref name="token"/> says otherwise).</summary>
    public Kubernetes CreateClient(string? token = null) => new(new KubernetesClientConfiguration
    {
        Host = BaseAddress.ToString().TrimEnd('/'),
        AccessToken = token ?? AdminToken,
        SslCaCerts = [X509CertificateLoader.LoadCertificate(CaCertificate.RawData)],
    });

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        _store.DropWatches();
        await _bookmarks.ConfigureAwait(false);
        await _kestrel.DisposeAsync().ConfigureAwait(false);
        CaCertificate.Dispose();
        _stopping.Dispose();
    }

    private async Task SendBookmarksEvery(TimeSpan interval)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                _store.Bookmark();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    // ---- Types ----

    private KubeResourceType TypeOf(JsonObject obj) =>
        TypeOf(obj["apiVersion"]?.GetValue<string>() ?? throw new ArgumentException("apiVersion is required"),
            obj["kind"]?.GetValue<string>() ?? throw new ArgumentException("kind is required"));

    private KubeResourceType TypeOf(string apiVersion, string kind)
    {
        lock (_typesGate)
        {
            foreach (var type in _types)
            {
                if (type.ApiVersion == apiVersion && type.Kind == kind)
                {
                    return type;
                }
            }
        }
        throw new ArgumentException($"no kind \"{kind}\" is registered for version \"{apiVersion}\"");
    }

    private KubeResourceType? FindType(string group, string version, string resource)
    {
        lock (_typesGate)
        {
            foreach (var type in _types)
            {
                if (type.Group == group && type.Version == version && type.Resource == resource)
                {
                    return type;
                }
            }
        }
        return null;
    }

    private List<KubeResourceType> TypesSnapshot()
    {
        lock (_typesGate)
        {
            return [.. _types];
        }
    }

    // Follows CRDs (served kinds appear and disappear with them) and namespaces (their objects go with them).
    private void OnStoreChange(KubeResourceType type, StoredObject? before, StoredObject? after)
    {
        if (type.Resource == "customresourcedefinitions")
        {
            if (before is not null)
            {
                var gone = CrdTypes(before.Node);
                lock (_typesGate)
                {
                    _types.RemoveAll(t => gone.Any(g => g.Key == t.Key));
                }
                if (after is null)
                {
                    foreach (var t in gone)
                    {
                        _store.DeleteAll(t);
                    }
                }
            }
            if (after is not null)
            {
                RegisterTypes(CrdTypes(after.Node));
            }
        }
        else if (type.Resource == "namespaces" && type.Group.Length == 0 && after is null && before is not null)
        {
            foreach (var t in TypesSnapshot())
            {
                if (t.Namespaced && !t.CreateOnly)
                {
                    _store.DeleteAll(t, before.Name);
                }
            }
        }
    }

    private static List<KubeResourceType> CrdTypes(JsonObject crd)
    {
        var spec = crd["spec"];
        var group = spec?["group"]?.GetValue<string>() ?? "";
        var names = spec?["names"];
        var plural = names?["plural"]?.GetValue<string>() ?? "";
        var kind = names?["kind"]?.GetValue<string>() ?? "";
        var shortNames = (names?["shortNames"] as JsonArray)?.Select(n => n!.GetValue<string>()).ToList();
        var namespaced = spec?["scope"]?.GetValue<string>() != "Cluster";
        var types = new List<KubeResourceType>();
        foreach (var version in spec?["versions"] as JsonArray ?? [])
        {
            if (version?["served"]?.GetValue<bool>() == false)
            {
                continue;
            }
            types.Add(new KubeResourceType(group, version!["name"]!.GetValue<string>(), plural, kind, namespaced,
                HasStatus: version["subresources"]?["status"] is not null, ShortNames: shortNames));
        }
        return types;
    }

    // ---- HTTP ----

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        Requests.Enqueue(request.Method + " " + request.Path + request.QueryString);
        try
        {
            var user = Authenticate(request);
            var segments = request.Path.Value!.Trim('/').Split('/', StringSplitOptions.RemoveEmptyEntries);
            if (await TryServeNonResourceAsync(context, segments).ConfigureAwait(false))
            {
                return;
            }
            var target = ResolveTarget(segments) ?? throw NotFound();
            var verb = VerbOf(request, target);
            if (!IsAdmin(user) && Authorize is { } authorize
                && !authorize(new FakeKubeRequest(user, verb, target.Type, target.Namespace, target.Name, target.Subresource)))
            {
                throw new KubeApiException(403, "Forbidden",
                    $"{target.Type.Resource} is forbidden: User \"{user.Username}\" cannot {verb} resource \"{target.Type.Resource}\" in API group \"{target.Type.Group}\""
                    + (target.Namespace is null ? " at the cluster scope" : $" in the namespace \"{target.Namespace}\""));
            }
            await ServeResourceAsync(context, verb, target).ConfigureAwait(false);
        }
        catch (KubeApiException e)
        {
            if (!context.Response.HasStarted)
            {
                await WriteStatusAsync(context, e.Code, e.Reason, e.Message).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or KeyNotFoundException)
        {
            if (!context.Response.HasStarted)
            {
                await WriteStatusAsync(context, 400, "BadRequest", e.Message).ConfigureAwait(false);
            }
        }
    }

    private static bool IsAdmin(FakeKubeUser user) => user.Groups.Contains("system:masters");

    private FakeKubeUser Authenticate(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        const string Bearer = "Bearer ";
        if (header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase)
            && _tokens.TryGetValue(header[Bearer.Length..].Trim(), out var user)
            && (user.Audiences.Count == 0 || user.Audiences.Contains(ApiAudience)))
        {
            return user;
        }
        throw new KubeApiException(401, "Unauthorized", "Unauthorized");
    }

    private async Task<bool> TryServeNonResourceAsync(HttpContext context, string[] segments)
    {
        var path = string.Join('/', segments);
        JsonNode? body = path switch
        {
            "version" => new JsonObject
            {
                ["major"] = "1", ["minor"] = "32", ["gitVersion"] = "v1.32.0", ["gitCommit"] = "fake", ["gitTreeState"] = "clean",
                ["buildDate"] = "2024-12-11T00:00:00Z", ["goVersion"] = "go1.23.3", ["compiler"] = "gc", ["platform"] = "linux/amd64",
            },
            "api" => new JsonObject
            {
                ["kind"] = "APIVersions", ["versions"] = new JsonArray("v1"),
                ["serverAddressByClientCIDRs"] = new JsonArray(new JsonObject { ["clientCIDR"] = "0.0.0.0/0", ["serverAddress"] = BaseAddress.Authority }),
            },
            "api/v1" => ResourceList("", "v1"),
            "apis" => GroupList(),
            _ when segments.Length == 2 && segments[0] == "apis" => Group(segments[1]),
            _ when segments.Length == 3 && segments[0] == "apis" => ResourceList(segments[1], segments[2]),
            _ => null,
        };
        if (path is "healthz" or "readyz" or "livez")
        {
            context.Response.ContentType = "text/plain";
            await context.Response.WriteAsync("ok").ConfigureAwait(false);
            return true;
        }
        if (path.StartsWith("openapi", StringComparison.Ordinal))
        {
            // No OpenAPI documents: kubectl then falls back to its built-in schemas and JSON merge patch for CRDs.
            throw NotFound();
        }
        if (body is null)
        {
            return false;
        }
        await WriteJsonAsync(context, 200, body).ConfigureAwait(false);
        return true;
    }

    private JsonObject? ResourceList(string group, string version)
    {
        var resources = new JsonArray();
        foreach (var type in TypesSnapshot())
        {
            if (type.Group != group || type.Version != version)
            {
                continue;
            }
            var verbs = type.CreateOnly
                ? new JsonArray("create")
                : new JsonArray("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch");
            var entry = new JsonObject
            {
                ["name"] = type.Resource, ["singularName"] = type.SingularName, ["namespaced"] = type.Namespaced,
                ["kind"] = type.Kind, ["verbs"] = verbs,
            };
            if (type.ShortNames is { Count: > 0 } shortNames)
            {
                entry["shortNames"] = new JsonArray(shortNames.Select(s => (JsonNode)s!).ToArray());
            }
            resources.Add(entry);
            if (type.HasStatus)
            {
                resources.Add(new JsonObject
                {
                    ["name"] = type.Resource + "/status", ["singularName"] = "", ["namespaced"] = type.Namespaced,
                    ["kind"] = type.Kind, ["verbs"] = new JsonArray("get", "patch", "update"),
                });
            }
        }
        if (resources.Count == 0)
        {
            return null;
        }
        return new JsonObject
        {
            ["kind"] = "APIResourceList", ["apiVersion"] = "v1",
            ["groupVersion"] = group.Length == 0 ? version : group + "/" + version, ["resources"] = resources,
        };
    }

    private JsonObject GroupList()
    {
        var groups = new JsonArray();
        foreach (var name in TypesSnapshot().Where(t => t.Group.Length > 0).Select(t => t.Group).Distinct())
        {
            groups.Add(Group(name));
        }
        return new JsonObject { ["kind"] = "APIGroupList", ["apiVersion"] = "v1", ["groups"] = groups };
    }

    private JsonObject? Group(string name)
    {
        // Kubernetes version priority: GA before beta before alpha, so v1 is preferred over v1beta1.
        var versions = TypesSnapshot().Where(t => t.Group == name).Select(t => t.Version).Distinct()
            .OrderBy(v => v.Contains("alpha", StringComparison.Ordinal) ? 2 : v.Contains("beta", StringComparison.Ordinal) ? 1 : 0)
            .ThenByDescending(v => v, StringComparer.Ordinal).ToList();
        if (versions.Count == 0)
        {
            return null;
        }
        JsonObject Version(string v) => new() { ["groupVersion"] = name + "/" + v, ["version"] = v };
        return new JsonObject
        {
            ["kind"] = "APIGroup", ["apiVersion"] = "v1", ["name"] = name,
            ["versions"] = new JsonArray(versions.Select(v => (JsonNode)Version(v)).ToArray()),
            ["preferredVersion"] = Version(versions[0]),
        };
    }

    private sealed record Target(KubeResourceType Type, string? Namespace, string? Name, string? Subresource);

    private Target? ResolveTarget(string[] segments)
    {
        string group, version;
        int at;
        if (segments.Length >= 3 && segments[0] == "api")
        {
            (group, version, at) = ("", segments[1], 2);
        }
        else if (segments.Length >= 4 && segments[0] == "apis")
        {
            (group, version, at) = (segments[1], segments[2], 3);
        }
        else
        {
            return null;
        }
        var rest = segments[at..];
        string? ns = null;
        if (rest.Length >= 3 && rest[0] == "namespaces" && FindType(group, version, rest[2]) is { Namespaced: true })
        {
            ns = rest[1];
            rest = rest[2..];
        }
        var type = FindType(group, version, rest[0]);
        if (type is null || rest.Length > 3 || (type.Namespaced && ns is null && rest.Length > 1))
        {
            return null;
        }
        return new Target(type, ns, rest.Length > 1 ? rest[1] : null, rest.Length > 2 ? rest[2] : null);
    }

    private static string VerbOf(HttpRequest request, Target target) => request.Method switch
    {
        "GET" when target.Name is null && IsTrue(request.Query["watch"]) => "watch",
        "GET" when target.Name is null => "list",
        "GET" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" when target.Name is null => "deletecollection",
        "DELETE" => "delete",
        _ => throw new KubeApiException(405, "MethodNotAllowed", $"the server does not allow this method on the requested resource"),
    };

    private static bool IsTrue(string? value) => value is "1" or "true" or "True";

    private async Task ServeResourceAsync(HttpContext context, string verb, Target target)
    {
        var type = target.Type;
        if (type.CreateOnly && verb != "create")
        {
            throw new KubeApiException(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        }
        if (target.Subresource is not null and not "status" || (target.Subresource == "status" && !type.HasStatus))
        {
            throw NotFound();
        }
        var query = context.Request.Query;
        var dryRun = query["dryRun"].ToString() == "All";
        switch (verb)
        {
            case "list":
                await ListAsync(context, target).ConfigureAwait(false);
                return;
            case "watch":
                await WatchAsync(context, target).ConfigureAwait(false);
                return;
            case "get":
            {
                var obj = _store.Get(type, target.Namespace, target.Name!) ?? throw NotFound(type, target.Name!);
                await WriteRawAsync(context, 200, obj.Json).ConfigureAwait(false);
                return;
            }
            case "create":
            {
                var body = await ReadObjectAsync(context.Request).ConfigureAwait(false);
                if (type.Resource == "tokenreviews")
                {
                    await WriteJsonAsync(context, 201, ReviewToken(body)).ConfigureAwait(false);
                    return;
                }
                var created = Create(type, target.Namespace, body, dryRun);
                await WriteRawAsync(context, 201, created.Json).ConfigureAwait(false);
                return;
            }
            case "update":
            {
                var body = await ReadObjectAsync(context.Request).ConfigureAwait(false);
                var bodyName = body["metadata"]?["name"]?.GetValue<string>();
                if (bodyName is not null && bodyName != target.Name)
                {
                    throw new KubeApiException(400, "BadRequest", $"the name of the object ({bodyName}) does not match the name on the URL ({target.Name})");
                }
                var updated = Replace(target, _ => body, dryRun);
                await WriteRawAsync(context, 200, updated.Json).ConfigureAwait(false);
                return;
            }
            case "patch":
            {
                var updated = await PatchAsync(context, target, dryRun).ConfigureAwait(false);
                await WriteRawAsync(context, 200, updated.Json).ConfigureAwait(false);
                return;
            }
            case "delete":
            {
                var deleted = DeleteObject(type, target.Namespace, target.Name!, dryRun);
                await WriteRawAsync(context, 200, deleted.Json).ConfigureAwait(false);
                return;
            }
            case "deletecollection":
            {
                var (items, _, _) = _store.List(type, target.Namespace, KubeSelector.ParseLabels(query["labelSelector"]),
                    KubeSelector.ParseFields(query["fieldSelector"]), 0, null);
                foreach (var item in items)
                {
                    DeleteObject(type, item.Namespace, item.Name, dryRun);
                }
                await WriteListAsync(context, type, items, _store.ResourceVersion, null).ConfigureAwait(false);
                return;
            }
        }
    }

    private async Task ListAsync(HttpContext context, Target target)
    {
        var query = context.Request.Query;
        var limit = int.TryParse(query["limit"], out var l) ? l : 0;
        var (items, rv, next) = _store.List(target.Type, target.Namespace,
            KubeSelector.ParseLabels(query["labelSelector"]), KubeSelector.ParseFields(query["fieldSelector"]), limit, query["continue"]);
        await WriteListAsync(context, target.Type, items, rv, next).ConfigureAwait(false);
    }

    private static async Task WriteListAsync(HttpContext context, KubeResourceType type, List<StoredObject> items, long rv, string? next)
    {
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("kind", type.ListKind);
            writer.WriteString("apiVersion", type.ApiVersion);
            writer.WriteStartObject("metadata");
            writer.WriteString("resourceVersion", rv.ToString(CultureInfo.InvariantCulture));
            if (next is not null)
            {
                writer.WriteString("continue", next);
            }
            writer.WriteEndObject();
            writer.WriteStartArray("items");
            foreach (var item in items)
            {
                writer.WriteRawValue(item.Json, skipInputValidation: true);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        context.Response.ContentLength = buffer.Length;
        buffer.Position = 0;
        await buffer.CopyToAsync(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
    }

    private async Task WatchAsync(HttpContext context, Target target)
    {
        var query = context.Request.Query;
        var type = target.Type;
        long? from = null;
        if (!string.IsNullOrEmpty(query["resourceVersion"]))
        {
            from = long.TryParse(query["resourceVersion"], out var v)
                ? v
                : throw new KubeApiException(400, "BadRequest", $"invalid resource version: {query["resourceVersion"]}");
        }
        var fields = KubeSelector.ParseFields(query["fieldSelector"]);
        var watcher = _store.Watch(new StoreWatcher
        {
            ResourceType = type, Namespace = target.Namespace,
            Labels = KubeSelector.ParseLabels(query["labelSelector"]),
            Fields = fields,
            Bookmarks = IsTrue(query["allowWatchBookmarks"]),
        }, from);
        using var timeout = int.TryParse(query["timeoutSeconds"], out var seconds) && seconds > 0
            ? new CancellationTokenSource(TimeSpan.FromSeconds(seconds))
            : new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, timeout.Token, watcher.Dropped.Token, _stopping.Token);
        try
        {
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/json";
            await context.Response.Body.FlushAsync(linked.Token).ConfigureAwait(false);
            while (await watcher.Queue.Reader.WaitToReadAsync(linked.Token).ConfigureAwait(false))
            {
                while (watcher.Queue.Reader.TryRead(out var item))
                {
                    await context.Response.Body.WriteAsync(WatchLine(type, item), linked.Token).ConfigureAwait(false);
                }
                await context.Response.Body.FlushAsync(linked.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (watcher.Dropped.IsCancellationRequested)
        {
            // A dropped connection ends without a final chunk, as a broken network does.
            context.Abort();
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _store.Unwatch(watcher);
            watcher.Dropped.Dispose();
        }
    }

    private static byte[] WatchLine(KubeResourceType type, WatchItem item)
    {
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type", item.Type);
            writer.WritePropertyName("object");
            switch (item.Type)
            {
                case "BOOKMARK":
                    writer.WriteStartObject();
                    writer.WriteString("kind", type.Kind);
                    writer.WriteString("apiVersion", type.ApiVersion);
                    writer.WriteStartObject("metadata");
                    writer.WriteString("resourceVersion", item.ResourceVersion.ToString(CultureInfo.InvariantCulture));
                    writer.WriteEndObject();
                    writer.WriteEndObject();
                    break;
                case "ERROR":
                    Status(410, "Expired", $"too old resource version: {item.ResourceVersion}").WriteTo(writer);
                    break;
                default:
                    writer.WriteRawValue(item.Json!, skipInputValidation: true);
                    break;
            }
            writer.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    // ---- Writes ----

    private StoredObject Create(KubeResourceType type, string? ns, JsonObject body, bool dryRun)
    {
        CheckKind(type, body);
        var metadata = body["metadata"] as JsonObject ?? [];
        body["metadata"] = metadata;
        var name = metadata["name"]?.GetValue<string>();
        if (string.IsNullOrEmpty(name))
        {
            var prefix = metadata["generateName"]?.GetValue<string>()
                ?? throw new KubeApiException(422, "Invalid", $"{type.Kind} \"\" is invalid: metadata.name: Required value: name or generateName is required");
            name = prefix + Guid.NewGuid().ToString("N")[..5];
            metadata["name"] = name;
        }
        var bodyNs = metadata["namespace"]?.GetValue<string>();
        if (type.Namespaced && bodyNs is not null && bodyNs != ns)
        {
            throw new KubeApiException(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
        }
        if (type.Namespaced && _store.Get(NamespaceType, null, ns!) is null)
        {
            throw new KubeApiException(404, "NotFound", $"namespaces \"{ns}\" not found");
        }
        if (type.HasStatus)
        {
            // The status subresource owns status: a create starts without one, as the apiserver's strategies do.
            body.Remove("status");
        }
        if (type.Resource == "customresourcedefinitions")
        {
            // No controller runs here: a CRD is established (its kinds served) the moment it is stored.
            body["status"] = CrdStatus(body);
        }
        else if (type.Resource == "namespaces" && type.Group.Length == 0)
        {
            body["status"] = new JsonObject { ["phase"] = "Active" };
        }
        return _store.Mutate(type, ns, name, dryRun, (current, _) =>
        {
            if (current is not null)
            {
                throw new KubeApiException(409, "AlreadyExists", $"{Plural(type)} \"{name}\" already exists");
            }
            FillMetadata(body, type, ns, null);
            return body;
        })!;
    }

    private static JsonObject CrdStatus(JsonObject crd)
    {
        var now = Timestamp();
        JsonObject Condition(string type, string reason) => new()
        {
            ["type"] = type, ["status"] = "True", ["lastTransitionTime"] = now, ["reason"] = reason, ["message"] = "",
        };
        return new JsonObject
        {
            ["conditions"] = new JsonArray(Condition("NamesAccepted", "NoConflicts"), Condition("Established", "InitialNamesAccepted")),
            ["acceptedNames"] = crd["spec"]?["names"]?.DeepClone(),
            ["storedVersions"] = new JsonArray((crd["spec"]?["versions"] as JsonArray ?? [])
                .Where(v => v?["storage"]?.GetValue<bool>() == true).Select(v => (JsonNode?)v!["name"]!.GetValue<string>()).ToArray()),
        };
    }

    private KubeResourceType NamespaceType => FindType("", "v1", "namespaces")!;

    /// <summary>PUT semantics: replaces the object with what <paramref name="bodyOf"/> makes of the current one (under
    /// the store's lock, so a patch never races a write), keeping status unless this is the status subresource, with a
    /// resourceVersion precondition when the body carries one.</summary>
    private StoredObject Replace(Target target, Func<JsonObject, JsonObject> bodyOf, bool dryRun)
    {
        var type = target.Type;
        return _store.Mutate(type, target.Namespace, target.Name!, dryRun, (current, _) =>
        {
            if (current is null)
            {
                throw NotFound(type, target.Name!);
            }
            var body = bodyOf(current);
            CheckKind(type, body);
            var expected = body["metadata"]?["resourceVersion"]?.GetValue<string>();
            if (!string.IsNullOrEmpty(expected) && expected != current["metadata"]?["resourceVersion"]?.GetValue<string>())
            {
                throw new KubeApiException(409, "Conflict",
                    $"Operation cannot be fulfilled on {Plural(type)} \"{target.Name}\": the object has been modified; please apply your changes to the latest version and try again");
            }
            JsonObject next;
            if (target.Subresource == "status")
            {
                // The status subresource changes status only.
                next = (JsonObject)current.DeepClone();
                next["status"] = body["status"]?.DeepClone();
            }
            else
            {
                next = (JsonObject)body.DeepClone();
                if (type.HasStatus)
                {
                    // ... and the main resource everything but status.
                    next["status"] = current["status"]?.DeepClone();
                }
            }
            if (next["status"] is null)
            {
                next.Remove("status");
            }
            if (next["metadata"] is JsonObject metadata && metadata["deletionTimestamp"] is null
                && current["metadata"]?["deletionTimestamp"] is { } deleting)
            {
                metadata["deletionTimestamp"] = deleting.DeepClone();
            }
            FillMetadata(next, type, target.Namespace, current);
            // An object being deleted goes once its last finalizer is removed.
            if (next["metadata"]?["deletionTimestamp"] is not null && next["metadata"]?["finalizers"] is not JsonArray { Count: > 0 })
            {
                return null;
            }
            return next;
        }) ?? throw NotFound(type, target.Name!);
    }

    private async Task<StoredObject> PatchAsync(HttpContext context, Target target, bool dryRun)
    {
        var type = target.Type;
        var contentType = context.Request.ContentType?.Split(';')[0].Trim() ?? "";
        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        var text = await reader.ReadToEndAsync(context.RequestAborted).ConfigureAwait(false);
        var patch = JsonNode.Parse(text) ?? throw new KubeApiException(400, "BadRequest", "empty patch");
        Func<JsonNode, JsonNode> apply = contentType switch
        {
            "application/json-patch+json" => current => KubePatch.ApplyJsonPatch(current, patch.AsArray()),
            "application/merge-patch+json" => current => KubePatch.Merge(current, patch, strategic: false)!,
            "application/strategic-merge-patch+json" or "application/apply-patch+yaml" => current => KubePatch.Merge(current, patch, strategic: true)!,
            _ => throw new KubeApiException(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        };
        if (contentType == "application/apply-patch+yaml" && target.Subresource is null && _store.Get(type, target.Namespace, target.Name!) is null)
        {
            // Server-side apply creates what does not exist.
            var created = patch.AsObject();
            created["metadata"] ??= new JsonObject();
            created["metadata"]!["name"] = target.Name;
            return Create(type, target.Namespace, created, dryRun);
        }
        return Replace(target, current => apply(current).AsObject(), dryRun);
    }

    private StoredObject DeleteObject(KubeResourceType type, string? ns, string name, bool dryRun) =>
        _store.Mutate(type, ns, name, dryRun, (current, _) =>
        {
            if (current is null)
            {
                throw NotFound(type, name);
            }
            if (current["metadata"]?["finalizers"] is JsonArray { Count: > 0 })
            {
                // Finalizers hold the object, marked for deletion, until its controllers remove them.
                var marked = (JsonObject)current.DeepClone();
                marked["metadata"]!["deletionTimestamp"] ??= Timestamp();
                marked["metadata"]!["deletionGracePeriodSeconds"] = 0;
                return marked;
            }
            return null;
        }) ?? throw NotFound(type, name);

    private static void CheckKind(KubeResourceType type, JsonObject body)
    {
        var kind = body["kind"]?.GetValue<string>();
        var apiVersion = body["apiVersion"]?.GetValue<string>();
        if ((kind is not null && kind != type.Kind) || (apiVersion is not null && apiVersion != type.ApiVersion))
        {
            throw new KubeApiException(400, "BadRequest", $"the API version in the data ({apiVersion}) does not match the expected API version ({type.ApiVersion})");
        }
        body["kind"] = type.Kind;
        body["apiVersion"] = type.ApiVersion;
    }

    /// <summary>The system-owned metadata: uid, creationTimestamp, namespace, and a generation that counts spec changes.</summary>
    private static void FillMetadata(JsonObject obj, KubeResourceType type, string? ns, JsonObject? current)
    {
        obj["kind"] ??= type.Kind;
        obj["apiVersion"] ??= type.ApiVersion;
        var metadata = obj["metadata"] as JsonObject ?? [];
        obj["metadata"] = metadata;
        if (type.Namespaced)
        {
            metadata["namespace"] = ns;
        }
        else
        {
            metadata.Remove("namespace");
        }
        var old = current?["metadata"];
        metadata["uid"] = old?["uid"]?.DeepClone() ?? metadata["uid"]?.DeepClone() ?? Guid.NewGuid().ToString();
        metadata["creationTimestamp"] = old?["creationTimestamp"]?.DeepClone() ?? metadata["creationTimestamp"]?.DeepClone() ?? Timestamp();
        var generation = old?["generation"]?.GetValue<long>() ?? 0;
        if (current is null)
        {
            generation = 1;
        }
        else if (!JsonNode.DeepEquals(WithoutMetadataAndStatus(current), WithoutMetadataAndStatus(obj)))
        {
            generation++;
        }
        metadata["generation"] = generation;
    }

    private static JsonObject WithoutMetadataAndStatus(JsonObject obj)
    {
        var copy = new JsonObject();
        foreach (var (name, value) in obj)
        {
            if (name is not ("metadata" or "status"))
            {
                copy[name] = value?.DeepClone();
            }
        }
        return copy;
    }

    private static string Timestamp() => DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>TokenReview: a registered token is authenticated when one of its audiences is asked for.</summary>
    private JsonObject ReviewToken(JsonObject review)
    {
        var token = review["spec"]?["token"]?.GetValue<string>() ?? "";
        var wanted = (review["spec"]?["audiences"] as JsonArray)?.Select(a => a!.GetValue<string>()).ToList() is { Count: > 0 } asked
            ? asked
            : [ApiAudience];
        var status = new JsonObject();
        if (!_tokens.TryGetValue(token, out var user))
        {
            status["authenticated"] = false;
            status["error"] = "[invalid bearer token, service account token has been invalidated]";
        }
        else
        {
            var audiences = user.Audiences.Count == 0 ? [ApiAudience] : user.Audiences;
            var granted = wanted.Where(audiences.Contains).ToList();
            if (granted.Count == 0)
            {
                status["authenticated"] = false;
                status["error"] = "[invalid bearer token, token audiences [" + string.Join(' ', audiences) + "] is invalid for the target audiences [" + string.Join(' ', wanted) + "]]";
            }
            else
            {
                var extra = new JsonObject();
                foreach (var (key, values) in user.Extra)
                {
                    extra[key] = new JsonArray(values.Select(v => (JsonNode)v!).ToArray());
                }
                status["authenticated"] = true;
                status["user"] = new JsonObject
                {
                    ["username"] = user.Username, ["uid"] = user.Uid,
                    ["groups"] = new JsonArray(user.Groups.Select(g => (JsonNode)g!).ToArray()), ["extra"] = extra,
                };
                status["audiences"] = new JsonArray(granted.Select(a => (JsonNode)a!).ToArray());
            }
        }
        var response = (JsonObject)review.DeepClone();
        response["kind"] = "TokenReview";
        response["apiVersion"] = "authentication.k8s.io/v1";
        response["metadata"] ??= new JsonObject { ["creationTimestamp"] = null };
        response["status"] = status;
        return response;
    }

    // ---- Helpers ----

    private static string Plural(KubeResourceType type) => type.Group.Length == 0 ? type.Resource : type.Resource + "." + type.Group;

    private static KubeApiException NotFound() => new(404, "NotFound", "the server could not find the requested resource");

    private static KubeApiException NotFound(KubeResourceType type, string name) => new(404, "NotFound", $"{Plural(type)} \"{name}\" not found");

    private static JsonObject Parse(byte[] json) => JsonNode.Parse(json)!.AsObject();

    private static async Task<JsonObject> ReadObjectAsync(HttpRequest request)
    {
        var node = await JsonNode.ParseAsync(request.Body, cancellationToken: request.HttpContext.RequestAborted).ConfigureAwait(false);
        return node as JsonObject ?? throw new KubeApiException(400, "BadRequest", "the body must be a JSON object");
    }

    private static JsonObject Status(int code, string reason, string message) => new()
    {
        ["kind"] = "Status", ["apiVersion"] = "v1", ["metadata"] = new JsonObject(), ["status"] = "Failure",
        ["message"] = message, ["reason"] = reason, ["code"] = code,
    };

    private static Task WriteStatusAsync(HttpContext context, int code, string reason, string message) =>
        WriteJsonAsync(context, code, Status(code, reason, message));

    private static Task WriteJsonAsync(HttpContext context, int code, JsonNode body) =>
        WriteRawAsync(context, code, JsonSerializer.SerializeToUtf8Bytes(body, CompactJson));

    private static async Task WriteRawAsync(HttpContext context, int code, byte[] json)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = json.Length;
        await context.Response.Body.WriteAsync(json, context.RequestAborted).ConfigureAwait(false);
    }
}
