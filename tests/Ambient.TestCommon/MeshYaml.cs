namespace Ambient.TestCommon;

/// <summary>
/// The tests' one builder of mesh YAML (the Kubernetes-shaped folder istiod-lite and ambientctl read). Each method
/// returns whole documents, each ended by "---", so a mesh is the concatenation of the parts: <c>Namespace(ns) +
/// ServiceAccount(ns, "client") + Sleep(...)</c>. YAML that tests the parser itself (bad syntax, odd fields, line
/// numbers) stays literal in its test.
/// </summary>
public static class MeshYaml
{
    /// <summary>A namespace, in the mesh by default; <paramref name="dataplaneMode"/> null writes no label.</summary>
    public static string Namespace(string name, string? dataplaneMode = "ambient") => $"""
        apiVersion: v1
        kind: Namespace
        metadata:
          name: {name}{(dataplaneMode is null ? "" : $"\n  labels:\n    istio.io/dataplane-mode: {dataplaneMode}")}
        ---

        """;

    public static string ServiceAccount(string ns, string name) => $$"""
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: {{name}}, namespace: {{ns}}}
        ---

        """;

    /// <summary>Namespace demo (ambient) with service accounts client and echo, and namespace legacy (not in the mesh).</summary>
    public static string DemoNamespaces { get; } =
        Namespace("demo") + Namespace("legacy", dataplaneMode: null) + ServiceAccount("demo", "client") + ServiceAccount("demo", "echo");

    /// <summary>An ambient/echo pod with container port 8080 named http; <paramref name="version"/> null = no version label.</summary>
    public static string Pod(string name, string ns, string node, string sa, string app, string? version = null, string? podIp = null) => $"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          namespace: {ns}
          labels:
            app: {app}{(version is null ? "" : $"\n    version: {version}")}
        spec:
          serviceAccountName: {sa}
          nodeName: {node}
          containers:
          - name: main
            image: ambient/echo
            ports:
            - name: http
              containerPort: 8080
        """ + (podIp is null ? "" : $"\nstatus:\n  podIP: {podIp}") + "\n---\n";

    /// <summary>
    /// A Service selecting app=<paramref name="app"/> with one port; the port is named p{port} unless
    /// <paramref name="portName"/> says otherwise.
    /// </summary>
    public static string Service(string name, string ns, string app, int port, string targetPort, string? portName = null, string? appProtocol = null) => $"""
        apiVersion: v1
        kind: Service
        metadata:
          name: {name}
          namespace: {ns}
        spec:
          selector:
            app: {app}
          ports:
          - name: {portName ?? "p" + port}
            port: {port}
            targetPort: {targetPort}{(appProtocol is null ? "" : $"\n    appProtocol: {appProtocol}")}
        ---

        """;

    /// <summary>An ambient/sleep pod labelled app=<paramref name="name"/>.</summary>
    public static string Sleep(string ns, string name, string serviceAccount, string node) =>
        AppPod(ns, name, serviceAccount, node, "[{name: sleep, image: ambient/sleep}]");

    /// <summary>An ambient/echo pod (port 8080 named http) with a Service of the same name in front of it (port 80 -> http).</summary>
    public static string Echo(string ns, string name, string serviceAccount, string node) =>
        AppPod(ns, name, serviceAccount, node, "[{name: echo, image: ambient/echo, ports: [{name: http, containerPort: 8080}]}]")
        + Service(name, ns, name, 80, "http", portName: "http");

    private static string AppPod(string ns, string name, string serviceAccount, string node, string containers) => $$$"""
        apiVersion: v1
        kind: Pod
        metadata: {name: {{{name}}}, namespace: {{{ns}}}, labels: {app: {{{name}}}}}
        spec:
          serviceAccountName: {{{serviceAccount}}}
          nodeName: {{{node}}}
          containers: {{{containers}}}
        ---

        """;
}
