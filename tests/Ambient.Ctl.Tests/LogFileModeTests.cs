using Ambient.Ctl.Local;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

/// <summary>
/// Component logs can hold what a component printed about secrets or config: they are the owner's alone
/// (files 0600 in a 0700 folder), also when an older run left them more open.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class LogFileModeTests : IDisposable
{
    private const UnixFileMode OwnerFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode OwnerFolder = OwnerFile | UnixFileMode.UserExecute;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private async Task RunOnceAsync(string logPath)
    {
        var spec = new ComponentSpec("t", "pod", new Launcher("/bin/sh", [], "sh"), ["-c", "echo started"],
            new Dictionary<string, string>(), null, null, logPath);
        await using var process = new SupervisedProcess(spec, _ => { }, null, CancellationToken.None);
        process.Start();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!File.ReadAllText(logPath).Contains("started", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, "the component's output never reached its log");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task A_component_log_is_created_0600_in_a_0700_folder()
    {
        var logs = Path.Combine(_dir.Path, "state", "logs");
        var log = Path.Combine(logs, "t.log");

        await RunOnceAsync(log);

        Assert.Equal(OwnerFolder, File.GetUnixFileMode(logs));
        Assert.Equal(OwnerFile, File.GetUnixFileMode(log));
        // The state folder made on the way is private too (istiod-lite refuses one others can write).
        Assert.Equal(OwnerFolder, File.GetUnixFileMode(Path.GetDirectoryName(logs)!));
    }

    [Fact]
    public async Task Logs_left_open_by_an_older_run_are_tightened()
    {
        var logs = Path.Combine(_dir.Path, "state", "logs");
        Directory.CreateDirectory(logs);
        File.SetUnixFileMode(logs, OwnerFolder | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        var log = Path.Combine(logs, "t.log");
        File.WriteAllText(log, "old run\n");
        File.SetUnixFileMode(log, OwnerFile | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        await RunOnceAsync(log);

        Assert.Equal(OwnerFolder, File.GetUnixFileMode(logs));
        Assert.Equal(OwnerFile, File.GetUnixFileMode(log));
        Assert.StartsWith("old run", File.ReadAllText(log), StringComparison.Ordinal);
    }
}
