using Ambient.Core.Model;

namespace Ambient.Ctl.Local.Netns;

/// <summary>
/// Every name netns mode gives a host object: the owned prefix <c>amb-&lt;id&gt;-</c> (<c>AMB-&lt;id&gt;-</c> for iptables
/// chains), where the id (1-6 of [a-z0-9]) is one mesh's: derived from its state folder unless given. Nothing else on a
/// host is named so, so cleanup may remove exactly what carries the prefix. Link names fit IFNAMSIZ (15 characters):
/// bridge <c>amb-&lt;id&gt;-b&lt;node&gt;</c> (node index up to 255), host end of a pod's veth <c>amb-&lt;id&gt;-&lt;n&gt;</c> (n up to 9999).
/// </summary>
internal sealed class NetworkNames
{
    public const int MaxIdLength = 6;
    public const int MaxVethIndex = 9999;

    public NetworkNames(string id)
    {
        if (Validate(id) is { } error) throw new ArgumentException(error, nameof(id));
        Id = id;
        Prefix = "amb-" + id + "-";
        ChainPrefix = "AMB-" + id + "-";
    }

    public string Id { get; }

    /// <summary>Of every link and network namespace this mesh creates.</summary>
    public string Prefix { get; }

    /// <summary>Of every iptables chain this mesh creates.</summary>
    public string ChainPrefix { get; }

    /// <summary>nat: Service VIP and DNS VIP DNAT (jumped to from PREROUTING and OUTPUT, as kube-proxy's KUBE-SERVICES).</summary>
    public string ServicesChain => ChainPrefix + "SVC";

    /// <summary>nat: masquerade of a pod reaching, through a VIP, a pod on its own bridge (jumped to from POSTROUTING).</summary>
    public string HairpinChain => ChainPrefix + "POST";

    /// <summary>filter: accept forwarding between this mesh's pods (jumped to from FORWARD).</summary>
    public string ForwardChain => ChainPrefix + "FWD";

    public string Bridge(int nodeIndex) => Prefix + "b" + nodeIndex.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public string Veth(int index) => Prefix + index.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary><c>amb-&lt;id&gt;-&lt;ns&gt;-&lt;pod&gt;</c>, readable for `ip netns exec`; long names are cut and made unique by a hash.</summary>
    public string Netns(string @namespace, string pod)
    {
        var name = Prefix + @namespace + "-" + pod;
        if (name.Length <= 64) return name;
        var hash = StableHash.Fnv1a64Joined(@namespace, '/', pod).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
        return name[..47] + "-" + hash;
    }

    public static string? Validate(string id)
    {
        if (id.Length is 0 or > MaxIdLength || !id.All(static c => c is >= 'a' and <= 'z' or >= '0' and <= '9'))
        {
            return $"--network-id '{id}' must be 1 to {MaxIdLength} characters of a-z and 0-9 (it goes into link names, which have 15)";
        }
        return null;
    }

    /// <summary>The id of the mesh whose state lives in <paramref name="stateFolder"/>: a hash of its full path.</summary>
    public static string DefaultId(string stateFolder)
    {
        var hash = StableHash.Fnv1a64(Path.GetFullPath(stateFolder));
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        Span<char> id = stackalloc char[MaxIdLength];
        for (var i = 0; i < id.Length; i++)
        {
            id[i] = alphabet[(int)(hash % (ulong)alphabet.Length)];
            hash /= (ulong)alphabet.Length;
        }
        return new string(id);
    }
}
