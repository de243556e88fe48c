using System.Reflection;
using k8s;
using k8s.Models;
using YamlDotNet.RepresentationModel;

namespace Ambient.Ctl.Install;

/// <summary>The manifests could not be read: a missing file, YAML that is not a Kubernetes object.</summary>
internal sealed class ManifestException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The objects of manifests/ in the order its kustomization.yaml lists the files (namespace and CRDs first), with the
/// kustomization's <c>images</c> applied, as <c>kubectl apply -k manifests/</c> would send them. `ambientctl install`
/// applies them from the copy built into ambientctl, or from a folder (an edited checkout).
/// </summary>
internal static class MeshManifests
{
    public const string Kustomization = "kustomization.yaml";

    // Embedded by the csproj as manifests/<path inside the folder>.
    private const string ResourcePrefix = "manifests/";

    /// <summary>The manifests built into ambientctl.</summary>
    public static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> LoadEmbedded(string? hub = null, string? tag = null) =>
        Load(ReadEmbedded, hub, tag);

    /// <summary>The manifests of <paramref name="folder"/> (one holding a kustomization.yaml).</summary>
    public static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> LoadFolder(string folder, string? hub = null, string? tag = null) =>
        Load(path =>
        {
            var full = Path.Combine(folder, path);
            return File.Exists(full) ? File.ReadAllText(full) : throw new ManifestException($"{full} does not exist");
        }, hub, tag);

    private static string ReadEmbedded(string path)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(ResourcePrefix + path)
            ?? throw new ManifestException($"manifests/{path} is not built into this ambientctl");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <param name="read">Reads a file of the manifests folder by its path relative to the folder.</param>
    /// <param name="hub">Replaces the registry part of every image the kustomization names (ambient/ztunnel: HUB/ztunnel).</param>
    /// <param name="tag">Replaces the kustomization's tags.</param>
    internal static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Load(Func<string, string> read, string? hub, string? tag)
    {
        var (files, images) = ReadKustomization(read(Kustomization));
        List<IKubernetesObject<V1ObjectMeta>> objects = [];
        foreach (var file in files)
        {
            List<object> documents;
            try
            {
                documents = KubernetesYaml.LoadAllFromString(read(file));
            }
            catch (Exception e) when (e is YamlDotNet.Core.YamlException or InvalidOperationException or ArgumentException)
            {
                throw new ManifestException($"manifests/{file}: {e.Message}", e);
            }
            foreach (var document in documents)
            {
                if (document is not IKubernetesObject<V1ObjectMeta> resource)
                {
                    throw new ManifestException($"manifests/{file}: a {document.GetType().Name} is not a Kubernetes object with metadata");
                }
                SetImages(resource, images, hub, tag);
                objects.Add(resource);
            }
        }
        return objects;
    }

    /// <summary>The kustomization's resource files, and its images as name: (newName, newTag).</summary>
    private static (List<string> Files, Dictionary<string, (string? NewName, string? NewTag)> Images) ReadKustomization(string text)
    {
        var yaml = new YamlStream();
        yaml.Load(new StringReader(text));
        if (yaml.Documents.Count == 0 || yaml.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new ManifestException($"manifests/{Kustomization} is not a mapping");
        }
        List<string> files = [];
        if (root.Children.TryGetValue("resources", out var resources) && resources is YamlSequenceNode list)
        {
            foreach (var item in list)
            {
                if (item is YamlScalarNode { Value: { } path }) files.Add(path);
            }
        }
        if (files.Count == 0) throw new ManifestException($"manifests/{Kustomization} lists no resources");
        Dictionary<string, (string?, string?)> images = new(StringComparer.Ordinal);
        if (root.Children.TryGetValue("images", out var imageNode) && imageNode is YamlSequenceNode imageList)
        {
            foreach (var item in imageList)
            {
                if (item is not YamlMappingNode image || Scalar(image, "name") is not { } name) continue;
                images[name] = (Scalar(image, "newName"), Scalar(image, "newTag"));
            }
        }
        return (files, images);
    }

    private static string? Scalar(YamlMappingNode map, string key) =>
        map.Children.TryGetValue(key, out var node) && node is YamlScalarNode { Value: { Length: > 0 } value } ? value : null;

    private static void SetImages(IKubernetesObject<V1ObjectMeta> resource, Dictionary<string, (string? NewName, string? NewTag)> images, string? hub, string? tag)
    {
        var pod = resource switch
        {
            V1Deployment d => d.Spec?.Template?.Spec,
            V1DaemonSet d => d.Spec?.Template?.Spec,
            _ => null,
        };
        if (pod is null) return;
        foreach (var container in (pod.InitContainers ?? []).Concat(pod.Containers ?? []))
        {
            if (container.Image is not { } image || !images.TryGetValue(image, out var set)) continue;
            var name = set.NewName ?? image;
            if (hub is not null) name = hub.TrimEnd('/') + "/" + name[(name.LastIndexOf('/') + 1)..];
            var newTag = tag ?? set.NewTag;
            container.Image = newTag is null ? name : name + ":" + newTag;
        }
    }
}
