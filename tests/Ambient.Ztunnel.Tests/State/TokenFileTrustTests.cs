using System.Security.Cryptography;
using Ambient.Core.Files;
using Ambient.TestCommon;
using Ambient.Dataplane.Control;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>
/// The node token is the ztunnel's credential: a token file another user can read (or owns) is refused at start
/// and on every later read, naming the file and the fix. Ownership cases chown to uid 65534 (root only; CI is root).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class TokenFileTrustTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _root;
    private readonly string _token;

    public TokenFileTrustTests()
    {
        using var cert = TestCertificates.CreateSelfSigned("istiod.istio-system.svc");
        _root = _dir.Write("root-cert.pem", cert.ExportCertificatePem());
        _token = _dir.Write("tokens/node-1.token", Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
        File.SetUnixFileMode(_token, OwnerOnlyFiles.FileMode);
    }

    public void Dispose() => _dir.Dispose();

    private ControlPlane Create() => ControlPlane.Create(new ControlPlaneOptions
    {
        // Nothing listens here: these tests are about reading the token, not about talking to istiod.
        IstiodAddress = new Uri("https://127.0.0.1:9"),
        RootCertificatePath = _root,
        TokenPath = _token,
        NodeName = "node-1",
    }, LoggerFactory.Create(_ => { }));

    [Fact]
    public void A_token_readable_by_others_is_refused_at_start()
    {
        File.SetUnixFileMode(_token, (UnixFileMode)0x1A4); // 0644

        var ex = Assert.Throws<InsecureFileException>(Create);

        Assert.Contains(_token, ex.Message, StringComparison.Ordinal);
        Assert.Contains("chmod 600", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_token_owned_by_another_user_is_refused_at_start()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root to chown (CI runs as root)");
        using (var chown = System.Diagnostics.Process.Start("/bin/chown", ["65534", _token]))
        {
            chown.WaitForExit();
            Assert.Equal(0, chown.ExitCode);
        }

        var ex = Assert.Throws<InsecureFileException>(Create);

        Assert.Contains("owned by uid 65534", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_private_token_is_accepted_and_one_opened_up_later_is_refused_on_the_next_read()
    {
        await using var control = Create();
        File.SetUnixFileMode(_token, (UnixFileMode)0x1B4); // 0664

        control.Start();

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (control.Xds.Stats.LastError?.Contains("accessible by group or others", StringComparison.Ordinal) != true)
        {
            Assert.True(DateTime.UtcNow < deadline, "the opened-up token was used; last error: " + control.Xds.Stats.LastError);
            await Task.Delay(20);
        }
        Assert.Contains(_token, control.Xds.Stats.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_projected_service_account_token_is_read_as_the_kubelet_mounts_it()
    {
        // The kubelet writes projected tokens 0644 (inside the pod only); they are not this user's private file.
        File.SetUnixFileMode(_token, (UnixFileMode)0x1A4); // 0644

        await using var control = ControlPlane.Create(new ControlPlaneOptions
        {
            IstiodAddress = new Uri("https://127.0.0.1:9"),
            RootCertificatePath = _root,
            TokenPath = _token,
            ServiceAccountToken = true,
            NodeName = "node-1",
        }, LoggerFactory.Create(_ => { }));
        control.Start();

        // The stream fails for want of istiod, never for the token's mode.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (control.Xds.Stats.LastError is null)
        {
            Assert.True(DateTime.UtcNow < deadline, "no connection attempt was made");
            await Task.Delay(20);
        }
        Assert.DoesNotContain("accessible by group or others", control.Xds.Stats.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public void A_token_file_is_read_trimmed_and_one_larger_than_any_token_is_refused_naming_it()
    {
        var ok = _dir.Write("tokens/projected", "  eyJhbGciOi.token \n");
        Assert.Equal("eyJhbGciOi.token", ControlPlane.ReadToken(ok, "service-account token"));

        var huge = _dir.Write("tokens/huge", new string('a', ControlPlane.MaxTokenBytes + 1));
        var error = Assert.Throws<IOException>(() => ControlPlane.ReadToken(huge, "service-account token"));
        Assert.Contains(huge, error.Message);
        Assert.DoesNotContain("aaaa", error.Message);

        // An endless file (a symbolic link to /dev/zero) is refused after the limit, not read forever.
        var endless = Path.Combine(_dir.Path, "tokens", "endless");
        File.CreateSymbolicLink(endless, "/dev/zero");
        Assert.Throws<IOException>(() => ControlPlane.ReadToken(endless, "service-account token"));
    }
}
