using System.Security.Cryptography;
using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Config;

/// <summary>
/// A config folder must not become a way to read secrets: symbolic links that leave the folder are not followed,
/// and no error or log line carries more than ~80 characters of any value or file content.
/// </summary>
public sealed class ConfigSecretLeakTests : IDisposable
{
    private const int MaxEchoed = 80;
    private readonly TempDir _dir = new();
    private readonly ListLogger<FolderConfigSource> _log = new();
    private readonly string _config;
    private readonly string _state;

    public ConfigSecretLeakTests()
    {
        _config = Path.Combine(_dir.Path, "mesh");
        _state = Path.Combine(_dir.Path, ".ambient-state");
        Directory.CreateDirectory(_config);
        Directory.CreateDirectory(Path.Combine(_state, "tokens"));
    }

    public void Dispose() => _dir.Dispose();

    private static string PrivateKeyPem()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return key.ExportPkcs8PrivateKeyPem();
    }

    private static string Token() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private ConfigSnapshot Load()
    {
        using var source = new FolderConfigSource(_config, _log, TimeSpan.FromMilliseconds(50));
        source.Start();
        return source.Current;
    }

    /// <summary>Every error and log line, as a user (or /debug/workloads) would see them.</summary>
    private IEnumerable<string> EverythingShown(ConfigSnapshot snapshot) =>
        snapshot.Errors.Select(e => e.ToString()).Concat(_log.Entries.Select(e => e.Message));

    /// <summary>True when <paramref name="shown"/> holds more than <see cref="MaxEchoed"/> consecutive characters of the secret's text.</summary>
    private static bool Leaks(string shown, string secret)
    {
        var body = secret.Replace("\n", "", StringComparison.Ordinal);
        var window = Math.Min(MaxEchoed + 1, body.Length);
        // Any window of the secret (newlines removed, as YAML folds them) found in the output is a leak; for a
        // secret shorter than the limit (a token), any 16 consecutive characters of it are.
        if (body.Length <= MaxEchoed)
        {
            window = 16;
        }
        var flat = shown.Replace("\n", "", StringComparison.Ordinal).Replace(" ", "", StringComparison.Ordinal);
        var compact = body.Replace(" ", "", StringComparison.Ordinal);
        for (var i = 0; i + window <= compact.Length; i += 4)
        {
            if (flat.Contains(compact.AsSpan(i, window), StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    [Fact]
    public void A_link_to_the_root_key_outside_the_folder_is_refused_and_the_key_is_never_shown()
    {
        var key = PrivateKeyPem();
        File.WriteAllText(Path.Combine(_state, "root-key.pem"), key);
        File.CreateSymbolicLink(Path.Combine(_config, "k.yaml"), "../.ambient-state/root-key.pem");

        var snapshot = Load();

        var error = Assert.Single(snapshot.Errors);
        Assert.EndsWith("k.yaml", error.Source.File, StringComparison.Ordinal);
        Assert.Contains("symbolic link", error.Message, StringComparison.Ordinal);
        Assert.Contains("outside the config folder", error.Message, StringComparison.Ordinal);
        Assert.All(EverythingShown(snapshot), line => Assert.False(Leaks(line, key), "leaked key material: " + line));
        Assert.All(EverythingShown(snapshot), line => Assert.DoesNotContain("PRIVATE KEY", line, StringComparison.Ordinal));
    }

    [Fact]
    public void A_link_to_a_node_token_is_refused_and_the_token_is_never_shown()
    {
        var token = Token();
        File.WriteAllText(Path.Combine(_state, "tokens", "node-1.token"), token);
        File.CreateSymbolicLink(Path.Combine(_config, "t.yaml"), Path.Combine(_state, "tokens", "node-1.token"));

        var snapshot = Load();

        Assert.Contains(snapshot.Errors, e => e.Message.Contains("outside the config folder", StringComparison.Ordinal));
        Assert.All(EverythingShown(snapshot), line => Assert.False(Leaks(line, token), "leaked the token: " + line));
    }

    [Fact]
    public void A_linked_folder_that_leaves_the_config_folder_is_not_read()
    {
        File.WriteAllText(Path.Combine(_state, "secret.yaml"), MeshYaml.Namespace("from-outside", dataplaneMode: null));
        Directory.CreateSymbolicLink(Path.Combine(_config, "linked"), _state);

        var snapshot = Load();

        Assert.DoesNotContain(snapshot.Resources, r => r.Metadata.Name == "from-outside");
    }

    [Fact]
    public void Links_that_stay_inside_the_folder_still_work_as_in_a_mounted_ConfigMap()
    {
        // A mounted ConfigMap: ns.yaml -> ..data/ns.yaml, ..data -> ..2026_12_04/ (hidden folders, not read directly).
        var versioned = Path.Combine(_config, "..2026_12_04");
        Directory.CreateDirectory(versioned);
        File.WriteAllText(Path.Combine(versioned, "ns.yaml"), MeshYaml.Namespace("mounted", dataplaneMode: null));
        Directory.CreateSymbolicLink(Path.Combine(_config, "..data"), "..2026_12_04");
        File.CreateSymbolicLink(Path.Combine(_config, "ns.yaml"), "..data/ns.yaml");

        var snapshot = Load();

        Assert.Empty(snapshot.Errors);
        Assert.Contains(snapshot.Resources, r => r.Metadata.Name == "mounted");
    }

    [Fact]
    public void A_key_or_token_copied_into_the_folder_is_reported_without_its_content()
    {
        var key = PrivateKeyPem();
        var token = Token();
        File.WriteAllText(Path.Combine(_config, "key.yaml"), key);
        File.WriteAllText(Path.Combine(_config, "token.yaml"), token);

        var snapshot = Load();

        Assert.Equal(2, snapshot.Errors.Length);
        Assert.All(snapshot.Errors, e => Assert.Contains("must be a map", e.Message, StringComparison.Ordinal));
        Assert.All(EverythingShown(snapshot), line => Assert.False(Leaks(line, key), "leaked key material: " + line));
        Assert.All(EverythingShown(snapshot), line => Assert.False(Leaks(line, token), "leaked the token: " + line));
    }

    [Fact]
    public void Long_values_are_clipped_in_errors_and_logs()
    {
        var longValue = "v" + new string('x', 500) + "END";
        File.WriteAllText(Path.Combine(_config, "bad.yaml"), $$"""
            apiVersion: v1
            kind: Namespace
            metadata:
              name: "{{longValue}}"
              labels:
                "{{longValue}}": "{{longValue}}"
            ---
            apiVersion: {{longValue}}
            kind: Pod
            metadata: {name: p, namespace: demo}
            spec: {containers: [{name: app, image: "{{longValue}}", ports: [{containerPort: "{{longValue}}"}]}]}
            ---
            apiVersion: example.com/v1
            kind: K{{longValue}}
            metadata: {name: ok, namespace: demo}
            """);

        var snapshot = Load();

        Assert.NotEmpty(snapshot.Errors);
        Assert.Contains(_log.Entries, e => e.Message.Contains("Ignoring", StringComparison.Ordinal));
        Assert.All(EverythingShown(snapshot), line =>
        {
            Assert.DoesNotContain(new string('x', MaxEchoed), line, StringComparison.Ordinal);
            Assert.DoesNotContain("xEND", line, StringComparison.Ordinal);
        });
    }
}
