using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Ambient.Ctl.Install;

/// <summary>What applying one object did.</summary>
internal enum ApplyOutcome
{
    Created,
    Updated,
}

/// <summary>
/// Create-or-update of the manifests' objects through the typed KubernetesClient calls: an object that does not exist
/// is created, one that does is replaced by the manifest at its current resourceVersion (an optimistic update: a
/// concurrent writer makes it fail with 409 rather than be overwritten unseen). Only the kinds manifests/ holds are
/// known; another kind is refused by name.
/// </summary>
internal static class ClusterApplier
{
    public const string FieldManager = "ambientctl";

    private delegate Task<IKubernetesObject<V1ObjectMeta>> Read(IKubernetes client, string name, string? ns, CancellationToken cancellationToken);

    private delegate Task Write(IKubernetes client, IKubernetesObject<V1ObjectMeta> resource, string? ns, CancellationToken cancellationToken);

    private sealed record Operations(bool Namespaced, Read Read, Write Create, Write Replace);

    private static readonly Dictionary<Type, Operations> Kinds = new()
    {
        [typeof(V1Namespace)] = new(false,
            async (k, name, _, ct) => await k.CoreV1.ReadNamespaceAsync(name, cancellationToken: ct).ConfigureAwait(false),
            (k, o, _, ct) => k.CoreV1.CreateNamespaceAsync((V1Namespace)o, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, _, ct) => k.CoreV1.ReplaceNamespaceAsync((V1Namespace)o, o.Name(), fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1CustomResourceDefinition)] = new(false,
            async (k, name, _, ct) => await k.ApiextensionsV1.ReadCustomResourceDefinitionAsync(name, cancellationToken: ct).ConfigureAwait(false),
            (k, o, _, ct) => k.ApiextensionsV1.CreateCustomResourceDefinitionAsync((V1CustomResourceDefinition)o, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, _, ct) => k.ApiextensionsV1.ReplaceCustomResourceDefinitionAsync((V1CustomResourceDefinition)o, o.Name(), fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1ClusterRole)] = new(false,
            async (k, name, _, ct) => await k.RbacAuthorizationV1.ReadClusterRoleAsync(name, cancellationToken: ct).ConfigureAwait(false),
            (k, o, _, ct) => k.RbacAuthorizationV1.CreateClusterRoleAsync((V1ClusterRole)o, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, _, ct) => k.RbacAuthorizationV1.ReplaceClusterRoleAsync((V1ClusterRole)o, o.Name(), fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1ClusterRoleBinding)] = new(false,
            async (k, name, _, ct) => await k.RbacAuthorizationV1.ReadClusterRoleBindingAsync(name, cancellationToken: ct).ConfigureAwait(false),
            (k, o, _, ct) => k.RbacAuthorizationV1.CreateClusterRoleBindingAsync((V1ClusterRoleBinding)o, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, _, ct) => k.RbacAuthorizationV1.ReplaceClusterRoleBindingAsync((V1ClusterRoleBinding)o, o.Name(), fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1ServiceAccount)] = new(true,
            async (k, name, ns, ct) => await k.CoreV1.ReadNamespacedServiceAccountAsync(name, ns, cancellationToken: ct).ConfigureAwait(false),
            (k, o, ns, ct) => k.CoreV1.CreateNamespacedServiceAccountAsync((V1ServiceAccount)o, ns, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, ns, ct) => k.CoreV1.ReplaceNamespacedServiceAccountAsync((V1ServiceAccount)o, o.Name(), ns, fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1Service)] = new(true,
            async (k, name, ns, ct) => await k.CoreV1.ReadNamespacedServiceAsync(name, ns, cancellationToken: ct).ConfigureAwait(false),
            (k, o, ns, ct) => k.CoreV1.CreateNamespacedServiceAsync((V1Service)o, ns, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, ns, ct) => k.CoreV1.ReplaceNamespacedServiceAsync((V1Service)o, o.Name(), ns, fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1ConfigMap)] = new(true,
            async (k, name, ns, ct) => await k.CoreV1.ReadNamespacedConfigMapAsync(name, ns, cancellationToken: ct).ConfigureAwait(false),
            (k, o, ns, ct) => k.CoreV1.CreateNamespacedConfigMapAsync((V1ConfigMap)o, ns, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, ns, ct) => k.CoreV1.ReplaceNamespacedConfigMapAsync((V1ConfigMap)o, o.Name(), ns, fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1Secret)] = new(true,
            async (k, name, ns, ct) => await k.CoreV1.ReadNamespacedSecretAsync(name, ns, cancellationToken: ct).ConfigureAwait(false),
            (k, o, ns, ct) => k.CoreV1.CreateNamespacedSecretAsync((V1Secret)o, ns, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, ns, ct) => k.CoreV1.ReplaceNamespacedSecretAsync((V1Secret)o, o.Name(), ns, fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1Deployment)] = new(true,
            async (k, name, ns, ct) => await k.AppsV1.ReadNamespacedDeploymentAsync(name, ns, cancellationToken: ct).ConfigureAwait(false),
            (k, o, ns, ct) => k.AppsV1.CreateNamespacedDeploymentAsync((V1Deployment)o, ns, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, ns, ct) => k.AppsV1.ReplaceNamespacedDeploymentAsync((V1Deployment)o, o.Name(), ns, fieldManager: FieldManager, cancellationToken: ct)),
        [typeof(V1DaemonSet)] = new(true,
            async (k, name, ns, ct) => await k.AppsV1.ReadNamespacedDaemonSetAsync(name, ns, cancellationToken: ct).ConfigureAwait(false),
            (k, o, ns, ct) => k.AppsV1.CreateNamespacedDaemonSetAsync((V1DaemonSet)o, ns, fieldManager: FieldManager, cancellationToken: ct),
            (k, o, ns, ct) => k.AppsV1.ReplaceNamespacedDaemonSetAsync((V1DaemonSet)o, o.Name(), ns, fieldManager: FieldManager, cancellationToken: ct)),
    };

    /// <summary>"DaemonSet istio-system/ztunnel": how reports name an object.</summary>
    public static string Describe(IKubernetesObject<V1ObjectMeta> resource) =>
        $"{resource.Kind} {(resource.Namespace() is { Length: > 0 } ns ? ns + "/" : "")}{resource.Name()}";

    /// <summary>Creates the object, or replaces the one there. Throws <see cref="HttpOperationException"/> as the server refused.</summary>
    public static async Task<ApplyOutcome> ApplyAsync(IKubernetes client, IKubernetesObject<V1ObjectMeta> resource, CancellationToken cancellationToken)
    {
        var operations = OperationsOf(resource);
        var ns = operations.Namespaced ? resource.Namespace() ?? "default" : null;
        var existing = await ReadOrNullAsync(operations.Read, client, resource.Name(), ns, cancellationToken).ConfigureAwait(false);
        if (existing is null)
        {
            await operations.Create(client, resource, ns, cancellationToken).ConfigureAwait(false);
            return ApplyOutcome.Created;
        }
        resource.Metadata.ResourceVersion = existing.Metadata.ResourceVersion;
        // The cluster IP is the server's choice and immutable: keep the one it made (a replace without it is refused).
        if (resource is V1Service service && existing is V1Service current && service.Spec is { } spec && spec.ClusterIP is null)
        {
            spec.ClusterIP = current.Spec?.ClusterIP;
            spec.ClusterIPs = current.Spec?.ClusterIPs;
        }
        await operations.Replace(client, resource, ns, cancellationToken).ConfigureAwait(false);
        return ApplyOutcome.Updated;
    }

    /// <summary>Creates the object unless one of its name exists (then leaves that one alone); true when it created it.</summary>
    public static async Task<bool> CreateIfAbsentAsync(IKubernetes client, IKubernetesObject<V1ObjectMeta> resource, CancellationToken cancellationToken)
    {
        var operations = OperationsOf(resource);
        var ns = operations.Namespaced ? resource.Namespace() ?? "default" : null;
        if (await ReadOrNullAsync(operations.Read, client, resource.Name(), ns, cancellationToken).ConfigureAwait(false) is not null) return false;
        try
        {
            await operations.Create(client, resource, ns, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
        {
            return false; // made meanwhile by someone else: theirs stands
        }
    }

    private static Operations OperationsOf(IKubernetesObject<V1ObjectMeta> resource) =>
        Kinds.TryGetValue(resource.GetType(), out var operations)
            ? operations
            : throw new ManifestException($"{Describe(resource)}: ambientctl install does not apply {resource.Kind} objects");

    private static Task<IKubernetesObject<V1ObjectMeta>?> ReadOrNullAsync(Read read, IKubernetes client, string name, string? ns, CancellationToken cancellationToken) =>
        KubeReads.OrNullAsync(() => read(client, name, ns, cancellationToken));
}
