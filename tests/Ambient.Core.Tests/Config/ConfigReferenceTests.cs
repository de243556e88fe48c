using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Config;

/// <summary>
/// Checks that need more than one document (a Pod naming a ServiceAccount declared elsewhere), what a config error
/// looks like as one line, the warnings a running mesh shows, and a single file as the config source.
/// </summary>
public sealed class ConfigReferenceTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Pod(string name, string? serviceAccount, string ns = "shop") =>
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\n  namespace: " + ns + "\n  labels: {app: " + name + "}\nspec:\n"
        + (serviceAccount is null ? "" : "  serviceAccountName: " + serviceAccount + "\n")
        + "  containers: [{name: main, image: ambient/echo}]\n";

    private static ConfigSnapshot Merge(params (string File, string Yaml)[] files)
    {
        var contributions = new List<FileContribution>();
        foreach (var (file, yaml) in files)
        {
            var parsed = ManifestParser.Parse(file, yaml);
            Assert.Empty(parsed.Errors);
            contributions.Add(new FileContribution(file, parsed.Resources, parsed.Errors));
        }
        return ConfigMerge.Merge(1, contributions);
    }

    [Fact]
    public void PodNamingAnUndeclaredServiceAccount_IsRejectedWithFileAndLine()
    {
        var snapshot = Merge(("/cfg/pods.yaml", Pod("web", "web-sa") + "\n---\n" + Pod("api", "api-sa")),
            ("/cfg/sa.yaml", MeshYaml.ServiceAccount("shop", "api-sa")));

        var error = Assert.Single(snapshot.Errors);
        Assert.Equal(new SourceLocation("/cfg/pods.yaml", 1), error.Source);
        Assert.Equal("spec.serviceAccountName", error.Field);
        Assert.Contains("serviceaccount \"web-sa\" not found", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(snapshot.Resources, r => r.Key == "Pod/shop/web");
        Assert.Contains(snapshot.Resources, r => r.Key == "Pod/shop/api");
    }

    [Fact]
    public void TheDefaultServiceAccount_ExistsInEveryNamespace()
    {
        var snapshot = Merge(("/cfg/pods.yaml", Pod("web", "default") + "\n---\n" + Pod("api", null)));
        Assert.Empty(snapshot.Errors);
        Assert.Equal(2, snapshot.Resources.Count(r => r is PodResource));
    }

    [Fact]
    public void AServiceAccountOfAnotherNamespace_DoesNotCount()
    {
        var snapshot = Merge(("/cfg/all.yaml", MeshYaml.ServiceAccount("other", "web-sa") + Pod("web", "web-sa")));
        Assert.Contains("not found in namespace \"shop\"", Assert.Single(snapshot.Errors).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnErrorWithoutAField_HasNoEmptyFieldInItsLine()
    {
        Assert.Equal("/cfg/a.yaml:24: YAML syntax error", new ConfigError(new SourceLocation("/cfg/a.yaml", 24), "", "YAML syntax error").ToString());
        Assert.Equal("/cfg/a.yaml:3: metadata.name: bad", new ConfigError(new SourceLocation("/cfg/a.yaml", 3), "metadata.name", "bad").ToString());
    }

    [Fact]
    public void Warnings_NameAMistypedKindAndAServiceThatSelectsNothing()
    {
        var snapshot = Merge(("/cfg/a.yaml", Pod("web", null) + """
            ---
            apiVersion: v1
            kind: Servce
            metadata: {name: typo, namespace: shop}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: lonely, namespace: shop}
            spec:
              selector: {app: nobody}
              ports: [{port: 80}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: shop}
            spec:
              selector: {app: web}
              ports: [{port: 80}]
            """));
        var warnings = ConfigWarnings.Find(snapshot);
        Assert.Contains(warnings, w => w.Source.Line == 10 && w.Message.Contains("kind \"Servce\"", StringComparison.Ordinal)
            && w.Message.Contains("did you mean Service", StringComparison.Ordinal));
        Assert.Contains(warnings, w => w.Source.Line == 14 && w.Message.Contains("selects no pod", StringComparison.Ordinal)
            && w.Message.Contains("app=nobody", StringComparison.Ordinal));
        Assert.Equal(2, warnings.Length);
    }

    [Fact]
    public async Task ASingleFile_IsTheWholeConfigAndOnlyItIsWatched()
    {
        var file = _dir.Write("mesh/one.yaml", MeshYaml.Namespace("shop", dataplaneMode: null));
        _dir.Write("mesh/other.yaml", MeshYaml.Namespace("other", dataplaneMode: null));
        using var source = new FolderConfigSource(file, new ListLogger<FolderConfigSource>(), TimeSpan.FromMilliseconds(50));
        source.Start();
        Assert.Equal(["Namespace//shop"], source.Current.Resources.Select(r => r.Key));

        // A sibling changing is no event for us; our file changing is.
        _dir.Write("mesh/third.yaml", MeshYaml.Namespace("third", dataplaneMode: null));
        File.WriteAllText(file, MeshYaml.Namespace("shop2", dataplaneMode: null));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var next = await source.WaitForGenerationAsync(2, cts.Token);
        Assert.Equal(["Namespace//shop2"], next.Resources.Select(r => r.Key));
    }
}
