namespace Ambient.Ctl.Local.NodeAgent;

/// <summary>
/// Installs and removes a pod's capture (the <see cref="InPodRules"/> and the return route) inside its network
/// namespace. Everything lives in the namespace, not in the agent: pods keep their capture while the agent is down.
/// Every command is a process (nsenter, then the tool), which on a loaded host costs tens of milliseconds or more, and
/// a label switch waits for them: so the reads go at once, then the writes at once - two rounds of at most two.
/// </summary>
internal static class InPodCapture
{
    /// <summary>Idempotent: run again, it leaves the same rules (for new options, the new ones) and no duplicates.</summary>
    public static async Task InstallAsync(string netnsPath, InPodRuleOptions options, CancellationToken cancellationToken)
    {
        var saved = ReadStateAsync(netnsPath, cancellationToken);
        var routing = ReadReturnRoutingAsync(netnsPath, cancellationToken);
        await Task.WhenAll(saved, routing).ConfigureAwait(false);
        // Istio installs the return routing before the rules that use it. Both at once is the same for the pod: no
        // connection is marked for the return route before the ztunnel serves the pod, which is after this returns;
        // and on a re-install the route is replaced by itself and the rule stays.
        await Task.WhenAll(
            RunIpBatchAsync(netnsPath, InPodRules.ReturnRoutingInstall(await routing.ConfigureAwait(false)), cancellationToken),
            RestoreAsync(netnsPath, InPodRules.BuildInstall(options, await saved.ConfigureAwait(false)), cancellationToken)).ConfigureAwait(false);
    }

    /// <summary>Removes every rule, chain, route and routing rule of ours, and nothing else; a no-op when none is there.</summary>
    public static async Task RemoveAsync(string netnsPath, CancellationToken cancellationToken)
    {
        var saved = ReadStateAsync(netnsPath, cancellationToken);
        var routing = ReadReturnRoutingAsync(netnsPath, cancellationToken);
        await Task.WhenAll(saved, routing).ConfigureAwait(false);
        var removeRules = InPodRules.BuildRemove(await saved.ConfigureAwait(false)) is { } remove
            ? RestoreAsync(netnsPath, remove, cancellationToken) : Task.CompletedTask;
        var removeRouting = InPodRules.ReturnRoutingRemove(await routing.ConfigureAwait(false)) is { } batch
            ? RunIpBatchAsync(netnsPath, batch, cancellationToken) : Task.CompletedTask;
        await Task.WhenAll(removeRules, removeRouting).ConfigureAwait(false);
    }

    /// <summary>
    /// The first half of a pod leaving: the capture rules go (nat and raw), so new connections and DNS queries leave the
    /// pod directly; the return path stays for the ztunnel to finish what it still serves, and <see cref="RemoveAsync"/>
    /// takes it once the ztunnel dropped the pod. Two processes.
    /// </summary>
    public static async Task RemoveCaptureAsync(string netnsPath, CancellationToken cancellationToken)
    {
        if (InPodRules.BuildRemove(await ReadStateAsync(netnsPath, cancellationToken).ConfigureAwait(false), InPodRules.CaptureTables) is { } remove)
        {
            await RestoreAsync(netnsPath, remove, cancellationToken).ConfigureAwait(false);
        }
    }

    internal static async Task<IptablesState> ReadStateAsync(string netnsPath, CancellationToken cancellationToken) =>
        IptablesState.Parse(await NetnsCommand.RunCheckedAsync(netnsPath, "iptables-save", [], null, cancellationToken).ConfigureAwait(false));

    private static async Task<InPodRules.ReturnRouting> ReadReturnRoutingAsync(string netnsPath, CancellationToken cancellationToken) =>
        InPodRules.ReturnRouting.Parse(await RunIpBatchAsync(netnsPath, InPodRules.ReturnRoutingShow, cancellationToken).ConfigureAwait(false));

    private static Task<string> RunIpBatchAsync(string netnsPath, string commands, CancellationToken cancellationToken) =>
        NetnsCommand.RunCheckedAsync(netnsPath, "ip", ["-4", "-batch", "-"], commands, cancellationToken);

    private static Task RestoreAsync(string netnsPath, string text, CancellationToken cancellationToken) =>
        NetnsCommand.RunCheckedAsync(netnsPath, "iptables-restore", ["--noflush"], text, cancellationToken);
}
