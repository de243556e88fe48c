using System.Diagnostics;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>
/// CreateCertificate against a real istiod-lite, called by python3-grpcio (an independent gRPC stack) with a CSR
/// made by openssl, and the answer checked with openssl: what a real Istio ztunnel would see.
/// </summary>
public sealed class CaInteropTests : IAsyncLifetime
{
    private IstiodFixture _istiod = null!;

    public async ValueTask InitializeAsync()
    {
        _istiod = await IstiodFixture.StartForGrpcioAsync(Meshes.Demo());
    }

    public async ValueTask DisposeAsync() => await _istiod.DisposeAsync();

    private async Task<string> MakeCsrAsync(string subjectAltName = "URI:spiffe://evil.example/ns/x/sa/y")
    {
        var key = Path.Combine(_istiod.Scratch, Guid.NewGuid().ToString("N") + ".key");
        var csr = Path.ChangeExtension(key, ".csr");
        // The CSR asks for a foreign SAN on purpose: the CA must ignore it and set the identity itself.
        var (code, _, err) = await RunAsync("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/O=attacker", "-addext", "subjectAltName=" + subjectAltName);
        Assert.True(code == 0, "openssl req failed: " + err);
        return csr;
    }

    private Task<System.Text.Json.JsonElement> CallAsync(string csrFile, string? token, string? identity, long ttl = 0)
        => _istiod.CallCaAsync(csrFile, token, identity, ttl);

    [Fact]
    public async Task Valid_csr_for_a_pod_on_the_callers_node_gets_a_chain_openssl_accepts()
    {
        var csr = await MakeCsrAsync();
        var result = await CallAsync(csr, _istiod.TokenOf("node-2"), "spiffe://cluster.local/ns/demo/sa/echo", ttl: 3600);
        Assert.Equal("OK", result.GetProperty("code").GetString());
        var chain = result.GetProperty("chain").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Assert.Equal(2, chain.Length);
        var leaf = Path.Combine(_istiod.Scratch, "leaf.pem");
        await File.WriteAllTextAsync(leaf, chain[0]);
        Assert.Equal(File.ReadAllText(_istiod.Root).Trim(), chain[^1].Trim());

        var verify = await RunAsync("openssl", "verify", "-CAfile", _istiod.Root, leaf);
        Assert.True(verify.Code == 0, "openssl verify: " + verify.Out + verify.Err);
        var text = await RunAsync("openssl", "x509", "-in", leaf, "-noout", "-text");
        Assert.Contains("URI:spiffe://cluster.local/ns/demo/sa/echo", text.Out);
        Assert.DoesNotContain("evil.example", text.Out);
        Assert.DoesNotContain("attacker", text.Out);
        Assert.Contains("X509v3 Subject Alternative Name: critical", text.Out);
        Assert.Contains("ASN1 OID: prime256v1", text.Out);
    }

    [Fact]
    public async Task Identity_of_a_pod_on_another_node_is_unauthenticated()
    {
        var csr = await MakeCsrAsync();
        // echo runs on node-2; node-1 asking for it is a compromised node trying to impersonate.
        var result = await CallAsync(csr, _istiod.TokenOf("node-1"), "spiffe://cluster.local/ns/demo/sa/echo");
        Assert.Equal("UNAUTHENTICATED", result.GetProperty("code").GetString());
        Assert.Contains("node-1", result.GetProperty("details").GetString());
    }

    [Fact]
    public async Task Foreign_trust_domain_is_unauthenticated()
    {
        var csr = await MakeCsrAsync();
        var result = await CallAsync(csr, _istiod.TokenOf("node-2"), "spiffe://other.domain/ns/demo/sa/echo");
        Assert.Equal("UNAUTHENTICATED", result.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Missing_or_wrong_token_is_unauthenticated()
    {
        var csr = await MakeCsrAsync();
        var missing = await CallAsync(csr, token: null, "spiffe://cluster.local/ns/demo/sa/echo");
        Assert.Equal("UNAUTHENTICATED", missing.GetProperty("code").GetString());
        var wrong = await CallAsync(csr, token: "not-a-token", "spiffe://cluster.local/ns/demo/sa/echo");
        Assert.Equal("UNAUTHENTICATED", wrong.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Garbage_csr_is_invalid_argument()
    {
        var garbage = Path.Combine(_istiod.Scratch, "garbage.csr");
        await File.WriteAllTextAsync(garbage, "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n");
        var result = await CallAsync(garbage, _istiod.TokenOf("node-2"), "spiffe://cluster.local/ns/demo/sa/echo");
        Assert.Equal("INVALID_ARGUMENT", result.GetProperty("code").GetString());
        Assert.Contains("CSR", result.GetProperty("details").GetString(), StringComparison.OrdinalIgnoreCase);
    }

    internal static async Task<(int Code, string Out, string Err)> RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) { psi.ArgumentList.Add(a); }
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return (p.ExitCode, await o, await e);
    }
}
