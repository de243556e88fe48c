namespace Ambient.Ctl.Local.NodeAgent;

/// <summary>
/// Installs and removes a pod's capture (the <see cref="InPodRules"/> and the return route) inside its network
/// namespace. Everything lives in the namespace, not in the agent: pods keep their capture while the agent is down.
/// </summary>
internal static class InPodCapture
{
    /// <summary>Idempotent: run again, it leaves the same rules (for new options, the new ones) and no duplicates.</summary>
    public static async Task InstallAsync(string netnsPath, InPodRuleOptions options, CancellationToken cancellationToken)
    {
        // Istio's order: return routing before the rules that depend on it.
        var routing = InPodRules.ReturnRoutingInstall();
        await NetnsCommand.RunCheckedAsync(netnsPath, "ip", routing[0], null, cancellationToken).ConfigureAwait(false);
        if (!await HasReturnRuleAsync(netnsPath, cancellationToken).ConfigureAwait(false))
        {
            await NetnsCommand.RunCheckedAsync(netnsPath, "ip", routing[1], null, cancellationToken).ConfigureAwait(false);
        }
        var current = await ReadStateAsync(netnsPath, cancellationToken).ConfigureAwait(false);
        await RestoreAsync(netnsPath, InPodRules.BuildInstall(options, current), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Removes every rule, chain, route and routing rule of ours, and nothing else; a no-op when none is there.</summary>
    public static async Task RemoveAsync(string netnsPath, CancellationToken cancellationToken)
    {
        var current = await ReadStateAsync(netnsPath, cancellationToken).ConfigureAwait(false);
        if (InPodRules.BuildRemove(current) is { } remove)
        {
            await RestoreAsync(netnsPath, remove, cancellationToken).ConfigureAwait(false);
        }
        var routing = InPodRules.ReturnRoutingRemove();
        while (await HasReturnRuleAsync(netnsPath, cancellationToken).ConfigureAwait(false))
        {
            await NetnsCommand.RunCheckedAsync(netnsPath, "ip", routing[0], null, cancellationToken).ConfigureAwait(false);
        }
        // Fails when the route is not there: that is the state we want.
        await NetnsCommand.RunAsync(netnsPath, "ip", routing[1], null, cancellationToken).ConfigureAwait(false);
    }

    internal static async Task<IptablesState> ReadStateAsync(string netnsPath, CancellationToken cancellationToken) =>
        IptablesState.Parse(await NetnsCommand.RunCheckedAsync(netnsPath, "iptables-save", [], null, cancellationToken).ConfigureAwait(false));

    private static Task RestoreAsync(string netnsPath, string text, CancellationToken cancellationToken) =>
        NetnsCommand.RunCheckedAsync(netnsPath, "iptables-restore", ["--noflush"], text, cancellationToken);

    private static async Task<bool> HasReturnRuleAsync(string netnsPath, CancellationToken cancellationToken)
    {
        var rules = await NetnsCommand.RunCheckedAsync(
            netnsPath, "ip", ["-4", "rule", "show", "priority", InPodRules.ReturnRulePriority.ToString(System.Globalization.CultureInfo.InvariantCulture)], null, cancellationToken).ConfigureAwait(false);
        return rules.Contains("fwmark " + InPodRules.ConnectionMark + " lookup " + InPodRules.ReturnRouteTable, StringComparison.Ordinal);
    }
}
