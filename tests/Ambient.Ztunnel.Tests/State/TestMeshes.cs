using Ambient.TestCommon;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>YAML meshes the ztunnel control-plane tests start istiod-lite with.</summary>
internal static class TestMeshes
{
    public const string Uid = "Kubernetes//Pod/";

    public static string Namespaces => MeshYaml.DemoNamespaces;

    public static string Pod(string name, string ns, string node, string sa, string app, string? podIp = null) =>
        MeshYaml.Pod(name, ns, node, sa, app, version: null, podIp);

    /// <summary>
    /// client on node-1; echo-v1/echo-v2 (HBONE) and legacy-echo (not in the mesh) on node-2. Services: demo/echo
    /// port 80 -> named "http" (8080 on the pods), demo/echo port 81 -> 9081, demo/grpc port 90 -> named "grpc"
    /// (no pod declares it), demo/nobody (no endpoints), legacy/legacy-echo 80 -> 8080.
    /// </summary>
    public static Dictionary<string, string> Demo() => new()
    {
        ["namespaces.yaml"] = Namespaces,
        ["client.yaml"] = Pod("client", "demo", "node-1", "client", "client"),
        ["echo.yaml"] = Pod("echo-v1", "demo", "node-2", "echo", "echo") + Pod("echo-v2", "demo", "node-2", "echo", "echo")
            + """
            apiVersion: v1
            kind: Service
            metadata:
              name: echo
              namespace: demo
            spec:
              selector:
                app: echo
              ports:
              - name: http
                port: 80
                targetPort: http
              - name: raw
                port: 81
                targetPort: 9081
            """,
        ["grpc.yaml"] = MeshYaml.Service("grpc", "demo", "echo", 90, "grpc"),
        ["nobody.yaml"] = MeshYaml.Service("nobody", "demo", "nothing-selected", 80, "8080"),
        ["legacy.yaml"] = Pod("legacy-echo", "legacy", "node-2", "default", "legacy-echo")
            + MeshYaml.Service("legacy-echo", "legacy", "legacy-echo", 80, "8080"),
    };
}
