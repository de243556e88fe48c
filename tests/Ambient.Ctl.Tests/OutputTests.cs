using Ambient.Ctl.Cli;
using Ambient.Ctl.Demo;

namespace Ambient.Ctl.Tests;

public class OutputTests
{
    private static Func<string, string?> Env(params (string Key, string Value)[] vars) =>
        key => vars.FirstOrDefault(v => v.Key == key).Value;

    [Fact]
    public void NotATerminal_NoColour_ColumnsOr80()
    {
        Assert.Equal(new OutputStyle(80, false), OutputStyle.Detect(false, Env(("TERM", "xterm-256color")), () => 200));
        Assert.Equal(new OutputStyle(132, false), OutputStyle.Detect(false, Env(("COLUMNS", "132")), () => 200));
        Assert.Equal(new OutputStyle(200, true), OutputStyle.Detect(true, Env(("TERM", "xterm")), () => 200));
        Assert.False(OutputStyle.Detect(true, Env(("NO_COLOR", "1")), () => 200).Color);
        Assert.False(OutputStyle.Detect(true, Env(("TERM", "dumb")), () => 200).Color);
        Assert.Equal("x", new OutputStyle(80, false).Paint("x", Tone.Bad));
        Assert.Equal("\u001b[31mx\u001b[0m", new OutputStyle(80, true).Paint("x", Tone.Bad));
    }

    [Fact]
    public void Table_FitsTheWidth_WrappingCellsAtSpaces()
    {
        var table = new TextTable("component", "endpoints");
        table.AddRow("istiod", "grpc 127.0.0.1:15012 http://127.0.0.1:15014/debug/workloads and a rather long tail of words to wrap");
        table.AddRow(new Cell("ztunnel-node-1", Tone.Good), "http://127.0.1.1:15000/config_dump");
        var text = table.Render(new OutputStyle(60, false));
        var lines = text.TrimEnd('\n').Split('\n');
        Assert.All(lines, l => Assert.True(l.Length <= 60, $"{l.Length} > 60: {l}"));
        Assert.StartsWith("COMPONENT", lines[0], StringComparison.Ordinal);
        // Every word is whole on some line: wrapping happened at spaces only.
        foreach (var word in "http://127.0.0.1:15014/debug/workloads http://127.0.1.1:15000/config_dump rather".Split(' '))
        {
            Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(word));
        }
        Assert.DoesNotContain('\u001b', text);
    }

    [Fact]
    public void DemoTable_In80Columns_KeepsEverySpiffeIdentityOnOneLine_AndHasNoEscapes()
    {
        var checks = new List<DemoCheck>
        {
            new("1. meshed service", "demo/client -> echo.demo.svc.cluster.local:80", "SOCKS5 -> ztunnel -> HBONE", "mTLS",
                "spiffe://cluster.local/ns/demo/sa/client", "spiffe://cluster.local/ns/demo/sa/echo", "demo/echo-v1", 345, 3.2, true, null),
            new("3. unmeshed namespace", "demo/client -> legacy-echo.legacy.svc.cluster.local:80", "SOCKS5 -> ztunnel -> TCP", "plaintext",
                "spiffe://cluster.local/ns/demo/sa/client", "-", "legacy/legacy-echo", 345, 2.1, false, "x"),
        };
        foreach (var width in new[] { 80, 100, 160, 400 })
        {
            var text = DemoCommand.Render(checks, [], new OutputStyle(width, false));
            var lines = text.TrimEnd('\n').Split('\n');
            Assert.All(lines, l => Assert.True(l.Length <= width, $"{l.Length} > {width}: {l}"));
            Assert.DoesNotContain('\u001b', text);
            Assert.Equal(2, lines.Count(l => l.Contains("spiffe://cluster.local/ns/demo/sa/client", StringComparison.Ordinal)));
            Assert.Single(lines, l => l.Contains("spiffe://cluster.local/ns/demo/sa/echo", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.Contains("FAILED", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Wrap_BreaksAnOverlongWordOnlyWhenAsked_AndNeverASpiffeIdentity()
    {
        Assert.Equal(["abcdefghij"], TextTable.Wrap("abcdefghij", 4));
        Assert.Equal(["abcd", "efgh", "ij x"], TextTable.Wrap("abcdefghij x", 4, breakLongWords: true));
        Assert.Equal(["spiffe://td/ns/a/sa/b"], TextTable.Wrap("spiffe://td/ns/a/sa/b", 5, breakLongWords: true));
    }
}
