using System.Net;
using Ambient.Core.Files;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>
/// A state folder (or key, or token) that another user made or can change is refused, as ssh's StrictModes
/// refuses a writable ~/.ssh: otherwise a pre-planted .ambient-state would hand out certificates from that
/// user's root. The ownership cases chown to uid 65534, which needs root (CI runs as root).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class StateFolderTrustTests : IDisposable
{
    private const int Nobody = 65534;
    private readonly TempDir _dir = new();
    private readonly string _state;

    public StateFolderTrustTests()
    {
        _state = Path.Combine(_dir.Path, ".ambient-state");
        // A complete, valid state made the normal way; each test then loosens one thing.
        CaStore.LoadOrCreate(_state).Dispose();
        new NodeTokens(_state).GetOrCreate("node-1");
    }

    public void Dispose() => _dir.Dispose();

    private string Key => Path.Combine(_state, CaStore.RootKeyFile);
    private string Token => NodeTokens.TokenPath(_state, "node-1");

    private static void Chown(string path, int uid)
    {
        Assert.True(Environment.IsPrivilegedProcess, "the ownership tests need root to chown (CI runs as root)");
        var (code, output) = Run("/bin/chown", uid.ToString(System.Globalization.CultureInfo.InvariantCulture), path);
        Assert.True(code == 0, "chown failed: " + output);
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }

    [Fact]
    public void A_world_writable_state_folder_is_refused_naming_the_path_and_the_fix()
    {
        File.SetUnixFileMode(_state, (UnixFileMode)0x1FF); // 0777

        var ex = Assert.Throws<InsecureFileException>(() => CaStore.LoadOrCreate(_state));

        Assert.Contains($"'{_state}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("0777", ex.Message, StringComparison.Ordinal);
        Assert.Contains("chmod go-w", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_group_writable_state_folder_is_refused_even_before_the_root_exists()
    {
        var fresh = Path.Combine(_dir.Path, "planted");
        Directory.CreateDirectory(fresh);
        File.SetUnixFileMode(fresh, (UnixFileMode)0x1F8); // 0770

        Assert.Throws<InsecureFileException>(() => CaStore.LoadOrCreate(fresh));
        Assert.False(File.Exists(Path.Combine(fresh, CaStore.RootKeyFile)), "no key may be written into a folder others can change");
    }

    [Fact]
    public void A_root_key_readable_by_others_is_refused()
    {
        File.SetUnixFileMode(Key, (UnixFileMode)0x1A4); // 0644

        var ex = Assert.Throws<InsecureFileException>(() => CaStore.LoadOrCreate(_state));

        Assert.Contains(Key, ex.Message, StringComparison.Ordinal);
        Assert.Contains("chmod 600", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_state_folder_owned_by_another_user_is_refused()
    {
        Chown(_state, Nobody);

        var ex = Assert.Throws<InsecureFileException>(() => CaStore.LoadOrCreate(_state));

        Assert.Contains("owned by uid 65534", ex.Message, StringComparison.Ordinal);
        Assert.Contains(_state, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_root_key_owned_by_another_user_is_refused()
    {
        Chown(Key, Nobody);

        var ex = Assert.Throws<InsecureFileException>(() => CaStore.LoadOrCreate(_state));

        Assert.Contains("owned by uid 65534", ex.Message, StringComparison.Ordinal);
        Assert.Contains(Key, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Node_tokens_readable_by_others_in_a_writable_folder_or_owned_by_another_user_are_refused()
    {
        File.SetUnixFileMode(Token, (UnixFileMode)0x1A4); // 0644
        var readable = Assert.Throws<InsecureFileException>(() => new NodeTokens(_state));
        Assert.Contains(Token, readable.Message, StringComparison.Ordinal);

        File.SetUnixFileMode(Token, OwnerOnlyFiles.FileMode);
        Chown(Token, Nobody);
        var foreign = Assert.Throws<InsecureFileException>(() => new NodeTokens(_state));
        Assert.Contains("owned by uid 65534", foreign.Message, StringComparison.Ordinal);

        Chown(Token, 0);
        var tokens = Path.GetDirectoryName(Token)!;
        File.SetUnixFileMode(tokens, (UnixFileMode)0x1FF);
        var folder = Assert.Throws<InsecureFileException>(() => new NodeTokens(_state));
        Assert.Contains($"'{tokens}'", folder.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_state_folder_made_normally_is_trusted_on_every_start()
    {
        using var root = CaStore.LoadOrCreate(_state);
        var tokens = new NodeTokens(_state);

        Assert.Equal(File.ReadAllText(Token), tokens.GetOrCreate("node-1"));
    }

    [Fact]
    public async Task Istiod_lite_does_not_start_on_a_planted_state_folder()
    {
        var config = Path.Combine(_dir.Path, "mesh");
        Directory.CreateDirectory(config);
        File.SetUnixFileMode(_state, (UnixFileMode)0x1FF);
        File.SetUnixFileMode(Key, (UnixFileMode)0x1A4);
        var options = new IstiodOptions(config, _state, new IPEndPoint(IPAddress.Loopback, 0), null, "Kubernetes", "cluster.local");

        var ex = await Assert.ThrowsAsync<InsecureFileException>(() => IstiodHost.StartAsync(options, null, CancellationToken.None));

        Assert.Contains(_state, ex.Message, StringComparison.Ordinal);
    }
}
