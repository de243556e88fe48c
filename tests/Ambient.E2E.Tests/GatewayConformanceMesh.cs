using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Ambient.TestCommon;

namespace Ambient.E2E.Tests;

/// <summary>
/// The mesh of the Gateway API conformance suite (GAMMA mesh profile), built once for every test of
/// <see cref="GatewayConformanceE2ETests"/>: the conformance backends infra-backend-v1/v2/v3 (Deployments of the echo
/// sample, each behind a Service of the same name on port 8080), a client pod (and one in a consumer namespace, for
/// consumer routes), a waypoint for the namespace, and one Service per feature (each selecting infra-backend-v1, so a
/// request no rule matches lands there) with its own HTTPRoutes, so the routes of one feature cannot decide a request
/// of another. All routes are written before
/// `local up`; the fixture returns once every route answers as routed.
/// </summary>
public sealed class GatewayConformanceMesh : IAsyncLifetime
{
    /// <summary>Every feature route has this rule too (path Exact /ready -> infra-backend-v3): the liveness probe.</summary>
    private const string ReadyRule = """
          - matches: [{path: {type: Exact, value: /ready}}]
            backendRefs: [{name: infra-backend-v3, port: 8080}]

        """;

    private static readonly TimeSpan Propagation = TimeSpan.FromSeconds(60);

    /// <summary>The Service (here, selecting infra-backend-v1) that the consumer namespace's route is for.</summary>
    public const string ConsumedService = "consumed";

    private readonly List<(string Name, int Port)> _routedServices = [];
    private MeshRun? _run;

    internal MeshRun Run => _run!;
    public string Namespace => Run.Namespace;

    /// <summary>The namespace of the cross-namespace backend (the upstream suite's gateway-conformance-web-backend):
    /// Deployment web-backend behind Services web-backend, web-other, web-third and web-live, and its ReferenceGrants.</summary>
    public string WebNamespace => WebNamespaceOf(Namespace);

    private static string WebNamespaceOf(string ns) => ns + "-web";

    /// <summary>The consumer namespace (the upstream suite's gateway-conformance-mesh-consumer): a client pod and a
    /// consumer route for this namespace's Service <c>consumed</c>.</summary>
    public string ConsumerNamespace => ConsumerNamespaceOf(Namespace);

    private static string ConsumerNamespaceOf(string ns) => ns + "-consumer";

    internal ConformanceClient Client { get; private set; } = null!;

    /// <summary>A client in <see cref="ConsumerNamespace"/>.</summary>
    internal ConformanceClient ConsumerClient { get; private set; } = null!;

    public string Host(string service) => $"{service}.{Namespace}.svc.cluster.local";

    public async ValueTask InitializeAsync()
    {
        _run = await MeshRun.UpAsync("gc", Yaml);
        var apply = await Run.CtlAsync(TimeSpan.FromSeconds(90), "waypoint", "apply", "-n", Namespace, "--enroll-namespace", "--wait");
        Assert.True(apply.Code == 0, $"waypoint apply failed ({apply.Code}):\n{apply.Output}");
        // Until its routes apply, the waypoint relays a Service's tunnel as TCP (and a kept-alive connection sticks to
        // one pod), so the probe opens a connection per request and asks each routed Service three times for /ready,
        // which only a live route sends to infra-backend-v3 (the Service itself selects infra-backend-v1).
        using var probe = new ConformanceClient(Run.Pod("client"), keepAlive: false);
        await WaitForRoutesAsync(probe, _routedServices, r => r.Service == "infra-backend-v3");
        // The consumer route's /ready rule marks its answer, so the probe tells it from the producer route's.
        var consumerPod = Run.Get($"pod-{ConsumerNamespace}-client");
        using var consumerProbe = new ConformanceClient(consumerPod, keepAlive: false);
        await WaitForRoutesAsync(consumerProbe, [(ConsumedService, 80)],
            r => r.Service == "infra-backend-v3" && r.Header("X-Consumer-Route") == "ready");
        // Opened after every route is live, so its kept-alive connections are served as HTTP, routed per request.
        Client = new ConformanceClient(Run.Pod("client"), keepAlive: true);
        ConsumerClient = new ConformanceClient(consumerPod, keepAlive: true);
    }

    private async Task WaitForRoutesAsync(ConformanceClient probe, IEnumerable<(string Name, int Port)> services,
        Func<ConformanceResponse, bool> routed)
    {
        var pending = new List<(string Name, int Port)>(services);
        string? last = null;
        await MeshRun.EventuallyAsync(async () =>
        {
            for (var i = pending.Count - 1; i >= 0; i--)
            {
                var live = true;
                for (var n = 0; n < 3 && live; n++)
                {
                    try
                    {
                        var r = await probe.SendAsync(HttpMethod.Get, $"http://{Host(pending[i].Name)}:{pending[i].Port}/ready");
                        live = routed(r);
                        last = $"{pending[i].Name}: {r}";
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                    {
                        live = false;
                        last = $"{pending[i].Name}: {e.Message}";
                    }
                }
                if (live) pending.RemoveAt(i);
            }
            return pending.Count == 0;
        }, Propagation, () => Task.FromResult($"routes never went live for {string.Join(", ", pending.Select(p => p.Name))} (last: {last})"));
    }

    public ValueTask DisposeAsync()
    {
        Client?.Dispose();
        ConsumerClient?.Dispose();
        _run?.Dispose();
        return ValueTask.CompletedTask;
    }

    private string Yaml(string ns)
    {
        var yaml = new StringBuilder(MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "backend")
            + MeshYaml.Sleep(ns, "client", "client", "gc-node-a"));
        foreach (var v in (string[])["v1", "v2", "v3"])
        {
            yaml.Append(Backend(ns, "infra-backend-" + v));
        }

        // Path, header, query and method matches; AND within a match, OR across matches.
        yaml.Append(Route(ns, "match-path", """
              - matches: [{path: {type: Exact, value: /exact}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /prefix}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /trailing/}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: RegularExpression, value: "/regex/[0-9]+"}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """));
        yaml.Append(Route(ns, "match-header", """
              - matches: [{headers: [{name: version, value: two}]}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{headers: [{type: RegularExpression, name: color, value: "^(red|blue)$"}]}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /duplicate}, headers: [{name: dup, value: first}, {name: Dup, value: second}]}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /any-value}, headers: [{type: RegularExpression, name: x-any, value: ".*"}]}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """));
        yaml.Append(Route(ns, "match-query", """
              - matches: [{queryParams: [{name: animal, value: whale}]}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{queryParams: [{type: RegularExpression, name: id, value: "^[0-9]+$"}]}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /any-value}, queryParams: [{type: RegularExpression, name: any, value: ".*"}]}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """));
        yaml.Append(Route(ns, "match-method", """
              - matches: [{method: POST}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /delete}, method: DELETE}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
            """));
        yaml.Append(Route(ns, "match-and-or", """
              - matches: [{path: {type: PathPrefix, value: /and}, headers: [{name: x-and, value: "1"}], queryParams: [{name: q, value: "2"}]}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: Exact, value: /or-a}}, {path: {type: Exact, value: /or-b}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
            """));

        // A rule without matches matches every request, ranked as PathPrefix / (last), wherever it is listed.
        yaml.Append(Route(ns, "match-default", """
              - backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: Exact, value: /specific}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
            """));
        // parentRef.port: a route naming port 80 does not apply on the Service's port 8080; one naming none applies on both.
        yaml.Append(Service(ns, "ports", port: 80, secondPort: 8080));
        yaml.Append(RouteOnly(ns, "ports-80", "ports", """
              - matches: [{path: {type: PathPrefix, value: /by-port}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """));
        yaml.Append(RouteOnly(ns, "ports-any", "ports", """
              - matches: [{path: {type: PathPrefix, value: /any-port}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
            """ + "\n" + ReadyRule, parentPort: null));

        // Precedence across the rules of one route: the least specific rule comes first in every pair, so list order
        // alone would pick the wrong one.
        yaml.Append(Route(ns, "precedence", """
              - matches: [{path: {type: PathPrefix, value: /p}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /p/longer}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: Exact, value: /p/longer/exact}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /same}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: Exact, value: /same}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /m}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /m}, method: GET}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /m/longer}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /h}, headers: [{name: a, value: "1"}]}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /h}, headers: [{name: a, value: "1"}, {name: b, value: "1"}]}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /h}, queryParams: [{name: a, value: "1"}, {name: b, value: "1"}, {name: c, value: "1"}]}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /q}, queryParams: [{name: a, value: "1"}]}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /q}, queryParams: [{name: a, value: "1"}, {name: b, value: "1"}]}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /order}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /order}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
            """));
        // Precedence is per match, not per rule: a rule's most specific match competes on its own.
        yaml.Append(Route(ns, "precedence-matches", """
              - matches: [{path: {type: PathPrefix, value: /x}}, {path: {type: Exact, value: /x/y}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /x/y}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
            """));
        // Precedence across routes on one Service: specificity first, then the oldest creationTimestamp, then ns/name
        // (written newest and last-by-name first, so file order would pick the wrong one).
        yaml.Append(Service(ns, "precedence-routes"));
        yaml.Append(RouteOnly(ns, "routes-new", "precedence-routes", """
              - matches: [{path: {type: PathPrefix, value: /age}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
              - matches: [{path: {type: Exact, value: /specific}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
            """ + "\n" + ReadyRule, created: "2024-06-01T00:00:00Z"));
        yaml.Append(RouteOnly(ns, "routes-old", "precedence-routes", """
              - matches: [{path: {type: PathPrefix, value: /age}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /specific}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """, created: "2020-01-01T00:00:00Z"));
        yaml.Append(RouteOnly(ns, "routes-tie-b", "precedence-routes", """
              - matches: [{path: {type: PathPrefix, value: /name}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """, created: "2022-01-01T00:00:00Z"));
        yaml.Append(RouteOnly(ns, "routes-tie-a", "precedence-routes", """
              - matches: [{path: {type: PathPrefix, value: /name}}]
                backendRefs: [{name: infra-backend-v3, port: 8080}]
            """, created: "2022-01-01T00:00:00Z"));

        // Weighted backends and backends that are not there.
        yaml.Append(Route(ns, "weights", """
              - matches: [{path: {type: PathPrefix, value: /split}}]
                backendRefs: [{name: infra-backend-v1, port: 8080, weight: 70}, {name: infra-backend-v2, port: 8080, weight: 30}, {name: infra-backend-v3, port: 8080, weight: 0}]
              - matches: [{path: {type: PathPrefix, value: /all-zero}}]
                backendRefs: [{name: infra-backend-v2, port: 8080, weight: 0}, {name: infra-backend-v3, port: 8080, weight: 0}]
              - matches: [{path: {type: PathPrefix, value: /no-backends}}]
              - matches: [{path: {type: PathPrefix, value: /zero-invalid}}]
                backendRefs: [{name: does-not-exist, port: 8080, weight: 0}, {name: infra-backend-v2, port: 8080}]
            """));
        yaml.Append(Service(ns, "invalid-refs"));
        yaml.Append(RouteOnly(ns, "invalid-kind", "invalid-refs", """
              - matches: [{path: {type: PathPrefix, value: /kind-only}}]
                backendRefs: [{group: example.com, kind: Unknown, name: infra-backend-v2, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /kind-half}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}, {group: example.com, kind: Unknown, name: infra-backend-v2, port: 8080}]
            """ + "\n" + ReadyRule));
        yaml.Append(RouteOnly(ns, "missing-backend", "invalid-refs", """
              - matches: [{path: {type: PathPrefix, value: /missing-only}}]
                backendRefs: [{name: does-not-exist, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /missing-half}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}, {name: does-not-exist, port: 8080}]
            """));
        yaml.Append(RouteOnly(ns, "cross-namespace", "invalid-refs", """
              - matches: [{path: {type: PathPrefix, value: /cross-namespace}}]
                backendRefs: [{name: infra-backend-v2, namespace: elsewhere, port: 8080}]
            """));
        // ReferenceGrant (HTTPRouteReferenceGrant, HTTPRoutePartiallyInvalidViaInvalidReferenceGrant): the backends are
        // in another namespace, whose grants trust this namespace's HTTPRoutes for web-backend only, and another
        // namespace's for web-third. Every Service there selects the one web-backend pod.
        var web = WebNamespaceOf(ns);
        yaml.Append(MeshYaml.Namespace(web) + MeshYaml.ServiceAccount(web, "backend") + Backend(web, "web-backend"));
        foreach (var other in (string[])["web-other", "web-third", "web-live"])
        {
            yaml.Append(MeshYaml.Service(other, web, "web-backend", 8080, "http", portName: "http"));
        }
        yaml.Append(Grant(web, "allow-infra", ns, "web-backend") + Grant(web, "allow-elsewhere", "elsewhere", "web-third"));
        yaml.Append(Service(ns, "grants"));
        yaml.Append(RouteOnly(ns, "grant-permitted", "grants", $$$"""
              - matches: [{path: {type: PathPrefix, value: /permitted}}]
                backendRefs: [{name: web-backend, namespace: {{{web}}}, port: 8080}]
            """ + "\n" + ReadyRule));
        yaml.Append(RouteOnly(ns, "grant-wrong-name", "grants", $$$"""
              - matches: [{path: {type: PathPrefix, value: /wrong-name}}]
                backendRefs: [{name: web-other, namespace: {{{web}}}, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /valid-sibling}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """));
        yaml.Append(RouteOnly(ns, "grant-wrong-from", "grants", $$$"""
              - matches: [{path: {type: PathPrefix, value: /wrong-from}}]
                backendRefs: [{name: web-third, namespace: {{{web}}}, port: 8080}]
            """));
        yaml.Append(RouteOnly(ns, "grant-live", "grants", $$$"""
              - matches: [{path: {type: PathPrefix, value: /live}}]
                backendRefs: [{name: web-live, namespace: {{{web}}}, port: 8080}]
            """));

        // Consumer routes (GEP-1294 "Namespace boundaries", upstream MeshConsumerRoute): a route in the consumer namespace
        // for the Service consumed here sets a response header on a rule with no backendRefs, as upstream's
        // mesh-consumer-route.yaml does, which sends on to the parent Service itself; /explicit-parent names the parent as
        // its backendRef (no ReferenceGrant needed for the parent); for its /ready rule, infra-backend-v3 here needs the
        // grant. Clients of the consumer namespace use it instead of the producer route on the same Service
        // (/producer-only -> infra-backend-v2).
        var consumer = ConsumerNamespaceOf(ns);
        yaml.Append(MeshYaml.Namespace(consumer) + MeshYaml.ServiceAccount(consumer, "client") + MeshYaml.Sleep(consumer, "client", "client", "gc-node-a"));
        yaml.Append(Route(ns, ConsumedService, """
              - matches: [{path: {type: PathPrefix, value: /producer-only}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """));
        yaml.Append(RouteOnly(consumer, "consumer-add-header", ConsumedService, $$$"""
              - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Header-Set, value: set}]}}]
              - matches: [{path: {type: PathPrefix, value: /explicit-parent}}]
                filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Header-Set, value: explicit}]}}]
                backendRefs: [{name: {{{ConsumedService}}}, namespace: {{{ns}}}, port: 80}]
              - matches: [{path: {type: Exact, value: /ready}}]
                filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Consumer-Route, value: ready}]}}]
                backendRefs: [{name: infra-backend-v3, namespace: {{{ns}}}, port: 8080}]
            """, parentPort: null, parentNamespace: ns));
        yaml.Append(Grant(ns, "allow-consumer-ready", consumer, "infra-backend-v3"));

        // Upstream MeshFrontend (mesh-frontend.yaml): a route on one Service whose only rule sets a response header and
        // has no backendRefs. Requests to that Service reach its own endpoints with the header; the same pod reached
        // through another Service (infra-backend-v1) does not get it.
        yaml.Append(Route(ns, "frontend", """
              - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Header-Set, value: set}]}}]
            """));

        // A parentRef to a port the Service does not have: not accepted, so it routes nothing.
        yaml.Append(RouteOnly(ns, "wrong-port", "invalid-refs", """
              - matches: [{path: {type: PathPrefix, value: /wrong-port}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """, parentPort: 81));

        // A backend Service whose port declares h2c (appProtocol kubernetes.io/h2c) is spoken to in HTTP/2 with prior
        // knowledge, whether or not the waypoint serves that Service itself (one opts out with use-waypoint: none).
        yaml.Append(H2cService(ns, "h2c-enrolled", optOut: false) + H2cService(ns, "h2c-opted-out", optOut: true));
        yaml.Append(Route(ns, "backend-protocol", """
              - matches: [{path: {type: PathPrefix, value: /enrolled}}]
                backendRefs: [{name: h2c-enrolled, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /opted-out}}]
                backendRefs: [{name: h2c-opted-out, port: 8080}]
            """));

        // Filters.
        yaml.Append(Route(ns, "request-headers", """
              - matches: [{path: {type: PathPrefix, value: /route}}]
                filters:
                - type: RequestHeaderModifier
                  requestHeaderModifier:
                    set: [{name: X-Header-Set, value: set-overwrites-values}]
                    add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}]
                    remove: [X-Header-Remove]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /backend}}]
                backendRefs:
                - name: infra-backend-v2
                  port: 8080
                  filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Backend, value: v2}]}}]
            """));
        yaml.Append(Route(ns, "response-headers", """
              - matches: [{path: {type: PathPrefix, value: /route}}]
                filters:
                - type: ResponseHeaderModifier
                  responseHeaderModifier:
                    set: [{name: X-Header-Set, value: set-overwrites-values}]
                    add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}]
                    remove: [X-Header-Remove]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /backend}}]
                backendRefs:
                - name: infra-backend-v2
                  port: 8080
                  filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Backend, value: v2}]}}]
            """));
        yaml.Append(Route(ns, "redirect", """
              - matches: [{path: {type: PathPrefix, value: /scheme}}]
                filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
              - matches: [{path: {type: PathPrefix, value: /hostname}}]
                filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
              - matches: [{path: {type: PathPrefix, value: /port}}]
                filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
              - matches: [{path: {type: PathPrefix, value: /https-port}}]
                filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443}}]
              - matches: [{path: {type: PathPrefix, value: /https-443}}]
                filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 443}}]
              - matches: [{path: {type: PathPrefix, value: /full}}]
                filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /replacement}}}]
              - matches: [{path: {type: PathPrefix, value: /prefix}}]
                filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement}}}]
              - matches: [{path: {type: PathPrefix, value: /status-301}}]
                filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]
              - matches: [{path: {type: PathPrefix, value: /status-302}}]
                filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 302}}]
              - matches: [{path: {type: PathPrefix, value: /status-303}}]
                filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 303}}]
              - matches: [{path: {type: PathPrefix, value: /status-307}}]
                filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 307}}]
              - matches: [{path: {type: PathPrefix, value: /status-308}}]
                filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 308}}]
            """));
        // The same on a Service port that is not the scheme's: the redirect keeps the request's port unless the filter
        // sets a scheme (whose well-known port is then used, and left out of the Location).
        yaml.Append(Service(ns, "redirect-8080", port: 8080));
        yaml.Append(RouteOnly(ns, "redirect-8080", "redirect-8080", """
              - matches: [{path: {type: PathPrefix, value: /hostname}}]
                filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
              - matches: [{path: {type: PathPrefix, value: /to-https}}]
                filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
              - matches: [{path: {type: PathPrefix, value: /to-http}}]
                filters: [{type: RequestRedirect, requestRedirect: {scheme: http}}]
            """ + "\n" + ReadyRule, parentPort: 8080));
        yaml.Append(Route(ns, "rewrite", """
              - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /full/one}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /hostname}}]
                filters: [{type: URLRewrite, urlRewrite: {hostname: rewritten.example.org}}]
                backendRefs: [{name: infra-backend-v2, port: 8080}]
            """));
        // ReplacePrefixMatch per the table in HTTPPathModifier's documentation: slashes at the seam are not doubled.
        yaml.Append(Route(ns, "rewrite-prefix", """
              - matches: [{path: {type: PathPrefix, value: /a}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /xyz}}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /b}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /xyz/}}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /c/}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /xyz}}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /d/}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /xyz/}}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
            """));
        yaml.Append(Route(ns, "mirror", """
              - matches: [{path: {type: PathPrefix, value: /mirror-all}}]
                filters:
                - {type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}}
                - {type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v3, port: 8080}, percent: 0}}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /mirror-half}}]
                filters:
                - {type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}, percent: 100}}
                - {type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v3, port: 8080}, fraction: {numerator: 1, denominator: 2}}}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
            """));
        // A mirror to a Service that does not exist is dropped; the request itself is served.
        yaml.Append(RouteOnly(ns, "mirror-missing", "mirror", """
              - matches: [{path: {type: PathPrefix, value: /mirror-missing}}]
                filters: [{type: RequestMirror, requestMirror: {backendRef: {name: does-not-exist, port: 8080}}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
            """));
        yaml.Append(Route(ns, "timeouts", """
              - matches: [{path: {type: PathPrefix, value: /request}}]
                timeouts: {request: 500ms}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /backend}}]
                timeouts: {request: 10s, backendRequest: 500ms}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /disabled}}]
                timeouts: {request: 0s}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /backend-disabled}}]
                timeouts: {backendRequest: 0s}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
            """));
        yaml.Append(Route(ns, "retry", """
              - matches: [{path: {type: PathPrefix, value: /retry}}]
                retry: {codes: [500], attempts: 2, backoff: 10ms}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /backoff}}]
                retry: {codes: [500], attempts: 1, backoff: 1s}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /no-retry}}]
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /code-all-attempts-2}}]
                retry: {codes: [500, 502, 503, 504], attempts: 2}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /code-all-attempts-0}}]
                retry: {codes: [500, 502, 503, 504], attempts: 0}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /backend-timeout}}]
                retry: {attempts: 2}
                timeouts: {backendRequest: 200ms}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
              - matches: [{path: {type: PathPrefix, value: /request-timeout}}]
                retry: {codes: [500], attempts: 5}
                timeouts: {request: 1s, backendRequest: 600ms}
                backendRefs: [{name: infra-backend-v1, port: 8080}]
            """));
        return yaml.ToString();
    }

    /// <summary>A Deployment of one echo replica labelled app=<paramref name="name"/>, and its Service on port 8080.</summary>
    private static string Backend(string ns, string name) => $$$"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: {{{name}}}, namespace: {{{ns}}}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: {{{name}}}}}
          template:
            metadata: {labels: {app: {{{name}}}}}
            spec:
              serviceAccountName: backend
              nodeName: gc-node-b
              containers: [{name: echo, image: ambient/echo, ports: [{name: http, containerPort: 3000}]}]
        ---

        """ + MeshYaml.Service(name, ns, name, 8080, "http", portName: "http");

    /// <summary>A ReferenceGrant in <paramref name="ns"/> letting HTTPRoutes of <paramref name="from"/> refer to the
    /// Service <paramref name="service"/> there.</summary>
    internal static string Grant(string ns, string name, string from, string service) => $$$"""
        apiVersion: gateway.networking.k8s.io/v1beta1
        kind: ReferenceGrant
        metadata: {name: {{{name}}}, namespace: {{{ns}}}}
        spec:
          from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {{{from}}}}]
          to: [{group: "", kind: Service, name: {{{service}}}}]
        ---

        """;

    private static string H2cService(string ns, string name, bool optOut) => $$$"""
        apiVersion: v1
        kind: Service
        metadata: {name: {{{name}}}, namespace: {{{ns}}}{{{(optOut ? ", labels: {istio.io/use-waypoint: none}" : "")}}}}
        spec:
          selector: {app: infra-backend-v2}
          ports: [{name: grpc-web, port: 8080, targetPort: http, appProtocol: kubernetes.io/h2c}]
        ---

        """;

    /// <summary>A feature's Service (selecting infra-backend-v1) and one HTTPRoute of the same name on it.</summary>
    private string Route(string ns, string name, string rules) => Service(ns, name) + RouteOnly(ns, name, name, rules + "\n" + ReadyRule);

    private string Service(string ns, string name, int port = 80, int? secondPort = null)
    {
        _routedServices.Add((name, port));
        if (secondPort is not { } second) return MeshYaml.Service(name, ns, "infra-backend-v1", port, "http", portName: "http");
        _routedServices.Add((name, second));
        return $$$"""
            apiVersion: v1
            kind: Service
            metadata: {name: {{{name}}}, namespace: {{{ns}}}}
            spec:
              selector: {app: infra-backend-v1}
              ports: [{name: http, port: {{{port}}}, targetPort: http}, {name: http-alt, port: {{{second}}}, targetPort: http}]
            ---

            """;
    }

    private static string RouteOnly(string ns, string name, string service, string rules, string? created = null, int? parentPort = 80,
        string? parentNamespace = null) => $$$"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: {{{name}}}, namespace: {{{ns}}}{{{(created is null ? "" : ", creationTimestamp: \"" + created + "\"")}}}}
        spec:
          parentRefs: [{group: "", kind: Service, name: {{{service}}}{{{(parentNamespace is null ? "" : ", namespace: " + parentNamespace)}}}{{{(parentPort is { } p ? ", port: " + p : "")}}}}]
          rules:
        {{{rules.TrimEnd('\n')}}}
        ---

        """;
}

/// <summary>What one request got back: the status, the response headers and, when the echo answered, what it saw.</summary>
internal sealed record ConformanceResponse(HttpStatusCode Status, Dictionary<string, string> Headers, JsonElement? Echo, TimeSpan Elapsed, string Body = "")
{
    public int Code => (int)Status;

    /// <summary>The app label of the backend that answered (the echo's <c>service</c>), or null when none did.</summary>
    public string? Service => Echo?.GetProperty("service").GetString();

    public string? Path => Echo?.GetProperty("path").GetString();

    public string? EchoHost => Echo?.GetProperty("host").GetString();

    /// <summary>A request header as the backend received it, its values joined by ',' (the conformance suite's form).</summary>
    public string? RequestHeader(string name)
    {
        if (Echo is not { } echo) return null;
        foreach (var h in echo.GetProperty("headers").EnumerateObject())
        {
            if (string.Equals(h.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return string.Join(",", h.Value.EnumerateArray().Select(v => v.GetString()));
            }
        }
        return null;
    }

    public string? Header(string name) => Headers.GetValueOrDefault(name);

    public override string ToString() =>
        $"HTTP {Code} from {Service ?? "no backend"}; headers {string.Join("; ", Headers.Select(h => h.Key + ": " + h.Value))}; echo {Echo?.GetRawText()}";
}

/// <summary>An HTTP client in the client pod (through its ztunnel's SOCKS5 port) that never follows redirects.</summary>
internal sealed class ConformanceClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _keepAlive;

    public ConformanceClient(MeshRun.Component pod, bool keepAlive)
    {
        _keepAlive = keepAlive;
        var handler = new SocketsHttpHandler
        {
            Proxy = new WebProxy($"socks5://{pod.Address}:15080"),
            UseProxy = true,
            AllowAutoRedirect = false,
            PooledConnectionLifetime = keepAlive ? Timeout.InfiniteTimeSpan : TimeSpan.Zero,
            ConnectCallback = (ctx, ct) => MeshRun.PodClient.ConnectNoDelayAsync(ctx, ct),
        };
        _http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
    }

    public Task<ConformanceResponse> SendAsync(HttpMethod method, string url, params (string Name, string Value)[] headers) =>
        SendAsync(method, url, requestBody: null, headers);

    /// <summary>A request with <paramref name="body"/> (sent with its Content-Length) when not null.</summary>
    public async Task<ConformanceResponse> SendAsync(HttpMethod method, string url, byte[]? requestBody, params (string Name, string Value)[] headers)
    {
        var ct = TestContext.Current.CancellationToken;
        using var request = new HttpRequestMessage(method, url);
        if (requestBody is not null) request.Content = new ByteArrayContent(requestBody);
        foreach (var (name, value) in headers) request.Headers.TryAddWithoutValidation(name, value);
        if (!_keepAlive) request.Headers.ConnectionClose = true;
        var clock = Stopwatch.StartNew();
        using var response = await _http.SendAsync(request, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        var elapsed = clock.Elapsed;
        var responseHeaders = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var h in response.Headers.Concat(response.Content.Headers)) responseHeaders[h.Key] = string.Join(",", h.Value);
        JsonElement? echo = null;
        if (body.StartsWith('{'))
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.TryGetProperty("service", out _)) echo = doc.RootElement.Clone();
        }
        return new ConformanceResponse(response.StatusCode, responseHeaders, echo, elapsed, body);
    }

    public void Dispose() => _http.Dispose();
}
