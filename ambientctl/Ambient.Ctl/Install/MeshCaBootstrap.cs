using System.Text;
using Ambient.Core.Identity;
using k8s;
using k8s.Models;

namespace Ambient.Ctl.Install;

/// <summary>
/// The mesh CA on a cluster, in Istio's plug-in layout: Secret istio-system/cacerts (ca-cert.pem, ca-key.pem,
/// cert-chain.pem, root-cert.pem), which istiod-lite signs with, and ConfigMap istio-system/istio-ca-root-cert
/// (root-cert.pem), the trust bundle the ztunnels mount. An operator's cacerts is kept as it is; without one a
/// self-signed root (as istiod-lite makes locally) is created once. The ConfigMap always follows the Secret's root.
/// </summary>
internal static class MeshCaBootstrap
{
    public const string Namespace = "istio-system";
    public const string SecretName = "cacerts";
    public const string RootConfigMapName = "istio-ca-root-cert";
    public const string RootCertKey = "root-cert.pem";

    /// <summary>Makes sure both exist and agree; returns what it did, one line each.</summary>
    public static async Task<IReadOnlyList<string>> EnsureAsync(IKubernetes client, string trustDomain, CancellationToken cancellationToken)
    {
        List<string> done = [];
        var secret = await ReadSecretOrNullAsync(client, cancellationToken).ConfigureAwait(false);
        if (secret is null)
        {
            var (root, certificatePem, keyPem) = SelfSignedRoot.Create(trustDomain);
            root.Dispose();
            secret = new V1Secret
            {
                ApiVersion = "v1",
                Kind = "Secret",
                Metadata = new V1ObjectMeta { Name = SecretName, NamespaceProperty = Namespace, Labels = new Dictionary<string, string> { ["app.kubernetes.io/part-of"] = "ambient" } },
                Type = "Opaque",
                // A self-signed root signs directly: it is its own chain.
                Data = new Dictionary<string, byte[]>
                {
                    ["ca-cert.pem"] = Encoding.ASCII.GetBytes(certificatePem),
                    ["ca-key.pem"] = Encoding.ASCII.GetBytes(keyPem),
                    ["cert-chain.pem"] = Encoding.ASCII.GetBytes(certificatePem),
                    [RootCertKey] = Encoding.ASCII.GetBytes(certificatePem),
                },
            };
            if (await ClusterApplier.CreateIfAbsentAsync(client, secret, cancellationToken).ConfigureAwait(false))
            {
                done.Add($"Secret {Namespace}/{SecretName} created: a new self-signed mesh root ({trustDomain})");
            }
            else
            {
                secret = await ReadSecretOrNullAsync(client, cancellationToken).ConfigureAwait(false)
                    ?? throw new ManifestException($"Secret {Namespace}/{SecretName} appeared and vanished while being created");
            }
        }
        if (secret.Data is null || !secret.Data.TryGetValue(RootCertKey, out var rootBytes))
        {
            throw new ManifestException($"Secret {Namespace}/{SecretName} has no {RootCertKey}: it is not in Istio's plug-in CA layout");
        }
        var rootPem = Encoding.ASCII.GetString(rootBytes);
        var configMap = new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new V1ObjectMeta { Name = RootConfigMapName, NamespaceProperty = Namespace, Labels = new Dictionary<string, string> { ["app.kubernetes.io/part-of"] = "ambient" } },
            Data = new Dictionary<string, string> { [RootCertKey] = rootPem },
        };
        var current = await ReadRootConfigMapOrNullAsync(client, cancellationToken).ConfigureAwait(false);
        if (current?.Data is { } data && data.TryGetValue(RootCertKey, out var currentRoot) && currentRoot == rootPem) return done;
        var outcome = await ClusterApplier.ApplyAsync(client, configMap, cancellationToken).ConfigureAwait(false);
        done.Add($"ConfigMap {Namespace}/{RootConfigMapName} {(outcome == ApplyOutcome.Created ? "created" : "updated")}: the root of Secret {SecretName}");
        return done;
    }

    internal static Task<V1Secret?> ReadSecretOrNullAsync(IKubernetes client, CancellationToken cancellationToken) =>
        KubeReads.OrNullAsync(() => client.CoreV1.ReadNamespacedSecretAsync(SecretName, Namespace, cancellationToken: cancellationToken));

    internal static Task<V1ConfigMap?> ReadRootConfigMapOrNullAsync(IKubernetes client, CancellationToken cancellationToken) =>
        KubeReads.OrNullAsync(() => client.CoreV1.ReadNamespacedConfigMapAsync(RootConfigMapName, Namespace, cancellationToken: cancellationToken));
}
