using System.CommandLine;
using Ambient.Core.Model;
using Ambient.Ctl.Local.Netns;

namespace Ambient.Ctl.Cli;

/// <summary>
/// The network options `local up` and `demo` share, and their default: netns mode where this host can run it (Linux,
/// root, ip and iptables), since capturing unmodified programs is what ambient mode is for; loopback otherwise, with one
/// line on stderr saying why, so a user who expected capture learns at once that there is none.
/// </summary>
internal sealed class NetworkOptions
{
    public const string Loopback = "loopback";
    public const string Netns = "netns";

    public Option<string?> Network { get; } = new("--network")
    {
        Description = "netns (the default as root with ip and iptables): every pod in its own network namespace on its node's bridge, "
            + "its traffic captured; loopback (the default otherwise): every pod a process on its own 127.x address, in the mesh through SOCKS5",
    };

    public Option<string> PodCidr { get; } = new("--pod-cidr")
    {
        Description = "netns mode: pod addresses, one /24 per node (node i: the i-th /24, .1 its bridge)",
        DefaultValueFactory = _ => AddressRanges.DefaultPodCidr.ToString(),
    };

    public Option<string> ServiceCidr { get; } = new("--service-cidr")
    {
        Description = "netns mode: Service VIPs (its tenth address is the cluster DNS VIP)",
        DefaultValueFactory = _ => AddressRanges.DefaultServiceCidr.ToString(),
    };

    public Option<string?> NetworkId { get; } = new("--network-id")
    {
        Description = $"netns mode: the id in the names of its namespaces, links and chains (amb-ID-...), 1-{NetworkNames.MaxIdLength} of a-z0-9 (default: from the state folder)",
    };

    public NetworkOptions() => Network.AcceptOnlyFromAmong(Loopback, Netns);

    public IEnumerable<Option> All => [Network, PodCidr, ServiceCidr, NetworkId];

    /// <summary>
    /// The mode asked for, else netns when <paramref name="netnsMissing"/> (what this host lacks for it) is null, else
    /// loopback, saying so on <paramref name="error"/>.
    /// </summary>
    public static string Choose(string? requested, string? netnsMissing, string command, TextWriter error)
    {
        if (requested is not null) return requested;
        if (netnsMissing is null) return Netns;
        error.WriteLine($"{command}: network loopback (the default netns mode needs {netnsMissing}; --network loopback says so and silences this)");
        return Loopback;
    }
}
