using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace Ambient.Cni;

/// <summary>
/// Whether a pod is in the ambient mesh, asked of the API server when the node agent cannot be: the kubeconfig the
/// agent wrote next to the CNI configs (JSON, one cluster and one user with a bearer token) names the server. The rule
/// is MeshBuilder.IsEnrolled's (this executable carries no mesh code): the pod's istio.io/dataplane-mode wins
/// (<c>none</c> out, <c>ambient</c> in), else the namespace's. When the API server cannot tell either, the pod is
/// treated as outside the mesh, as istio-cni does: the agent's pod watch enrols it once the agent is back.
/// </summary>
internal static class PodInMesh
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    public readonly record struct Answer(bool Ambient, string Why);

    public static async Task<Answer> CheckAsync(string? kubeconfigPath, string @namespace, string pod)
    {
        if (string.IsNullOrEmpty(kubeconfigPath)) return new(false, "no kubeconfig in the plugin's configuration to check its labels");
        try
        {
            var (server, ca, token) = ReadKubeconfig(await File.ReadAllTextAsync(kubeconfigPath).ConfigureAwait(false));
            using var handler = new SocketsHttpHandler();
            if (ca is not null)
            {
                handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                    certificate is not null && TrustedBy(ca, new X509Certificate2(certificate), errors);
            }
            using var client = new HttpClient(handler) { BaseAddress = server, Timeout = Timeout };
            if (token is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            var podMode = await ModeAsync(client, $"api/v1/namespaces/{Uri.EscapeDataString(@namespace)}/pods/{Uri.EscapeDataString(pod)}").ConfigureAwait(false);
            if (podMode == CniNames.DataplaneModeNone) return new(false, $"the pod is labelled {CniNames.DataplaneModeLabel}={podMode}");
            if (podMode == CniNames.DataplaneModeAmbient) return new(true, $"the pod is labelled {CniNames.DataplaneModeLabel}={podMode}");
            var namespaceMode = await ModeAsync(client, $"api/v1/namespaces/{Uri.EscapeDataString(@namespace)}").ConfigureAwait(false);
            return namespaceMode == CniNames.DataplaneModeAmbient
                ? new(true, $"its namespace is labelled {CniNames.DataplaneModeLabel}={namespaceMode}")
                : new(false, "neither the pod nor its namespace is labelled " + CniNames.DataplaneModeLabel + "=" + CniNames.DataplaneModeAmbient);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or HttpRequestException or TaskCanceledException
                                       or JsonException or FormatException or InvalidOperationException or KeyNotFoundException or System.Security.Cryptography.CryptographicException)
        {
            return new(false, "its labels could not be read from the API server: " + e.Message);
        }
    }

    private static async Task<string?> ModeAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
        using var body = JsonDocument.Parse(await response.Content.ReadAsStreamAsync().ConfigureAwait(false));
        return body.RootElement.TryGetProperty("metadata", out var meta) && meta.TryGetProperty("labels", out var labels)
            && labels.ValueKind == JsonValueKind.Object && labels.TryGetProperty(CniNames.DataplaneModeLabel, out var mode)
            ? mode.GetString() : null;
    }

    private static (Uri Server, X509Certificate2Collection? Ca, string? Token) ReadKubeconfig(string text)
    {
        using var document = JsonDocument.Parse(text);
        var cluster = document.RootElement.GetProperty("clusters")[0].GetProperty("cluster");
        var server = new Uri(cluster.GetProperty("server").GetString()!.TrimEnd('/') + "/");
        X509Certificate2Collection? ca = null;
        if (cluster.TryGetProperty("certificate-authority-data", out var data))
        {
            ca = [];
            ca.ImportFromPem(Encoding.ASCII.GetString(Convert.FromBase64String(data.GetString()!)));
        }
        string? token = null;
        if (document.RootElement.TryGetProperty("users", out var users) && users.GetArrayLength() > 0
            && users[0].GetProperty("user").TryGetProperty("token", out var t))
        {
            token = t.GetString();
        }
        return (server, ca, token);
    }

    private static bool TrustedBy(X509Certificate2Collection ca, X509Certificate2 certificate, SslPolicyErrors errors)
    {
        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.CustomTrustStore.AddRange(ca);
        return chain.Build(certificate);
    }
}
