using Ambient.TestCommon;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>Small meshes the functional tests start from.</summary>
internal static class Meshes
{
    public static string Namespaces => MeshYaml.DemoNamespaces;

    public static string Pod(string name, string ns, string node, string sa, string app, string version = "v1") =>
        MeshYaml.Pod(name, ns, node, sa, app, version);

    public static string EchoService { get; } = MeshYaml.Service("echo", "demo", "echo", 80, "http", portName: "http", appProtocol: "http");

    public static Dictionary<string, string> Demo() => new()
    {
        ["namespaces.yaml"] = Namespaces,
        ["client.yaml"] = Pod("client", "demo", "node-1", "client", "client"),
        ["echo.yaml"] = Pod("echo-v1", "demo", "node-2", "echo", "echo") + EchoService,
        ["legacy.yaml"] = Pod("legacy-echo", "legacy", "node-2", "default", "legacy-echo"),
    };
}
