namespace Ambient.TestCommon;

/// <summary>YAML building blocks the functional tests start istiod-lite with.</summary>
public static class MeshYaml
{
    /// <summary>Namespace demo (ambient) with service accounts client and echo, and namespace legacy (not in the mesh).</summary>
    public const string DemoNamespaces = """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: demo
          labels:
            istio.io/dataplane-mode: ambient
        ---
        apiVersion: v1
        kind: Namespace
        metadata:
          name: legacy
        ---
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: client, namespace: demo}
        ---
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: echo, namespace: demo}
        """;

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
        """ + (podIp is null ? "" : $"\nstatus:\n  podIP: {podIp}\n");
}
