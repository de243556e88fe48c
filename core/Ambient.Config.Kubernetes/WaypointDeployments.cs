using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Ambient.Core.Config;
using Ambient.Core.Model;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Ambient.Config.Kubernetes;

/// <summary>What every waypoint Deployment runs with: the image and how the waypoint reaches istiod-lite.</summary>
/// <param name="Image">The waypoint image (<c>--waypoint-image</c>).</param>
/// <param name="Istiod">istiod-lite's address as pods reach it (its Service, <c>https://istiod.istio-system.svc:15012</c>).</param>
/// <param name="RootCertificatePath">The mesh root istiod-lite hands out; published to the waypoint's namespace as
/// ConfigMap <c>istio-ca-root-cert</c>, as Istio's namespace controller does, so the waypoint pod can mount it.</param>
internal sealed record WaypointDeploymentOptions(string Image, string Istiod, string RootCertificatePath, string TrustDomain, string ClusterId)
{
    public const string DefaultImage = "ambient/waypoint";
    public const string DefaultIstiod = "https://istiod.istio-system.svc:15012";
}

/// <summary>
/// Istio's gateway deployment controller for class <c>istio-waypoint</c>: for each such Gateway a ServiceAccount, a
/// Deployment running the waypoint and a Service (HBONE 15008, status 15021), all named after the Gateway, in its
/// namespace, owned by it (the garbage collector removes them with it) and labelled with its name, applied with
/// server-side apply as field manager <see cref="FieldManager"/>. An object is applied only when what the Gateway
/// asks for differs from what was last applied, so a push that changes no Gateway writes nothing; a Gateway that goes
/// away has its objects deleted at once rather than when the collector gets to them.
/// </summary>
internal sealed partial class WaypointDeployments : LatestWinsWriter<ConfigSnapshot>
{
    /// <summary>Istio's field manager for the objects its gateway controller applies.</summary>
    public const string FieldManager = "istio.io/gateway-controller";

    /// <summary>Istio's trust-bundle ConfigMap, in every namespace that runs a proxy.</summary>
    public const string RootConfigMap = "istio-ca-root-cert";

    private const string TokenFolder = "/var/run/secrets/tokens";
    private const string RootFolder = "/var/run/secrets/istio";
    private const int StatusPort = 15021;

    private readonly KubernetesConfigSource _source;
    private readonly IKubernetes _client;
    private readonly WaypointDeploymentOptions _options;
    private readonly ILogger _logger;
    // What was last applied, by "kind/namespace/name": the whole desired object as JSON.
    private readonly Dictionary<string, string> _applied = new(StringComparer.Ordinal);
    private int _writes;

    public WaypointDeployments(KubernetesConfigSource source, WaypointDeploymentOptions options, ILogger logger)
        : base(logger)
    {
        _source = source;
        _client = source.Client;
        _options = options;
        _logger = logger;
    }

    /// <summary>How many applies and deletes were sent (for tests).</summary>
    public int Writes => Volatile.Read(ref _writes);

    /// <summary>Applies what changed and deletes what no Gateway asks for any more; false when a write failed.</summary>
    protected override async Task<bool> WriteAsync(ConfigSnapshot config, CancellationToken ct)
    {
        var desired = new Dictionary<string, (string Kind, string Namespace, string Name, JsonObject Body)>(StringComparer.Ordinal);
        var root = ReadRoot();
        foreach (var r in config.Resources)
        {
            if (r is not GatewayResource { IsWaypoint: true } gateway) continue;
            var ns = gateway.Metadata.Namespace;
            var name = gateway.Metadata.Name;
            // The owner must be named by uid; the watch that delivered the Gateway knows it.
            if (_source.UidOf("Gateway", ns, name) is not { } uid) continue;
            foreach (var (kind, body) in Objects(gateway, uid))
            {
                desired[kind + "/" + ns + "/" + name] = (kind, ns, name, body);
            }
            if (root is not null)
            {
                desired["ConfigMap/" + ns + "/" + RootConfigMap] = ("ConfigMap", ns, RootConfigMap, RootConfigMapObject(ns, root));
            }
        }
        var ok = true;
        foreach (var (key, (kind, ns, name, body)) in desired)
        {
            var json = body.ToJsonString();
            if (_applied.TryGetValue(key, out var last) && last == json) continue;
            try
            {
                await ApplyAsync(kind, ns, name, json, ct).ConfigureAwait(false);
                _applied[key] = json;
                Interlocked.Increment(ref _writes);
                Log.Applied(_logger, kind, ns, name);
            }
            catch (Exception e) when (e is HttpOperationException or HttpRequestException or IOException)
            {
                _applied.Remove(key);
                ok = false;
                Log.ApplyFailed(_logger, kind, ns, name, e.Message);
            }
        }
        List<string>? gone = null;
        foreach (var key in _applied.Keys)
        {
            // The trust bundle is the namespace's, not one Gateway's: it stays, as Istio's does.
            if (!desired.ContainsKey(key) && !key.StartsWith("ConfigMap/", StringComparison.Ordinal)) (gone ??= []).Add(key);
        }
        foreach (var key in gone ?? [])
        {
            var parts = key.Split('/');
            try
            {
                await DeleteAsync(parts[0], parts[1], parts[2], ct).ConfigureAwait(false);
                _applied.Remove(key);
                Interlocked.Increment(ref _writes);
                Log.Deleted(_logger, parts[0], parts[1], parts[2]);
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
            {
                _applied.Remove(key); // the garbage collector was first
            }
            catch (Exception e) when (e is HttpOperationException or HttpRequestException or IOException)
            {
                ok = false;
                Log.ApplyFailed(_logger, parts[0], parts[1], parts[2], e.Message);
            }
        }
        return ok;
    }

    private string? ReadRoot()
    {
        try
        {
            return File.ReadAllText(_options.RootCertificatePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.NoRoot(_logger, _options.RootCertificatePath, e.Message);
            return null;
        }
    }

    private async Task ApplyAsync(string kind, string ns, string name, string json, CancellationToken ct)
    {
        var patch = new V1Patch(json, V1Patch.PatchType.ApplyPatch);
        switch (kind)
        {
            case "ServiceAccount":
                (await _client.CoreV1.PatchNamespacedServiceAccountWithHttpMessagesAsync(patch, name, ns, fieldManager: FieldManager, force: true,
                    cancellationToken: ct).ConfigureAwait(false)).Dispose();
                break;
            case "Service":
                (await _client.CoreV1.PatchNamespacedServiceWithHttpMessagesAsync(patch, name, ns, fieldManager: FieldManager, force: true,
                    cancellationToken: ct).ConfigureAwait(false)).Dispose();
                break;
            case "ConfigMap":
                (await _client.CoreV1.PatchNamespacedConfigMapWithHttpMessagesAsync(patch, name, ns, fieldManager: FieldManager, force: true,
                    cancellationToken: ct).ConfigureAwait(false)).Dispose();
                break;
            default:
                (await _client.AppsV1.PatchNamespacedDeploymentWithHttpMessagesAsync(patch, name, ns, fieldManager: FieldManager, force: true,
                    cancellationToken: ct).ConfigureAwait(false)).Dispose();
                break;
        }
    }

    private async Task DeleteAsync(string kind, string ns, string name, CancellationToken ct)
    {
        switch (kind)
        {
            case "ServiceAccount":
                (await _client.CoreV1.DeleteNamespacedServiceAccountWithHttpMessagesAsync(name, ns, cancellationToken: ct).ConfigureAwait(false)).Dispose();
                break;
            case "Service":
                (await _client.CoreV1.DeleteNamespacedServiceWithHttpMessagesAsync(name, ns, cancellationToken: ct).ConfigureAwait(false)).Dispose();
                break;
            default:
                (await _client.AppsV1.DeleteNamespacedDeploymentWithHttpMessagesAsync(name, ns, cancellationToken: ct).ConfigureAwait(false)).Dispose();
                break;
        }
    }

    /// <summary>The ServiceAccount, Deployment and Service of one waypoint Gateway, in the shapes of Istio's waypoint template.</summary>
    internal IEnumerable<(string Kind, JsonObject Body)> Objects(GatewayResource gateway, string uid)
    {
        var ns = gateway.Metadata.Namespace;
        var name = gateway.Metadata.Name;
        yield return ("ServiceAccount", new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "ServiceAccount",
            ["metadata"] = Metadata(gateway, uid),
        });
        yield return ("Deployment", new JsonObject
        {
            ["apiVersion"] = "apps/v1",
            ["kind"] = "Deployment",
            ["metadata"] = Metadata(gateway, uid),
            ["spec"] = new JsonObject
            {
                ["selector"] = new JsonObject { ["matchLabels"] = new JsonObject { [WaypointLabels.GatewayName] = name } },
                ["template"] = new JsonObject
                {
                    ["metadata"] = new JsonObject
                    {
                        ["labels"] = PodLabels(name),
                        // Where Prometheus finds the waypoint's request metrics (its admin port serves them).
                        ["annotations"] = new JsonObject
                        {
                            ["prometheus.io/scrape"] = "true",
                            ["prometheus.io/port"] = StatusPort.ToString(CultureInfo.InvariantCulture),
                            ["prometheus.io/path"] = "/stats/prometheus",
                        },
                    },
                    ["spec"] = PodSpec(name),
                },
            },
        });
        yield return ("Service", new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Service",
            ["metadata"] = Metadata(gateway, uid),
            ["spec"] = new JsonObject
            {
                ["type"] = "ClusterIP",
                ["selector"] = new JsonObject { [WaypointLabels.GatewayName] = name },
                ["ports"] = new JsonArray(
                    new JsonObject { ["name"] = "status-port", ["port"] = StatusPort, ["protocol"] = "TCP", ["appProtocol"] = "tcp" },
                    new JsonObject { ["name"] = "mesh", ["port"] = WaypointLabels.HbonePort, ["protocol"] = "TCP", ["appProtocol"] = "all" }),
            },
        });
    }

    private JsonObject PodSpec(string name) => new()
    {
        ["serviceAccountName"] = name,
        ["terminationGracePeriodSeconds"] = 2,
        ["securityContext"] = new JsonObject
        {
            ["runAsNonRoot"] = true,
            ["runAsUser"] = 1337,
            ["runAsGroup"] = 1337,
            ["seccompProfile"] = new JsonObject { ["type"] = "RuntimeDefault" },
        },
        ["containers"] = new JsonArray(new JsonObject
        {
            ["name"] = "istio-proxy",
            ["image"] = _options.Image,
            ["imagePullPolicy"] = "IfNotPresent",
            ["args"] = new JsonArray(
                "--node", "$(NODE_NAME)", "--namespace", "$(POD_NAMESPACE)", "--name", name, "--pod-name", "$(POD_NAME)",
                "--address", "$(INSTANCE_IP)", "--istiod", _options.Istiod, "--root", RootFolder + "/root-cert.pem",
                "--ca-token-file", TokenFolder + "/istio-token", "--trust-domain", _options.TrustDomain, "--cluster-id", _options.ClusterId),
            ["env"] = new JsonArray(
                FieldEnv("NODE_NAME", "spec.nodeName"), FieldEnv("POD_NAME", "metadata.name"),
                FieldEnv("POD_NAMESPACE", "metadata.namespace"), FieldEnv("INSTANCE_IP", "status.podIP")),
            ["ports"] = new JsonArray(
                new JsonObject { ["name"] = "mesh", ["containerPort"] = WaypointLabels.HbonePort, ["protocol"] = "TCP" },
                new JsonObject { ["name"] = "status-port", ["containerPort"] = StatusPort, ["protocol"] = "TCP" }),
            ["readinessProbe"] = new JsonObject
            {
                ["httpGet"] = new JsonObject { ["path"] = "/healthz/ready", ["port"] = StatusPort },
                ["periodSeconds"] = 15,
                ["failureThreshold"] = 4,
            },
            ["securityContext"] = new JsonObject
            {
                ["allowPrivilegeEscalation"] = false,
                ["readOnlyRootFilesystem"] = true,
                ["capabilities"] = new JsonObject { ["drop"] = new JsonArray("ALL") },
            },
            ["volumeMounts"] = new JsonArray(
                new JsonObject { ["name"] = "istio-token", ["mountPath"] = TokenFolder, ["readOnly"] = true },
                new JsonObject { ["name"] = "istiod-ca-cert", ["mountPath"] = RootFolder, ["readOnly"] = true }),
        }),
        ["volumes"] = new JsonArray(
            // The token the CA reviews (TokenReview): bound to this pod, audience istio-ca, as Istio's proxies'.
            new JsonObject
            {
                ["name"] = "istio-token",
                ["projected"] = new JsonObject
                {
                    ["sources"] = new JsonArray(new JsonObject
                    {
                        ["serviceAccountToken"] = new JsonObject { ["audience"] = "istio-ca", ["expirationSeconds"] = 43200, ["path"] = "istio-token" },
                    }),
                },
            },
            new JsonObject { ["name"] = "istiod-ca-cert", ["configMap"] = new JsonObject { ["name"] = RootConfigMap } }),
    };

    private static JsonObject FieldEnv(string name, string path) => new()
    {
        ["name"] = name,
        ["valueFrom"] = new JsonObject { ["fieldRef"] = new JsonObject { ["fieldPath"] = path } },
    };

    /// <summary>The waypoint pod's labels, as Istio's template sets them (not captured: dataplane-mode none).</summary>
    private static JsonObject PodLabels(string name) => new()
    {
        [WaypointLabels.SidecarInject] = "false",
        [MeshLabels.DataplaneMode] = MeshLabels.DataplaneModeNone,
        [MeshLabels.CanonicalName] = name,
        [MeshLabels.CanonicalRevision] = MeshLabels.DefaultRevision,
        [WaypointLabels.GatewayName] = name,
        [IstioGatewayName] = name,
        [WaypointLabels.GatewayClassName] = GatewayResource.WaypointClass,
        [WaypointLabels.Managed] = WaypointLabels.ManagedByMeshController,
    };

    /// <summary>Istio's older gateway-name label, set beside the Gateway API's.</summary>
    public const string IstioGatewayName = "istio.io/gateway-name";

    /// <summary>Named after the Gateway and owned by it; its labels carried over (as Istio's template does), ours last.</summary>
    private static JsonObject Metadata(GatewayResource gateway, string uid)
    {
        var name = gateway.Metadata.Name;
        var labels = new JsonObject();
        foreach (var (key, value) in gateway.Metadata.Labels)
        {
            labels[key] = value;
        }
        labels[WaypointLabels.GatewayName] = name;
        labels[IstioGatewayName] = name;
        labels[WaypointLabels.GatewayClassName] = GatewayResource.WaypointClass;
        labels[WaypointLabels.Managed] = WaypointLabels.ManagedByMeshController;
        return new JsonObject
        {
            ["name"] = name,
            ["namespace"] = gateway.Metadata.Namespace,
            ["labels"] = labels,
            ["ownerReferences"] = new JsonArray(new JsonObject
            {
                ["apiVersion"] = KubernetesConfigSource.GatewayGroup + "/v1",
                ["kind"] = "Gateway",
                ["name"] = name,
                ["uid"] = uid,
            }),
        };
    }

    private static JsonObject RootConfigMapObject(string ns, string root) => new()
    {
        ["apiVersion"] = "v1",
        ["kind"] = "ConfigMap",
        ["metadata"] = new JsonObject
        {
            ["name"] = RootConfigMap,
            ["namespace"] = ns,
            ["labels"] = new JsonObject { ["istio.io/config"] = "true" },
        },
        ["data"] = new JsonObject { ["root-cert.pem"] = root },
    };

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Applied waypoint {Kind} {Namespace}/{Name}")]
        public static partial void Applied(ILogger logger, string kind, string @namespace, string name);

        [LoggerMessage(2, LogLevel.Information, "Deleted waypoint {Kind} {Namespace}/{Name}: its Gateway is gone")]
        public static partial void Deleted(ILogger logger, string kind, string @namespace, string name);

        [LoggerMessage(3, LogLevel.Warning, "Writing waypoint {Kind} {Namespace}/{Name} failed; retrying: {Message}")]
        public static partial void ApplyFailed(ILogger logger, string kind, string @namespace, string name, string message);

        [LoggerMessage(4, LogLevel.Warning, "The mesh root {Path} cannot be read, so no istio-ca-root-cert is published for waypoints: {Message}")]
        public static partial void NoRoot(ILogger logger, string path, string message);
    }
}
