using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Config;

public class SampleFolderTests
{
    [Fact]
    public void SampleMeshFolderLoadsWithoutErrors()
    {
        using var source = new FolderConfigSource(RepoPaths.SampleMesh, new ListLogger<FolderConfigSource>());
        source.Start();
        var s = source.Current;

        Assert.Empty(s.Errors);
        Assert.Empty(s.Ignored);
        Assert.Equal(
            new[]
            {
                "Namespace//demo", "Namespace//legacy",
                "Pod/demo/client", "Pod/demo/echo-v1", "Pod/demo/echo-v2", "Pod/legacy/legacy-echo",
                "Service/demo/echo", "Service/demo/echo-v1", "Service/demo/echo-v2", "Service/legacy/legacy-echo",
                "ServiceAccount/demo/client", "ServiceAccount/demo/echo",
            },
            s.Resources.Select(r => r.Key));

        var byKey = s.Resources.ToDictionary(r => r.Key);
        Assert.Equal("ambient", byKey["Namespace//demo"].Metadata.Label("istio.io/dataplane-mode"));
        Assert.Empty(byKey["Namespace//legacy"].Metadata.Labels);

        var client = (PodResource)byKey["Pod/demo/client"];
        Assert.Equal(("node-1", "client", "ambient/sleep"), (client.NodeName, client.ServiceAccountName, client.Containers[0].Image));
        foreach (var (name, version) in new[] { ("echo-v1", "v1"), ("echo-v2", "v2") })
        {
            var echo = (PodResource)byKey["Pod/demo/" + name];
            Assert.Equal(("node-2", "echo", "ambient/echo"), (echo.NodeName, echo.ServiceAccountName, echo.Containers[0].Image));
            Assert.Equal("echo", echo.Metadata.Label("app"));
            Assert.Equal(version, echo.Metadata.Label("version"));
            Assert.Equal(new ContainerPort("http", 8080, "TCP"), Assert.Single(echo.Containers[0].Ports));
        }
        Assert.Equal("node-2", ((PodResource)byKey["Pod/legacy/legacy-echo"]).NodeName);

        var svc = (ServiceResource)byKey["Service/demo/echo"];
        Assert.Equal("echo", svc.Selector["app"]);
        Assert.Equal(new ServicePortSpec("http", 80, TargetPort.FromName("http"), "http", "TCP"), Assert.Single(svc.Ports));
    }
}
