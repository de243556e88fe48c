using k8s;
using k8s.Exceptions;

namespace Ambient.Istiod.Ca;

/// <summary>How istiod-lite reaches the Kubernetes API: a kubeconfig file, or the pod's in-cluster service account.</summary>
internal static class KubernetesClientConfig
{
    /// <summary>Loads the configuration; throws <see cref="IOException"/> with one line naming what is missing.</summary>
    public static KubernetesClientConfiguration Load(string? kubeconfig)
    {
        try
        {
            if (kubeconfig is not null)
            {
                return KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig);
            }
            if (!KubernetesClientConfiguration.IsInCluster())
            {
                throw new IOException("--ca-auth tokenreview needs the Kubernetes API: run in a pod (in-cluster service account) or pass --kubeconfig FILE");
            }
            return KubernetesClientConfiguration.InClusterConfig();
        }
        catch (Exception e) when (e is KubeConfigException or FileNotFoundException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot load the Kubernetes client configuration ({kubeconfig ?? "in-cluster"}): {e.Message}", e);
        }
    }
}
