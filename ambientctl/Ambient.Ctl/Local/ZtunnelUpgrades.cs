using Ambient.Core.Files;
using Ambient.Ctl.Local.NodeAgent;

namespace Ambient.Ctl.Local;

/// <summary>
/// `ambientctl local restart ztunnel` on the supervisor's side: requests are files in &lt;state&gt;/restart/
/// (<c>ztunnel-NODE.request</c>), polled, and answered in <c>ztunnel-NODE.result</c> ("ok OLDPID NEWPID" or
/// "error: why"). A restart is an upgrade without a gap (netns mode only): the new ztunnel starts beside the old one,
/// and its node agent gives it every pod, each with the listening sockets the old one hands over; only once its whole
/// snapshot is acked is the old one told to stop, and it drains its open connections (up to
/// <see cref="DrainTimeout"/>) while the new one accepts every new connection.
/// </summary>
internal sealed class ZtunnelUpgrades : IAsyncDisposable
{
    /// <summary>How long an old ztunnel's open connections may go on after it stopped accepting (its --drain-timeout).</summary>
    public static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);

    public const string Folder = "restart";
    public const string RequestSuffix = ".request";
    public const string ResultSuffix = ".result";

    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan ConfirmTimeout = TimeSpan.FromSeconds(60);

    private readonly LocalMesh _mesh;
    private readonly IZdsPodHooks _agents;
    private readonly string _folder;
    private readonly CancellationTokenSource _stop;
    private Task _loop = Task.CompletedTask;

    private ZtunnelUpgrades(LocalMesh mesh, IZdsPodHooks agents, CancellationToken meshStopping)
    {
        _mesh = mesh;
        _agents = agents;
        _folder = Path.Combine(mesh.Options.StateFolder, Folder);
        _stop = CancellationTokenSource.CreateLinkedTokenSource(meshStopping);
    }

    /// <summary>The request file of <paramref name="node"/>'s ztunnel in <paramref name="stateFolder"/>.</summary>
    public static string RequestPath(string stateFolder, string node) => Path.Combine(stateFolder, Folder, "ztunnel-" + node + RequestSuffix);

    public static string ResultPath(string stateFolder, string node) => Path.Combine(stateFolder, Folder, "ztunnel-" + node + ResultSuffix);

    public static ZtunnelUpgrades Start(LocalMesh mesh, IZdsPodHooks agents, CancellationToken meshStopping)
    {
        var upgrades = new ZtunnelUpgrades(mesh, agents, meshStopping);
        // Owner-only: whoever can drop a request here can restart the mesh's ztunnels.
        OwnerOnlyFiles.CreateDirectory(upgrades._folder);
        upgrades._loop = Task.Run(upgrades.RunAsync);
        return upgrades;
    }

    private async Task RunAsync()
    {
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            foreach (var request in Directory.EnumerateFiles(_folder, "ztunnel-*" + RequestSuffix))
            {
                var name = Path.GetFileName(request);
                var node = name["ztunnel-".Length..^RequestSuffix.Length];
                try { File.Delete(request); } catch (IOException) { continue; }
                string result;
                try
                {
                    var (oldPid, newPid) = await UpgradeAsync(node, token).ConfigureAwait(false);
                    result = $"ok {oldPid} {newPid}";
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException)
                {
                    result = "error: " + e.Message;
                    _mesh.Report($"restart of ztunnel {node} failed: {e.Message}");
                }
                PrivateFile.Write(ResultPath(_mesh.Options.StateFolder, node), result + "\n");
            }
            try
            {
                await Task.Delay(PollInterval, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Starts the node's new ztunnel, waits until its node agent confirmed it, then lets the old one drain.</summary>
    private async Task<(int OldPid, int NewPid)> UpgradeAsync(string node, CancellationToken cancellationToken)
    {
        var ztunnel = _mesh.FindComponent("ztunnel-" + node) ?? throw new InvalidOperationException($"no ztunnel runs for node {node}");
        _mesh.Report($"restarting ztunnel {node}: the new one takes over the pods' listeners before the old one drains");
        var snapshotsBefore = _agents.ZtunnelSnapshots(node);
        return await ztunnel.ReplaceAsync(async (fresh, ct) =>
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(ConfirmTimeout);
            while (_agents.ZtunnelSnapshots(node) <= snapshotsBefore)
            {
                if (fresh.HasExited)
                {
                    throw new InvalidOperationException($"the new ztunnel exited with code {fresh.ExitCode} before its node agent confirmed it; the old one keeps serving");
                }
                try
                {
                    await Task.Delay(50, timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new TimeoutException($"the node agent did not confirm the new ztunnel within {ConfirmTimeout.TotalSeconds:0} s; the old one keeps serving");
                }
            }
        }, DrainTimeout + TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}
