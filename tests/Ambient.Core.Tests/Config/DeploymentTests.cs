using System.Collections.Immutable;
using System.Text.RegularExpressions;
using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core.Model;

namespace Ambient.Core.Tests.Config;

// Deployments in a config folder: parsed as apps/v1 validates them, then expanded into the pods a ReplicaSet would
// create, so the model and the pod supervisor see ordinary pods.
public partial class DeploymentTests
{
    private const string File = "/cfg/shop.yaml";

    // <name>-<10 char template hash>-<5 char suffix>, in Kubernetes' name alphabet.
    [GeneratedRegex("^web-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")]
    private static partial Regex PodNameRegex();

    private static string Deployment(int? replicas = 3, string image = "ambient/echo", string templateLabels = "{app: web, version: v1}", string serviceAccount = "web") => $$"""
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: web, namespace: shop}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          namespace: shop
          labels: {team: a}
        spec:
          {{(replicas is null ? "" : "replicas: " + replicas)}}
          selector:
            matchLabels: {app: web}
          template:
            metadata:
              labels: {{templateLabels}}
              annotations: {note: x}
            spec:
              serviceAccountName: {{serviceAccount}}
              nodeName: node-2
              containers:
                - name: web
                  image: {{image}}
                  args: ["--port", "8080"]
                  ports: [{name: http, containerPort: 8080}]
                  env: [{name: SERVICE_NAME, value: web}]
        """;

    private static ConfigSnapshot Merge(string yaml)
    {
        var parsed = ManifestParser.Parse(File, yaml);
        Assert.Empty(parsed.Errors);
        return ConfigMerge.Merge(1, [new FileContribution(File, parsed.Resources, parsed.Errors)]);
    }

    private static List<PodResource> Pods(ConfigSnapshot snapshot) => snapshot.Resources.OfType<PodResource>().ToList();

    [Fact]
    public void DeploymentIsParsed()
    {
        var result = ManifestParser.Parse(File, Deployment());

        Assert.Empty(result.Errors);
        var d = Assert.IsType<DeploymentResource>(result.Resources[1]);
        Assert.Equal("Deployment/shop/web", d.Key);
        Assert.Equal("apps/v1", d.ApiVersion);
        Assert.Equal(3, d.Replicas);
        Assert.Equal("a", d.Metadata.Label("team"));
        Assert.Equal(ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("app", "web")]), d.Selector, new DictionaryComparer());
        Assert.Equal("v1", d.TemplateLabels["version"]);
        Assert.Equal("x", d.TemplateAnnotations["note"]);
        Assert.Equal("web", d.ServiceAccountName);
        Assert.Equal("node-2", d.NodeName);
        var c = Assert.Single(d.Containers);
        Assert.Equal("ambient/echo", c.Image);
        Assert.Equal(new ContainerPort("http", 8080, "TCP"), Assert.Single(c.Ports));
        Assert.Equal("web", c.Env["SERVICE_NAME"]);
        Assert.Equal(d, ManifestParser.Parse(File, Deployment()).Resources[1]);
    }

    [Fact]
    public void ReplicasDefaultToOne()
    {
        var d = Assert.IsType<DeploymentResource>(ManifestParser.Parse(File, Deployment(replicas: null)).Resources[1]);

        Assert.Equal(1, d.Replicas);
    }

    [Fact]
    public void DeploymentExpandsIntoOrdinaryPods()
    {
        var snapshot = Merge(Deployment());

        Assert.Empty(snapshot.Errors);
        Assert.Single(snapshot.Resources.OfType<DeploymentResource>());
        var pods = Pods(snapshot);
        Assert.Equal(3, pods.Count);
        var hash = pods[0].Metadata.Label(DeploymentPods.TemplateHashLabel);
        Assert.NotNull(hash);
        foreach (var pod in pods)
        {
            Assert.Matches(PodNameRegex(), pod.Metadata.Name);
            Assert.StartsWith("web-" + hash + "-", pod.Metadata.Name, StringComparison.Ordinal);
            Assert.Equal("shop", pod.Metadata.Namespace);
            Assert.Equal(new Dictionary<string, string> { ["app"] = "web", ["version"] = "v1", ["pod-template-hash"] = hash! }, pod.Metadata.Labels);
            Assert.Equal("x", pod.Metadata.Annotations["note"]);
            Assert.Equal("web", pod.ServiceAccountName);
            Assert.Equal("node-2", pod.NodeName);
            Assert.Equal("ambient/echo", Assert.Single(pod.Containers).Image);
            Assert.Equal(new SourceLocation(File, 5), pod.Source);
        }
        Assert.Equal(3, pods.Select(p => p.Metadata.Name).Distinct().Count());

        // The model sees them as workloads like any declared pod.
        var mesh = MeshBuilder.Build(snapshot.Resources);
        Assert.Equal(pods.Select(p => p.Metadata.Name).Order(), mesh.Workloads.Select(w => w.Name).Order());
    }

    [Fact]
    public void PodNamesAreStableAcrossReparses()
    {
        var first = Pods(Merge(Deployment())).Select(p => p.Metadata.Name).ToList();
        var second = Pods(Merge(Deployment())).Select(p => p.Metadata.Name).ToList();

        Assert.Equal(first, second);
        Assert.True(Merge(Deployment()).SameContent(Merge(Deployment())));
    }

    [Fact]
    public void ScalingAddsOrRemovesOnlyTheAffectedPods()
    {
        var three = Pods(Merge(Deployment(replicas: 3))).Select(p => p.Metadata.Name).ToHashSet();
        var five = Pods(Merge(Deployment(replicas: 5))).Select(p => p.Metadata.Name).ToHashSet();
        var two = Pods(Merge(Deployment(replicas: 2))).Select(p => p.Metadata.Name).ToHashSet();

        Assert.Equal(5, five.Count);
        Assert.Superset(three, five);
        Assert.Equal(2, two.Count);
        Assert.Subset(three, two);
        Assert.Empty(Pods(Merge(Deployment(replicas: 0))));
    }

    [Fact]
    public void TemplateChangeRenamesEveryPod()
    {
        var before = Pods(Merge(Deployment())).Select(p => p.Metadata.Name).ToHashSet();
        var after = Pods(Merge(Deployment(image: "ambient/sleep"))).Select(p => p.Metadata.Name).ToHashSet();

        Assert.Empty(before.Intersect(after));
        Assert.Equal(3, after.Count);
    }

    [Fact]
    public void DeploymentWithAMissingServiceAccountIsLeftOutWithAnError()
    {
        var parsed = ManifestParser.Parse(File, Deployment(serviceAccount: "nobody"));
        var snapshot = ConfigMerge.Merge(1, [new FileContribution(File, parsed.Resources, parsed.Errors)]);

        Assert.Empty(Pods(snapshot));
        Assert.Empty(snapshot.Resources.OfType<DeploymentResource>());
        var error = Assert.Single(snapshot.Errors);
        Assert.Equal(new SourceLocation(File, 5), error.Source);
        Assert.Equal("spec.template.spec.serviceAccountName", error.Field);
        Assert.Contains("serviceaccount \"nobody\" not found in namespace \"shop\"", error.Message, StringComparison.Ordinal);
        Assert.Contains("deployment shop/web is ignored", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DeclaredPodOfTheSameNameWins()
    {
        var name = Pods(Merge(Deployment(replicas: 1)))[0].Metadata.Name;
        var yaml = Deployment(replicas: 2) + $"\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  containers: [{{name: c}}]\n";
        var parsed = ManifestParser.Parse(File, yaml);
        var snapshot = ConfigMerge.Merge(1, [new FileContribution(File, parsed.Resources, parsed.Errors)]);

        var pods = Pods(snapshot);
        Assert.Equal(2, pods.Count);
        Assert.Equal("default", Assert.Single(pods, p => p.Metadata.Name == name).ServiceAccountName);
        var error = Assert.Single(snapshot.Errors);
        Assert.Contains($"pod {name} of Deployment shop/web is already defined at {File}:", error.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, int, string, string> BadDeployments => new()
    {
        { "replicas: -1\n  selector: {matchLabels: {app: web}}\n  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c}]}}", 5, "spec.replicas", "must be between 0 and 256" },
        { "replicas: 257\n  selector: {matchLabels: {app: web}}\n  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c}]}}", 5, "spec.replicas", "must be between 0 and 256" },
        { "selector: {matchLabels: {app: web}}\n  template: {metadata: {labels: {app: other}}, spec: {containers: [{name: c}]}}", 6, "spec.template.metadata.labels", "`selector` does not match template `labels`" },
        { "selector: {matchLabels: {app: web}}\n  template: {spec: {containers: [{name: c}]}}", 6, "spec.template.metadata.labels", "`selector` does not match template `labels`" },
        { "selector: {}\n  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c}]}}", 5, "spec.selector", "empty selector is invalid for deployment" },
        { "selector: {matchExpressions: [{key: app, operator: In, values: [web]}]}\n  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c}]}}", 5, "spec.selector.matchExpressions", "not supported in a config folder" },
        { "template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c}]}}", 5, "spec.selector", "Required value" },
        { "selector: {matchLabels: {app: web}}", 5, "spec.template", "Required value" },
        { "selector: {matchLabels: {app: web}}\n  template: {metadata: {labels: {app: web}}}", 6, "spec.template.spec", "Required value" },
        { "selector: {matchLabels: {app: web}}\n  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: C}]}}", 6, "spec.template.spec.containers[0].name", "RFC 1123 label" },
        { "selector: {matchLabels: {app: web}}\n  template: {metadata: {labels: {app: web, pod-template-hash: x}}, spec: {containers: [{name: c}]}}", 6, "spec.template.metadata.labels[pod-template-hash]", "do not set it in the template" },
    };

    [Theory]
    [MemberData(nameof(BadDeployments))]
    public void BadDeploymentsAreRejectedWithLineAndField(string spec, int line, string field, string message)
    {
        var result = ManifestParser.Parse(File, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  " + spec + "\n");

        Assert.Empty(result.Resources);
        ConfigAssert.HasError(result.Errors, File, line, field, message);
    }

    [Fact]
    public void DeploymentOfAnotherApiVersionIsRejected()
    {
        var result = ManifestParser.Parse(File, "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c}]}}\n");

        var error = Assert.Single(result.Errors);
        Assert.Equal("apiVersion", error.Field);
        Assert.Contains("Deployment is served by apiVersion \"apps/v1\"", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LongDeploymentNamesAreRefused()
    {
        var name = new string('a', DeploymentPods.MaxDeploymentNameLength + 1);
        var result = ManifestParser.Parse(File, $"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  template: {{metadata: {{labels: {{a: b}}}}, spec: {{containers: [{{name: c}}]}}}}\n");

        var error = Assert.Single(result.Errors);
        Assert.Equal("metadata.name", error.Field);
        Assert.Equal(253, DeploymentPods.MaxDeploymentNameLength + "-".Length + 10 + "-".Length + 5);
    }

    private sealed class DictionaryComparer : IEqualityComparer<ImmutableSortedDictionary<string, string>>
    {
        public bool Equals(ImmutableSortedDictionary<string, string>? x, ImmutableSortedDictionary<string, string>? y) => ValueEquality.Equal(x, y);

        public int GetHashCode(ImmutableSortedDictionary<string, string> obj) => 0;
    }
}
