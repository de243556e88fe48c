using Ambient.Istiod.Ca;
using Ambient.TestCommon;

namespace Ambient.Istiod.Tests.Ca;

// Unix file modes are part of what is tested; the mesh runs on Linux.
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class NodeTokensTests
{
    [Fact]
    public void GetOrCreate_WritesOwnerOnlyTokenFile_AndReusesIt()
    {
        using var dir = new TempDir();
        var tokens = new NodeTokens(dir.Path);

        var token = tokens.GetOrCreate("node-1");

        var path = NodeTokens.TokenPath(dir.Path, "node-1");
        Assert.Equal(Path.Combine(dir.Path, "tokens", "node-1.token"), path);
        Assert.Equal(token, File.ReadAllText(path));
        Assert.Equal(43, token.Length);
        Assert.Matches("^[A-Za-z0-9_-]{43}$", token);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal(token, tokens.GetOrCreate("node-1"));
        Assert.NotEqual(token, tokens.GetOrCreate("node-2"));
    }

    [Fact]
    public void Restart_LoadsExistingTokens()
    {
        using var dir = new TempDir();
        var token = new NodeTokens(dir.Path).GetOrCreate("node-1");

        var restarted = new NodeTokens(dir.Path);

        Assert.True(restarted.TryAuthenticate("Bearer " + token, out var node));
        Assert.Equal("node-1", node);
        Assert.Equal(token, restarted.GetOrCreate("node-1"));
    }

    [Fact]
    public void TryAuthenticate_IdentifiesTheRightNode()
    {
        using var dir = new TempDir();
        var tokens = new NodeTokens(dir.Path);
        var t1 = tokens.GetOrCreate("node-1");
        var t2 = tokens.GetOrCreate("node-2");

        Assert.True(tokens.TryAuthenticate("Bearer " + t2, out var node));
        Assert.Equal("node-2", node);
        Assert.True(tokens.TryAuthenticate("Bearer " + t1, out node));
        Assert.Equal("node-1", node);
    }

    [Fact]
    public void TryAuthenticate_RejectsEverythingElse()
    {
        using var dir = new TempDir();
        var tokens = new NodeTokens(dir.Path);
        var token = tokens.GetOrCreate("node-1");
        var wrong = (token[0] == 'A' ? 'B' : 'A') + token[1..];

        foreach (var header in new[]
        {
            null, "", "Bearer", "Bearer ", "Bearer " + wrong, "Basic x", "Basic " + token, "bearer " + token,
            "Bearer  " + token, "Bearer " + token + " ", "Bearer " + token[..^1], token, "Bearer " + token[..^1] + "é",
        })
        {
            Assert.False(tokens.TryAuthenticate(header, out var node), $"accepted '{header}'");
            Assert.Equal(string.Empty, node);
        }
    }

    [Fact]
    public void DamagedTokenFile_IsAnErrorNamingIt()
    {
        using var dir = new TempDir();
        new NodeTokens(dir.Path).GetOrCreate("node-1");
        var path = NodeTokens.TokenPath(dir.Path, "node-1");
        File.WriteAllText(path, "short");

        var ex = Assert.Throws<CaStateException>(() => new NodeTokens(dir.Path));

        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("../etc")]
    [InlineData("a/b")]
    [InlineData("Node1")]
    [InlineData(".hidden")]
    public void BadNodeNames_AreRejected(string node)
    {
        using var dir = new TempDir();
        Assert.Throws<ArgumentException>(() => new NodeTokens(dir.Path).GetOrCreate(node));
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "tokens")) && Directory.EnumerateFileSystemEntries(Path.Combine(dir.Path, "tokens")).Any());
    }
}
