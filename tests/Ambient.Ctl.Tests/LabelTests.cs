using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Ctl.Labels;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

public class LabelTests
{
    private const string Mode = "istio.io/dataplane-mode";

    [Theory]
    [InlineData("istio.io/dataplane-mode=ambient", Mode, "ambient")]
    [InlineData("istio.io/dataplane-mode-", Mode, null)]
    [InlineData("istio.io/dataplane-mode=-", Mode, null)]
    [InlineData("team=", "team", "")]
    public void Parse_AcceptsKubectlForms(string text, string key, string? value)
    {
        var change = LabelChange.Parse(text, out var error);
        Assert.Null(error);
        Assert.Equal(new LabelChange(key, value), change);
    }

    [Theory]
    [InlineData("novalue")]
    [InlineData("=x")]
    [InlineData("bad key=x")]
    [InlineData("k=has space")]
    public void Parse_RejectsWhatKubernetesRejects(string text)
    {
        Assert.Null(LabelChange.Parse(text, out var error));
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void RemoveThenAdd_RoundTripsTheSampleNamespacesAndKeepsComments()
    {
        using var dir = new TempDir();
        var original = File.ReadAllText(Path.Combine(RepoPaths.SampleMesh, "namespaces.yaml"));
        var file = dir.Write("namespaces.yaml", original);

        Assert.Equal(file, NamespaceLabelEditor.Apply(dir.Path, "demo", new LabelChange(Mode, null), out var changed, out var error));
        Assert.Null(error);
        Assert.True(changed);
        Assert.Null(Label(file, "demo", Mode));
        Assert.Contains("# Namespaces of the demo mesh.", File.ReadAllText(file), StringComparison.Ordinal);
        Assert.DoesNotContain("labels:", File.ReadAllText(file).Split("---")[1], StringComparison.Ordinal);

        NamespaceLabelEditor.Apply(dir.Path, "demo", new LabelChange(Mode, "ambient"), out changed, out error);
        Assert.Null(error);
        Assert.True(changed);
        Assert.Equal("ambient", Label(file, "demo", Mode));
        Assert.Equal("legacy", ManifestParser.Parse(file, File.ReadAllText(file)).Resources.OfType<NamespaceResource>().Last().Metadata.Name);

        // Setting what is already there changes nothing.
        NamespaceLabelEditor.Apply(dir.Path, "demo", new LabelChange(Mode, "ambient"), out changed, out _);
        Assert.False(changed);
    }

    [Fact]
    public void Add_ToANamespaceWithoutLabels_AndReplaceAValue()
    {
        using var dir = new TempDir();
        var file = dir.Write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n");
        NamespaceLabelEditor.Apply(dir.Path, "legacy", new LabelChange(Mode, "ambient"), out _, out var error);
        Assert.Null(error);
        Assert.Equal("ambient", Label(file, "legacy", Mode));
        NamespaceLabelEditor.Apply(dir.Path, "legacy", new LabelChange(Mode, "none"), out _, out error);
        Assert.Null(error);
        Assert.Equal("none", Label(file, "legacy", Mode));
        Assert.Null(Label(file, "other", Mode));
        NamespaceLabelEditor.Apply(dir.Path, "legacy", new LabelChange("flag", "true"), out _, out error);
        Assert.Null(error);
        Assert.Equal("true", Label(file, "legacy", "flag"));
    }

    [Fact]
    public void UndeclaredNamespace_IsNotFound_AndNothingIsWritten()
    {
        // kubectl: namespaces "nosuch" not found. A typo must not create a namespace file.
        using var dir = new TempDir();
        dir.Write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n");
        var error = new StringWriter();
        Assert.Equal(Ambient.Ctl.Cli.ExitCodes.InvalidInput,
            Ambient.Ctl.Cli.LabelCommand.Run("namespace", "nosuch", Mode + "=ambient", dir.Path, TextWriter.Null, error));
        Assert.Contains("namespace \"nosuch\" not found", error.ToString(), StringComparison.Ordinal);
        Assert.Equal(["ns.yaml"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        Assert.Equal(Ambient.Ctl.Cli.ExitCodes.InvalidInput,
            Ambient.Ctl.Cli.LabelCommand.Run("namespace", "nosuch", Mode + "-", dir.Path, TextWriter.Null, error));
    }

    [Fact]
    public void ASingleFile_CanBeLabelled()
    {
        using var dir = new TempDir();
        var file = dir.Write("mesh.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n");
        Assert.Equal(Ambient.Ctl.Cli.ExitCodes.Ok,
            Ambient.Ctl.Cli.LabelCommand.Run("namespace", "demo", Mode + "=ambient", file, TextWriter.Null, TextWriter.Null));
        Assert.Equal("ambient", Label(file, "demo", Mode));
    }

    [Fact]
    public void FlowStyleLabels_AreLeftForAHuman()
    {
        using var dir = new TempDir();
        var text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n  labels: {a: b}\n";
        var file = dir.Write("ns.yaml", text);
        Assert.Null(NamespaceLabelEditor.Apply(dir.Path, "demo", new LabelChange(Mode, "ambient"), out _, out var error));
        Assert.Contains("by hand", error, StringComparison.Ordinal);
        Assert.Equal(text, File.ReadAllText(file));
    }

    private static string? Label(string file, string ns, string key)
    {
        var parsed = ManifestParser.Parse(file, File.ReadAllText(file));
        Assert.Empty(parsed.Errors);
        return parsed.Resources.OfType<NamespaceResource>().Single(n => n.Metadata.Name == ns).Metadata.Label(key);
    }
}
