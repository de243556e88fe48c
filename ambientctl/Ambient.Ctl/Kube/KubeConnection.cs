using System.CommandLine;
using k8s;
using k8s.Exceptions;

namespace Ambient.Ctl.Kube;

/// <summary>
/// The <c>--kubeconfig</c> and <c>--context</c> options of every command that can act on a cluster. One instance per
/// command (System.CommandLine options belong to one command).
/// </summary>
internal sealed class KubeOptions
{
    public Option<string?> Kubeconfig { get; } = new("--kubeconfig")
    {
        Description = "act on the Kubernetes cluster of this kubeconfig (default: $KUBECONFIG, then ~/.kube/config)",
    };

    public Option<string?> Context { get; } = new("--context") { Description = "the kubeconfig context to use (default: its current-context)" };

    public void AddTo(Command command)
    {
        command.Options.Add(Kubeconfig);
        command.Options.Add(Context);
    }

    public KubeConnection Read(ParseResult parse) => new(parse.GetValue(Kubeconfig), parse.GetValue(Context));
}

/// <summary>Why a cluster cannot be reached from the kubeconfig (missing file, unknown context, bad credentials).</summary>
internal sealed class KubeConnectionException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Where a command's cluster is, the one place ambientctl makes a KubernetesClient: <c>--kubeconfig</c>, else
/// <c>$KUBECONFIG</c> (its first existing file: the client library does not merge several), else <c>~/.kube/config</c>, else the in-cluster service
/// account; <c>--context</c> picks a context instead of the current one.
/// </summary>
internal sealed record KubeConnection(string? Kubeconfig, string? Context)
{
    /// <summary>Whether the user named a cluster on the command line (which always selects Kubernetes mode).</summary>
    public bool Explicit => Kubeconfig is not null || Context is not null;

    /// <summary>The kubeconfig files to read, in kubectl's order of precedence; empty when there is none.</summary>
    public IReadOnlyList<string> KubeconfigFiles(Func<string, string?>? environment = null, string? home = null)
    {
        if (Kubeconfig is not null) return [Path.GetFullPath(Kubeconfig)];
        var fromEnvironment = (environment ?? Environment.GetEnvironmentVariable)("KUBECONFIG");
        if (!string.IsNullOrEmpty(fromEnvironment))
        {
            return fromEnvironment.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Where(File.Exists).ToList();
        }
        var standard = Path.Combine(home ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".kube", "config");
        return File.Exists(standard) ? [standard] : [];
    }

    /// <summary>Whether there is a cluster to fall back to when nothing was named: a kubeconfig, or running in a pod.</summary>
    public bool Available => KubeconfigFiles().Count > 0 || KubernetesClientConfiguration.IsInCluster();

    public KubernetesClientConfiguration Configuration()
    {
        var files = KubeconfigFiles();
        try
        {
            if (files.Count == 0)
            {
                if (Kubeconfig is null && Context is null && KubernetesClientConfiguration.IsInCluster()) return KubernetesClientConfiguration.InClusterConfig();
                throw new KubeConnectionException(Kubeconfig is not null
                    ? $"kubeconfig '{Kubeconfig}' not found"
                    : "no kubeconfig found (--kubeconfig, $KUBECONFIG or ~/.kube/config)");
            }
            return KubernetesClientConfiguration.BuildConfigFromConfigFile(files[0], currentContext: Context);
        }
        catch (KubeConfigException e)
        {
            throw new KubeConnectionException($"kubeconfig: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or YamlDotNet.Core.YamlException)
        {
            throw new KubeConnectionException($"kubeconfig {files[0]}: {e.Message}", e);
        }
    }

    /// <summary>A client for the cluster; the caller disposes it.</summary>
    public Kubernetes Connect() => new(Configuration());
}
