using System.Text.Json;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Local;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

public class GetCommandTests
{
    private static readonly OutputStyle Wide = new(200, Color: false);

    private const string Waypoint = """
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: waypoint, namespace: demo, labels: {istio.io/waypoint-for: service}}
        spec:
          gatewayClassName: istio-waypoint
          listeners: [{name: mesh, port: 15008, protocol: HBONE}]
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: demo}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {nodeName: node-1, containers: [{name: web, image: ambient/echo}]}
        ---

        """;

    private static (int Code, string Out, string Err) Get(string config, string kind, string? name = null, string? ns = "default", string? output = null,
        LocalState? state = null, IResourceStatusSource? status = null)
    {
        var snapshot = MeshConfig.Read(config);
        var o = new StringWriter();
        var e = new StringWriter();
        var code = GetCommand.Run(new GetCommand.GetRequest(kind, name, ns, output), snapshot.Resources.AddRange(snapshot.Ignored),
            new MeshRuntime(snapshot.Resources, state, status), o, e, Wide);
        return (code, o.ToString(), e.ToString());
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Theory]
    [InlineData("pods")]
    [InlineData("po")]
    [InlineData("pod")]
    [InlineData("Pod")]
    public void KindNames_AsKubectlTakesThem(string name) => Assert.Equal("Pod", ResourceKinds.Find(name)!.Kind);

    [Fact]
    public void ShortNames_CoverEveryKindTheMeshReads()
    {
        foreach (var (shortName, kind) in new[] { ("ns", "Namespace"), ("svc", "Service"), ("sa", "ServiceAccount"), ("gtw", "Gateway"), ("deploy", "Deployment"), ("httproutes", "HTTPRoute") })
        {
            Assert.Equal(kind, ResourceKinds.Find(shortName)?.Kind);
        }
    }

    [Fact]
    public void Pods_TableWithIpNodeAndStatusFromTheLocalState()
    {
        var plan = MeshPlan.Load(RepoPaths.SampleMesh, out _)!;
        var echo = plan.Containers.Single(c => c.Pod == "echo-v1");
        var state = new LocalState(1, 1, RepoPaths.SampleMesh, "/tmp/state", "127.0.0.1", LocalState.PhaseReady, null,
        [
            new ComponentRecord("pod-demo-echo-v1", "pod", 4242, 1, echo.Address.ToString(), "node-2", "/tmp/echo.log", 2,
                new PodRecord("demo", "echo-v1", "echo", true, new Dictionary<string, string>())),
        ]);
        var (code, output, _) = Get(RepoPaths.SampleMesh, "po", ns: "demo", state: state);
        Assert.Equal(0, code);
        var lines = Lines(output);
        Assert.Equal(["NAME", "READY", "STATUS", "RESTARTS", "IP", "NODE"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["echo-v1", "1/1", "Running", "2", echo.Address.ToString(), "node-2"], lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        // Declared but not run by the mesh: Pending.
        Assert.Equal("Pending", lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[2]);
    }

    [Fact]
    public void AllNamespaces_AddsTheNamespaceColumn_AndWideAddsColumns()
    {
        var (_, output, _) = Get(RepoPaths.SampleMesh, "svc", ns: null, output: "wide");
        var lines = Lines(output);
        Assert.StartsWith("NAMESPACE", lines[0], StringComparison.Ordinal);
        Assert.Contains("SELECTOR", lines[0], StringComparison.Ordinal);
        Assert.Contains("80/TCP", lines[1], StringComparison.Ordinal);
        Assert.Contains("app=echo", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public void Namespaces_AreClusterScoped()
    {
        var (_, output, _) = Get(RepoPaths.SampleMesh, "ns", ns: "demo");
        Assert.Equal(["demo", "legacy"], Lines(output).Skip(1).Select(l => l.Split(' ')[0]));
        Assert.Contains("ambient", Lines(output)[1], StringComparison.Ordinal);
    }

    [Fact]
    public void OneResourceAsJson_AndAListAsYaml()
    {
        var (code, json, _) = Get(RepoPaths.SampleMesh, "svc", "echo", "demo", "json");
        Assert.Equal(0, code);
        var svc = JsonDocument.Parse(json).RootElement;
        Assert.Equal("Service", svc.GetProperty("kind").GetString());
        Assert.Equal("demo", svc.GetProperty("metadata").GetProperty("namespace").GetString());
        Assert.Equal(80, svc.GetProperty("spec").GetProperty("ports")[0].GetProperty("port").GetInt32());

        var (_, yaml, _) = Get(RepoPaths.SampleMesh, "pods", ns: "demo", output: "yaml");
        Assert.StartsWith("apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: client\n", yaml, StringComparison.Ordinal);
        Assert.Contains("\nkind: List\n", yaml, StringComparison.Ordinal);
        Assert.Contains("      ports:\n      - name: http\n        containerPort: 8080\n", yaml, StringComparison.Ordinal);
    }

    [Fact]
    public void GatewayStatus_ComesFromTheStatusSource_ElseDash()
    {
        using var dir = new TempDir();
        dir.Write("mesh.yaml", MeshYaml.Namespace("demo") + Waypoint);
        var (_, table, _) = Get(dir.Path, "gtw", ns: "demo");
        Assert.Equal(["waypoint", "istio-waypoint", "service", "-"], Lines(table)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(4));
        var (_, deploy, _) = Get(dir.Path, "deploy", ns: "demo");
        Assert.Equal("web", Lines(deploy)[1].Trim());
    }

    // Captured from istiod-lite's /debug/waypoints on `local up` of samples/mesh with `waypoint apply -n demo
    // --enroll-namespace` and a route whose second backend does not exist (waypoint list trimmed).
    private const string DebugWaypoints = """
        {
          "configGeneration": 1,
          "waypoints": [ { "namespace": "demo", "name": "waypoint", "routes": [ "demo/echo-split" ] } ],
          "gateways": [
            { "namespace": "demo", "name": "waypoint", "status": { "conditions": [
              { "type": "Accepted", "status": "True", "reason": "Accepted", "message": "accepted as a waypoint" },
              { "type": "Programmed", "status": "True", "reason": "Programmed", "message": "runs as pod demo/waypoint-pphm4gpt8d-7j5z7 on node node-1, address 127.18.254.240" } ] } }
          ],
          "httpRoutes": [
            { "namespace": "demo", "name": "echo-split", "status": { "parents": [
              { "parentRef": { "group": "", "kind": "Service", "namespace": "demo", "name": "echo", "port": 80 },
                "controllerName": "istio.io/mesh-controller",
                "conditions": [
                  { "type": "Accepted", "status": "True", "reason": "Accepted", "message": "bound to waypoint demo/waypoint through Service demo/echo" },
                  { "type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound", "message": "backendRef Service demo/ghost does not exist" } ] } ] } }
          ]
        }
        """;

    private const string SplitRoute = """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: echo-split, namespace: demo}
        spec:
          parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
          rules:
          - backendRefs: [{name: echo, port: 80, weight: 90}, {name: ghost, port: 80, weight: 10}]
        ---

        """;

    [Fact]
    public void GatewayAndRouteStatus_FromIstiodLitesDebugWaypoints_WithReasons()
    {
        using var dir = new TempDir();
        dir.Write("mesh.yaml", MeshYaml.Namespace("demo") + Waypoint + SplitRoute);
        var status = IstiodResourceStatus.Parse(DebugWaypoints)!;
        var (_, gateways, _) = Get(dir.Path, "gtw", ns: "demo", status: status);
        Assert.Equal(["waypoint", "istio-waypoint", "service", "True"], Lines(gateways)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var (_, routes, _) = Get(dir.Path, "httproutes", ns: "demo", status: status);
        Assert.Equal(["echo-split", "*", "Service/echo:80", "True", "False/BackendNotFound"], Lines(routes)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));

        var (_, json, _) = Get(dir.Path, "httproute", "echo-split", ns: "demo", output: "json", status: status);
        var parent = JsonDocument.Parse(json).RootElement.GetProperty("status").GetProperty("parents")[0];
        Assert.Equal("istio.io/mesh-controller", parent.GetProperty("controllerName").GetString());
        Assert.Equal("backendRef Service demo/ghost does not exist", parent.GetProperty("conditions")[1].GetProperty("message").GetString());
        var (_, yaml, _) = Get(dir.Path, "gtw", "waypoint", ns: "demo", output: "yaml", status: status);
        Assert.Contains("status:\n  conditions:\n  - type: Accepted\n    status: \"True\"\n    reason: Accepted\n", yaml, StringComparison.Ordinal);
    }

    private const string Policies = """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: allow-get, namespace: demo}
        spec:
          selector: {matchLabels: {app: web}}
          action: ALLOW
          rules: [{to: [{operation: {methods: [GET]}}]}]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: deny-other, namespace: demo}
        spec:
          action: DENY
          rules: [{from: [{source: {principals: [cluster.local/ns/demo/sa/other]}}]}]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: at-waypoint, namespace: demo}
        spec:
          targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
          action: DENY
          rules: [{to: [{operation: {paths: [/admin]}}]}]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: at-service, namespace: demo}
        spec:
          targetRefs: [{kind: Service, group: "", name: web}]
          action: ALLOW
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: demo}
        spec:
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: 8080}]
        ---

        """;

    // The shape of istiod-lite's /debug/authorizationpolicies (fields `get` does not read left out).
    private const string DebugPolicies = """
        {"rootNamespace": "istio-system", "policies": [
          {"namespace": "demo", "name": "allow-get", "action": "ALLOW", "enforcedBy": "ztunnel", "scope": "WORKLOAD_SELECTOR", "dryRun": false, "rules": 1,
           "warnings": ["rules[0]: L7 attributes (methods) in an ALLOW rule enforced by ztunnel: this rule never matches"]},
          {"namespace": "demo", "name": "deny-other", "action": "DENY", "enforcedBy": "ztunnel", "scope": "NAMESPACE", "dryRun": false, "rules": 1, "warnings": []},
          {"namespace": "demo", "name": "at-waypoint", "action": "DENY", "enforcedBy": "waypoint", "dryRun": false, "rules": 1, "warnings": []},
          {"namespace": "demo", "name": "at-service", "action": "ALLOW", "enforcedBy": "waypoint", "dryRun": false, "rules": 0, "warnings": []}
        ]}
        """;

    private static string[] Cells(string line) => line.Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Theory]
    [InlineData("authorizationpolicies")]
    [InlineData("authorizationpolicy")]
    [InlineData("ap")]
    [InlineData("AuthorizationPolicy")]
    public void AuthorizationPolicy_KindNames(string name) => Assert.Equal("AuthorizationPolicy", ResourceKinds.Find(name)!.Kind);

    [Fact]
    public void AuthorizationPolicies_ActionWhereEnforcedAndWarnings_FromIstiod()
    {
        using var dir = new TempDir();
        dir.Write("mesh.yaml", MeshYaml.Namespace("demo") + Waypoint + Policies);
        var fetched = 0;
        var status = IstiodResourceStatus.Parse(DebugWaypoints, () => { fetched++; return DebugPolicies; })!;
        var (code, table, _) = Get(dir.Path, "ap", ns: "demo", status: status);
        Assert.Equal(0, code);
        var lines = Lines(table);
        Assert.Equal(["NAME", "ACTION", "ENFORCED-BY", "WARNINGS"], Cells(lines[0]));
        Assert.Equal(["allow-get", "ALLOW", "ztunnel", "rules[0]: L7 attributes (methods) in an ALLOW rule enforced by ztunnel: this rule never matches"], Cells(lines[1]));
        Assert.Equal(["at-service", "ALLOW", "none (service/web has no waypoint)", "<none>"], Cells(lines[2]));
        Assert.Equal(["at-waypoint", "DENY", "waypoint/waypoint", "<none>"], Cells(lines[3]));
        Assert.Equal(["deny-other", "DENY", "ztunnel", "<none>"], Cells(lines[4]));
        Assert.Equal(1, fetched);

        // The Service's waypoint enforces what targets the Service; -o wide adds the scope, dry-run and rule count.
        dir.Write("mesh.yaml", MeshYaml.Namespace("demo") + Waypoint + Policies.Replace("metadata: {name: web, namespace: demo}", "metadata: {name: web, namespace: demo, labels: {istio.io/use-waypoint: waypoint}}", StringComparison.Ordinal));
        (_, table, _) = Get(dir.Path, "ap", ns: "demo", output: "wide", status: IstiodResourceStatus.Parse(DebugWaypoints, () => DebugPolicies)!);
        lines = Lines(table);
        Assert.Equal(["NAME", "ACTION", "ENFORCED-BY", "WARNINGS", "SCOPE", "DRY-RUN", "RULES"], Cells(lines[0]));
        Assert.Equal(["at-service", "ALLOW", "waypoint/waypoint", "<none>", "<none>", "false", "0"], Cells(lines[2]));
        Assert.Equal(["deny-other", "DENY", "ztunnel", "<none>", "NAMESPACE", "false", "1"], Cells(lines[4]));
    }

    [Fact]
    public void AuthorizationPolicies_WithoutAMesh_EnforcementFromTheSpec_WarningsUnknown()
    {
        using var dir = new TempDir();
        dir.Write("mesh.yaml", MeshYaml.Namespace("demo") + Waypoint + Policies);
        var (_, table, _) = Get(dir.Path, "authorizationpolicies", "allow-get", ns: "demo");
        Assert.Equal(["allow-get", "ALLOW", "ztunnel", "-"], Cells(Lines(table)[1]));
        (_, table, _) = Get(dir.Path, "ap", "at-waypoint", ns: "demo");
        Assert.Equal(["at-waypoint", "DENY", "waypoint/waypoint", "-"], Cells(Lines(table)[1]));
    }

    [Fact]
    public void AuthorizationPolicy_Yaml_HasTheSpecAndIstiodsStatus()
    {
        using var dir = new TempDir();
        dir.Write("mesh.yaml", MeshYaml.Namespace("demo") + Waypoint + Policies);
        var status = IstiodResourceStatus.Parse(DebugWaypoints, () => DebugPolicies)!;
        var (code, json, _) = Get(dir.Path, "ap", "allow-get", ns: "demo", output: "json", status: status);
        Assert.Equal(0, code);
        var doc = JsonDocument.Parse(json).RootElement;
        Assert.Equal("AuthorizationPolicy", doc.GetProperty("kind").GetString());
        Assert.Equal("ALLOW", doc.GetProperty("spec").GetProperty("action").GetString());
        Assert.Equal("ztunnel", doc.GetProperty("status").GetProperty("enforcedBy").GetString());
        Assert.Equal("WORKLOAD_SELECTOR", doc.GetProperty("status").GetProperty("scope").GetString());
        Assert.Single(doc.GetProperty("status").GetProperty("warnings").EnumerateArray());
        var (_, yaml, _) = Get(dir.Path, "ap", "allow-get", ns: "demo", output: "yaml", status: status);
        Assert.Contains("status:\n  enforcedBy: ztunnel\n", yaml, StringComparison.Ordinal);
    }

    private const string PeerAuthentications = """
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: demo}
        spec:
          mtls: {mode: STRICT}
        ---
        apiVersion: security.istio.io/v1beta1
        kind: PeerAuthentication
        metadata: {name: web, namespace: demo}
        spec:
          selector: {matchLabels: {app: web}}
          mtls: {mode: STRICT}
          portLevelMtls:
            8080: {mode: PERMISSIVE}
        ---

        """;

    // The peerAuthentications list of istiod-lite's /debug/authorizationpolicies (fields `get` does not read left out).
    private const string DebugPeerAuthentications = """
        {"rootNamespace": "istio-system", "policies": [], "peerAuthentications": [
          {"namespace": "demo", "name": "default", "level": "namespace", "mode": "STRICT", "warnings": [], "enforcedAs": "istio-system/istio_converted_static_strict"},
          {"namespace": "demo", "name": "web", "level": "workload", "mode": "STRICT", "warnings": [], "enforcedAs": "demo/converted_peer_authentication_web",
           "ztunnel": {"name": "converted_peer_authentication_web", "namespace": "demo", "scope": "WORKLOAD_SELECTOR", "action": "DENY"}}
        ]}
        """;

    [Theory]
    [InlineData("peerauthentications")]
    [InlineData("peerauthentication")]
    [InlineData("pa")]
    [InlineData("PeerAuthentication")]
    public void PeerAuthentication_KindNames(string name) => Assert.Equal("PeerAuthentication", ResourceKinds.Find(name)!.Kind);

    [Fact]
    public void PeerAuthentications_ModesAndWhatZtunnelEnforces_FromIstiod()
    {
        using var dir = new TempDir();
        dir.Write("mesh.yaml", MeshYaml.Namespace("demo") + PeerAuthentications);
        var status = IstiodResourceStatus.Parse(DebugWaypoints, () => DebugPeerAuthentications)!;
        var (code, table, _) = Get(dir.Path, "pa", ns: "demo", output: "wide", status: status);
        Assert.Equal(0, code);
        var lines = Lines(table);
        Assert.Equal(["NAME", "MODE", "PORT-LEVEL", "ENFORCED-AS", "WARNINGS", "LEVEL", "SELECTOR"], Cells(lines[0]));
        Assert.Equal(["default", "STRICT", "<none>", "istio-system/istio_converted_static_strict", "<none>", "namespace", "<none>"], Cells(lines[1]));
        Assert.Equal(["web", "STRICT", "8080=PERMISSIVE", "demo/converted_peer_authentication_web", "<none>", "workload", "app=web"], Cells(lines[2]));

        // Without a mesh: the spec only.
        (_, table, _) = Get(dir.Path, "peerauthentications", "web", ns: "demo");
        Assert.Equal(["web", "STRICT", "8080=PERMISSIVE", "-", "-"], Cells(Lines(table)[1]));

        var (_, json, _) = Get(dir.Path, "pa", "web", ns: "demo", output: "json", status: status);
        var doc = JsonDocument.Parse(json).RootElement;
        Assert.Equal("PeerAuthentication", doc.GetProperty("kind").GetString());
        Assert.Equal("security.istio.io/v1beta1", doc.GetProperty("apiVersion").GetString());
        Assert.Equal("STRICT", doc.GetProperty("spec").GetProperty("mtls").GetProperty("mode").GetString());
        Assert.Equal("PERMISSIVE", doc.GetProperty("spec").GetProperty("portLevelMtls").GetProperty("8080").GetProperty("mode").GetString());
        Assert.Equal("web", doc.GetProperty("spec").GetProperty("selector").GetProperty("matchLabels").GetProperty("app").GetString());
        Assert.Equal("demo/converted_peer_authentication_web", doc.GetProperty("status").GetProperty("enforcedAs").GetString());
    }

    [Fact]
    public void Status_UnknownWhenIstiodDoesNotAnswerOrAnswersSomethingElse()
    {
        Assert.Null(IstiodResourceStatus.Parse("not json"));
        using var dir = new TempDir();
        dir.Write("mesh.yaml", MeshYaml.Namespace("demo") + Waypoint);
        var state = new LocalState(1, 1, dir.Path, "/tmp/state", "127.0.0.1", LocalState.PhaseReady, null, []) with { ControlAddress = "127.255.255.254" };
        var (_, table, _) = Get(dir.Path, "gtw", ns: "demo", status: IstiodResourceStatus.FromMesh(state));
        Assert.Equal("-", Lines(table)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[3]);
    }

    [Fact]
    public void Yaml_QuotesWhatWouldNotReadBackAsTheSameString()
    {
        Assert.Equal("ambient", ResourceDocument.Scalar("ambient"));
        Assert.Equal("\"true\"", ResourceDocument.Scalar("true"));
        Assert.Equal("\"8080\"", ResourceDocument.Scalar("8080"));
        Assert.Equal("\"-\"", ResourceDocument.Scalar("-"));
        Assert.Equal("\"a: b\"", ResourceDocument.Scalar("a: b"));
        Assert.Equal("\"\"", ResourceDocument.Scalar(""));
    }

    [Fact]
    public void Errors_AsKubectlWordsThem()
    {
        var (code, _, error) = Get(RepoPaths.SampleMesh, "widgets");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("doesn't have a resource type \"widgets\"", error, StringComparison.Ordinal);
        (code, _, error) = Get(RepoPaths.SampleMesh, "po", "nosuch", "demo");
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("pods \"nosuch\" not found", error, StringComparison.Ordinal);
        (code, _, error) = Get(RepoPaths.SampleMesh, "po", ns: "empty");
        Assert.Equal(0, code);
        Assert.Contains("No resources found in empty namespace.", error, StringComparison.Ordinal);
    }
}
