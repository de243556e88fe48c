using System.CommandLine;
using System.Text;
using Ambient.Cni;
using Ambient.Ctl.Kube;
using Ambient.Ctl.Kube.NodeAgent;
using Ambient.Ctl.Local.NodeAgent;
using k8s;
using Microsoft.Extensions.Logging;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl node-agent`: the node agent DaemonSet's entrypoint (manifests/node-agent.yaml), istio-cni's role on a
/// cluster. It serves the node's ZDS socket, installs the ambient-cni plugin into the node's CNI chain, answers the
/// plugin for every new pod sandbox, and watches this node's Pods and all Namespaces so pods labelled later, or
/// running before it started, are captured too. Runs until SIGTERM, then takes the plugin out of the chain.
/// </summary>
internal static class NodeAgentCommand
{
    public static Command Build()
    {
        var kube = new KubeOptions();
        var node = new Option<string>("--node") { Description = "this node's name (spec.nodeName of its pods)", Required = true };
        var zds = new Option<string>("--zds-socket") { Description = "the ZDS socket the node's ztunnel connects to", DefaultValueFactory = _ => "/var/run/ztunnel/ztunnel.sock" };
        var cniSocket = new Option<string>("--cni-socket") { Description = "where the CNI plugin reaches the agent (the same path on the host)", DefaultValueFactory = _ => CniNames.DefaultAgentSocket };
        var binDir = new Option<string?>("--cni-bin-dir") { Description = "the node's CNI bin folder: the plugin is copied there (no install when unset)" };
        var confDir = new Option<string?>("--cni-conf-dir") { Description = "the node's CNI config folder: the plugin joins its primary network config" };
        var hostRoot = new Option<string>("--host-root") { Description = "where host paths (the CNI_NETNS of a sandbox, the CNI folders) are mounted", DefaultValueFactory = _ => "/" };
        var hostProc = new Option<string>("--host-proc") { Description = "the host's /proc, to find the namespaces of pods that were running before the agent", DefaultValueFactory = _ => "/proc" };
        var clusterId = new Option<string>("--cluster-id") { Description = "the cluster id in workload uids (istiod-lite's)", DefaultValueFactory = _ => "Kubernetes" };
        var command = new Command("node-agent", "Run the node agent of a Kubernetes node (the DaemonSet's entrypoint): CNI plugin, pod capture, ZDS")
        {
            node, zds, cniSocket, binDir, confDir, hostRoot, hostProc, clusterId,
        };
        kube.AddTo(command);
        command.SetAction(async (parse, _) =>
        {
            var bin = parse.GetValue(binDir);
            var conf = parse.GetValue(confDir);
            if ((bin is null) != (conf is null))
            {
                Console.Error.WriteLine("node-agent: --cni-bin-dir and --cni-conf-dir go together");
                return ExitCodes.InvalidInput;
            }
            var root = parse.GetValue(hostRoot)!;
            var options = new KubeNodeAgentOptions(parse.GetValue(node)!, parse.GetValue(clusterId)!, root, parse.GetValue(hostProc)!, TimeSpan.FromSeconds(30));
            var install = bin is null ? null : new CniInstallOptions(bin, conf!, HostPath(root, conf!), parse.GetValue(cniSocket)!,
                Path.Combine(AppContext.BaseDirectory, CniNames.PluginType));
            return await RunAsync(kube.Read(parse), options, parse.GetValue(zds)!, parse.GetValue(cniSocket)!, install).ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>The path on the host of a folder the agent sees under <paramref name="hostRoot"/>.</summary>
    internal static string HostPath(string hostRoot, string path)
    {
        var root = Path.TrimEndingDirectorySeparator(hostRoot);
        return root.Length > 0 && path.StartsWith(root + "/", StringComparison.Ordinal) ? path[root.Length..] : path;
    }

    private static async Task<int> RunAsync(KubeConnection connection, KubeNodeAgentOptions options, string zdsSocket, string cniSocket, CniInstallOptions? install)
    {
        using var stopping = new Stopping();
        using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        }));
        var logger = loggers.CreateLogger("ambient.node-agent");
        k8s.KubernetesClientConfiguration configuration;
        try
        {
            configuration = connection.Configuration();
        }
        catch (KubeConnectionException e)
        {
            Console.Error.WriteLine("node-agent: " + e.Message);
            return ExitCodes.Failed;
        }
        using var client = new Kubernetes(configuration);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(zdsSocket))!);
        var agent = InPodNodeAgent.Start(NodeAgentOptions.Default(zdsSocket, redirectDns: true), logger);
        var kubeAgent = new KubeNodeAgent(client, options, agent, logger);
        CniEventServer? events = null;
        CniInstaller? installer = null;
        try
        {
            // The plugin's socket first: a sandbox created once the plugin is in the chain must find the agent.
            events = CniEventServer.Start(cniSocket, kubeAgent.HandleAsync, logger);
            if (install is not null)
            {
                installer = new CniInstaller(install, () => PluginKubeconfig(configuration), logger);
                installer.Start();
            }
            await kubeAgent.StartAsync(stopping.Token).ConfigureAwait(false);
            logger.LogInformation("node agent ready on node {Node}: ZDS {Zds}, plugin socket {Cni}", options.Node, zdsSocket, cniSocket);
            await Task.Delay(Timeout.Infinite, stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopping.Token.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
        {
            logger.LogError("node agent: {Reason}", e.Message);
            return ExitCodes.Failed;
        }
        finally
        {
            // Out of the chain first (new sandboxes start as if there were no mesh), then stop answering; enrolled pods
            // keep their rules (they live in the pods' namespaces) and the ztunnel keeps serving them.
            installer?.Dispose();
            if (events is not null) await events.DisposeAsync().ConfigureAwait(false);
            await kubeAgent.DisposeAsync().ConfigureAwait(false);
            await agent.DisposeAsync().ConfigureAwait(false);
        }
        return ExitCodes.Ok;
    }

    /// <summary>What the plugin needs to ask the API server itself: the agent's own server, CA and token (re-read for rotation).</summary>
    private static CniKubeconfig? PluginKubeconfig(KubernetesClientConfiguration configuration)
    {
        if (configuration.Host is not { Length: > 0 } host) return null;
        string? ca = null;
        if (configuration.SslCaCerts is { Count: > 0 } certificates)
        {
            var pem = new StringBuilder();
            foreach (var certificate in certificates) pem.Append(certificate.ExportCertificatePem()).Append('\n');
            ca = pem.ToString();
        }
        var token = configuration.AccessToken;
        const string ServiceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token";
        if (token is null && File.Exists(ServiceAccountToken)) token = File.ReadAllText(ServiceAccountToken).Trim();
        return new CniKubeconfig(host, ca, token);
    }
}
