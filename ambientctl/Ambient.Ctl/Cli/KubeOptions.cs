using System.CommandLine;
using k8s;
using k8s.Autorest;
using k8s.Exceptions;

namespace Ambient.Ctl.Cli;

/// <summary>--kubeconfig and --context of the commands that act on a cluster, and the client they give.</summary>
internal sealed class KubeOptions
{
    private readonly Option<string?> _kubeconfig = new("--kubeconfig") { Description = "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)" };
    private readonly Option<string?> _context = new("--context") { Description = "kubeconfig context (default: its current context)" };

    public void AddTo(Command command)
    {
        command.Options.Add(_kubeconfig);
        command.Options.Add(_context);
    }

    /// <summary>The client, or null after saying on stderr why there is none.</summary>
    public IKubernetes? Connect(ParseResult parse, string command)
    {
        try
        {
            var file = parse.GetValue(_kubeconfig) ?? Environment.GetEnvironmentVariable("KUBECONFIG")?.Split(Path.PathSeparator)[0];
            // In a pod (the ambientctl image) without a kubeconfig: its service account.
            if (string.IsNullOrEmpty(file) && parse.GetValue(_context) is null && !File.Exists(KubernetesClientConfiguration.KubeConfigDefaultLocation)
                && KubernetesClientConfiguration.IsInCluster())
            {
                return new Kubernetes(KubernetesClientConfiguration.InClusterConfig());
            }
            var config = KubernetesClientConfiguration.BuildConfigFromConfigFile(string.IsNullOrEmpty(file) ? null : file, parse.GetValue(_context));
            return new Kubernetes(config);
        }
        catch (Exception e) when (e is KubeConfigException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"{command}: no cluster to talk to: {e.Message}");
            return null;
        }
    }

    /// <summary>
    /// What a failed call to the cluster says, for the user: the server's own words (its Status) when it refused,
    /// or why it could not be reached; null for any other exception (not the cluster's doing).
    /// </summary>
    public static string? DescribeFailure(Exception e) => e switch
    {
        HttpOperationException refused =>
            $"the API server refused: {(int)refused.Response.StatusCode} {refused.Response.ReasonPhrase}: {(string.IsNullOrWhiteSpace(refused.Response.Content) ? refused.Message : refused.Response.Content.Trim())}",
        HttpRequestException unreachable => "cannot reach the API server: " + unreachable.Message,
        _ => null,
    };
}
