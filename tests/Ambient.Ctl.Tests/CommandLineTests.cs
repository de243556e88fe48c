using System.Diagnostics;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Demo;
using Ambient.Ctl.Local;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

public class CommandLineTests
{
    [Fact]
    public void LocalUp_RequiresAFolder()
    {
        var result = CommandLine.Build().Parse(["local", "up"]);
        Assert.NotEmpty(result.Errors);
        Assert.Contains(result.Errors, e => e.Message.Contains("--file", StringComparison.Ordinal));
    }

    [Fact]
    public void Exec_TakesEverythingAfterTheDoubleDashAsTheCommand()
    {
        var result = CommandLine.Build().Parse(["exec", "client", "-n", "demo", "--", "curl", "-s", "-H", "X-A: b", "echo"]);
        Assert.Empty(result.Errors);
        var values = result.CommandResult.Children.OfType<System.CommandLine.Parsing.ArgumentResult>()
            .Single(a => a.Argument.Name == "command").Tokens.Select(t => t.Value);
        Assert.Equal(["curl", "-s", "-H", "X-A: b", "echo"], values);
    }

    [Fact]
    public async Task LocalUp_OnAnInvalidFolder_ExitsWith2BeforeStartingAnything()
    {
        // The real command in a process of its own, with a home and a state folder of its own, so "nothing started"
        // can be seen: no state file naming processes, no state folder (CA, tokens, logs), and the error names the
        // file and line.
        using var dir = new TempDir();
        var file = dir.Write("mesh/p.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n    - name: a\n      image: nginx\n");
        var home = Path.Combine(dir.Path, "home");
        var state = Path.Combine(dir.Path, "state");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "ambientctl.dll"), "local", "up", "-f", Path.Combine(dir.Path, "mesh"), "--state", state, "--detach" })
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["AMBIENT_HOME"] = home;
        using var process = Process.Start(psi)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            await process.WaitForExitAsync(deadline.Token);
        }

        Assert.Equal(ExitCodes.InvalidInput, process.ExitCode);
        var error = await stderr;
        Assert.Contains("invalid mesh config", error, StringComparison.Ordinal);
        Assert.Contains($"{file}:1: spec.containers[a].image", error, StringComparison.Ordinal);
        Assert.Contains("'nginx'", error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(home, "local.json")), "a state file was written: something was started\n" + await stdout);
        Assert.False(Directory.Exists(state), "the state folder was created: the CA or a component was started\n" + await stdout);
    }

    [Fact]
    public void LocalUp_TakesAFileOrAFolder_AndItsHelpSaysSo()
    {
        var up = CommandLine.Build().Subcommands.Single(c => c.Name == "local").Subcommands.Single(c => c.Name == "up");
        var file = up.Options.Single(o => o.Name == "--file");
        Assert.Contains("file or a folder", file.Description, StringComparison.Ordinal);
        var result = CommandLine.Build().Parse(["local", "up", "-f", Path.Combine(RepoPaths.SampleMesh, "demo.yaml")]);
        Assert.Empty(result.Errors);
    }

    [Fact]
    public async Task LocalUp_OnAFile_ValidatesThatFile()
    {
        using var dir = new TempDir();
        var file = dir.Write("demo.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n    - name: a\n      image: nginx\n");
        var error = new StringWriter();
        var saved = Console.Error;
        Console.SetError(error);
        try
        {
            Assert.Equal(ExitCodes.InvalidInput, await CommandLine.Build().Parse(["local", "up", "-f", file]).InvokeAsync());
        }
        finally
        {
            Console.SetError(saved);
        }
        Assert.DoesNotContain("does not exist", error.ToString(), StringComparison.Ordinal);
        Assert.Contains(file + ":1: spec.containers[a].image", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Label_RejectsOtherKindsAndBadLabels()
    {
        using var dir = new TempDir();
        var error = new StringWriter();
        Assert.Equal(ExitCodes.InvalidInput, LabelCommand.Run("pod", "x", "a=b", dir.Path, TextWriter.Null, error));
        Assert.Equal(ExitCodes.InvalidInput, LabelCommand.Run("namespace", "x", "a b=c", dir.Path, TextWriter.Null, error));
        dir.Write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n");
        Assert.Equal(ExitCodes.Ok, LabelCommand.Run("namespace", "x", "a=b", dir.Path, TextWriter.Null, error));
    }

    [Fact]
    public void Prometheus_ParsesLabelsAndDeltas()
    {
        var before = PrometheusText.Parse("# HELP x\nistio_tcp_connections_closed_total{reporter=\"source\",a=\"q\\\"uote\"} 1\n");
        var after = PrometheusText.Parse("istio_tcp_connections_closed_total{reporter=\"source\",a=\"q\\\"uote\"} 3\nother 5 1700000000\n");
        Assert.Equal("q\"uote", before[0].Label("a"));
        var delta = PrometheusText.Delta(before, after);
        Assert.Equal(2, delta.Single(s => s.Name == "istio_tcp_connections_closed_total").Value);
        Assert.Equal(5, delta.Single(s => s.Name == "other").Value);
        Assert.Null(PrometheusText.ParseLine("broken{a=\"x} 1"));
    }
}
