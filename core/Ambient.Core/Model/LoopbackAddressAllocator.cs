using System.Net;
using System.Net.Sockets;
using Ambient.Core.Config;

namespace Ambient.Core.Model;

/// <summary>
/// Hands out stable loopback addresses in one range: slot = FNV-1a-64(UTF-8 key) mod range size, and on a
/// taken slot the next free one (linear probing, wrapping). Addresses whose last octet is 0 or 255 are never
/// used (they look like network/broadcast addresses to tools and humans). Callers must allocate keys in a
/// deterministic order (sorted), so the outcome is a pure function of the set of keys.
///
/// Stability: adding or removing a key moves no other key unless their probe sequences meet, i.e. on a hash
/// collision: a new key that sorts before an existing key and lands on (or probes into) that key's slot takes
/// the slot, and the existing key moves to the next free one. With ~8.2 million slots per range and
/// thousands of keys this is rare, but not impossible; long-lived clients should re-resolve after a config change.
/// </summary>
internal sealed class LoopbackAddressAllocator
{
    private const int SlotsPerBlock = 254;

    /// <summary>Pods: 127.1.0.1 - 127.127.255.254.</summary>
    public static (byte First, byte Last) PodRange => (1, 127);

    /// <summary>Service VIPs: 127.128.0.1 - 127.254.255.254.</summary>
    public static (byte First, byte Last) ServiceRange => (128, 254);

    /// <summary>Nodes: 127.0.1.1, 127.0.1.2, ... unless a caller moves them (127.0.0.x is left to the control plane).</summary>
    public const byte DefaultFirstNodeOctet = 1;

    private readonly uint _firstBlock;
    private readonly uint _slots;
    private readonly HashSet<uint> _used;

    /// <param name="firstSecondOctet">First value of the second octet (127.X.0.0).</param>
    /// <param name="lastSecondOctet">Last value of the second octet, inclusive.</param>
    /// <param name="used">Addresses (host byte order) that are taken; shared between allocators so ranges and
    /// explicitly configured addresses never collide. Allocation adds to it.</param>
    public LoopbackAddressAllocator(byte firstSecondOctet, byte lastSecondOctet, HashSet<uint> used)
        : this((127u << 24) | ((uint)firstSecondOctet << 16), CheckedBlocks(firstSecondOctet, lastSecondOctet), used)
    {
    }

    /// <summary>
    /// An allocator over <paramref name="blocks"/> consecutive /24 blocks from <paramref name="firstBlock"/> (host byte
    /// order, last octet 0), each offering .1-.254; a slot already in <paramref name="used"/> (a gateway, the DNS VIP,
    /// an explicit address) is skipped by probing.
    /// </summary>
    public LoopbackAddressAllocator(uint firstBlock, uint blocks, HashSet<uint> used)
    {
        ArgumentOutOfRangeException.ThrowIfZero(blocks);
        _firstBlock = firstBlock & 0xffffff00;
        _slots = blocks * SlotsPerBlock;
        _used = used;
    }

    /// <summary>The /24 blocks of a CIDR with a prefix of /24 or shorter.</summary>
    public static LoopbackAddressAllocator ForCidr(IPNetwork cidr, HashSet<uint> used)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(cidr.PrefixLength, 24);
        return new LoopbackAddressAllocator(AddressRanges.Network(cidr), 1u << (24 - cidr.PrefixLength), used);
    }

    private static uint CheckedBlocks(byte first, byte last)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(first, last);
        return (uint)(last - first + 1) * 256;
    }

    public IPAddress Allocate(string key) => AllocateHash(StableHash.Fnv1a64(key));

    /// <summary>Same as <c>Allocate(ns + "/" + name)</c>, without building the string.</summary>
    public IPAddress Allocate(string @namespace, string name) => AllocateHash(StableHash.Fnv1a64Joined(@namespace, '/', name));

    private IPAddress AllocateHash(ulong hash)
    {
        var slot = (uint)(hash % _slots);
        // At most one lap: the used set is shared with other ranges, so its size says nothing about this one.
        for (var probes = 0u; probes < _slots; probes++)
        {
            var address = SlotToAddress(slot);
            if (_used.Add(address))
            {
                return ToIPAddress(address);
            }
            slot = slot + 1 == _slots ? 0 : slot + 1;
        }
        throw new InvalidOperationException($"address range {ToIPAddress(_firstBlock)} (+{_slots} addresses) is exhausted");
    }

    private uint SlotToAddress(uint slot) => _firstBlock + ((slot / SlotsPerBlock) << 8) + (slot % SlotsPerBlock + 1);

    internal static IPAddress ToIPAddress(uint hostOrder) => new(
    [
        (byte)(hostOrder >> 24), (byte)(hostOrder >> 16), (byte)(hostOrder >> 8), (byte)hostOrder,
    ]);

    internal static bool TryToUInt32(IPAddress address, out uint hostOrder)
    {
        if (address.AddressFamily != AddressFamily.InterNetwork)
        {
            hostOrder = 0;
            return false;
        }
        Span<byte> b = stackalloc byte[4];
        address.TryWriteBytes(b, out _);
        hostOrder = ((uint)b[0] << 24) | ((uint)b[1] << 16) | ((uint)b[2] << 8) | b[3];
        return true;
    }

    /// <summary>
    /// The addresses of a whole config, as a pure function of it, so ambientctl (which launches pods and
    /// ztunnels) computes exactly what istiod publishes without asking it:
    /// explicit <c>status.podIP</c> / <c>spec.clusterIP</c> are kept and reserved; other pods get a slot in
    /// <see cref="PodRange"/>, other non-headless services one in <see cref="ServiceRange"/>, both keyed by
    /// "ns/name" in sorted order; each waypoint Gateway gets a pod address (its pod is named by
    /// <see cref="WaypointPlacement.PodNameFor"/>) and a Service VIP keyed by its name; every distinct <c>spec.nodeName</c>
    /// (and <c>ambient.dev/node</c> of a waypoint Gateway) gets 127.0.1.N (N = 1..254, then
    /// 127.0.2.N ...) in sorted order, so adding a node that sorts earlier renumbers later nodes.
    /// Duplicate resources: the first one counts (the builder reports the duplicate).
    /// </summary>
    /// <param name="resources">The whole config.</param>
    /// <param name="firstNodeOctet">Third octet of the first node address (127.0.X.1). Nodes are the only fixed
    /// addresses with well-known ports (admin, metrics, readiness), so moving them lets a second mesh run beside
    /// one on the default range.</param>
    public static LoopbackAssignment AssignAll(IReadOnlyList<Resource> resources, byte firstNodeOctet = DefaultFirstNodeOctet)
        => AssignAll(resources, AddressRanges.LoopbackFrom(firstNodeOctet));

    /// <summary>
    /// The same in either mode (<see cref="AddressRanges"/>). In netns mode node i (sorted) is the gateway .1 of the
    /// i-th /24 of the pod CIDR, a pod's slot is in its node's /24 (a pod without a node gets no address: it cannot
    /// run), and VIPs are slots of the service CIDR, never its DNS VIP.
    /// Reads Pods, Services and waypoint Gateways only: <see cref="MeshBuildCache.Assignment"/> reuses the result while
    /// those are unchanged, so a new input (another kind, another field) must be known there too.
    /// </summary>
    /// <param name="waypointsDeployed">True when the config holds each waypoint's pod and Service (Kubernetes mode,
    /// <see cref="MeshOptions.WaypointsDeployed"/>): the waypoints are placed but get no invented pod address or VIP,
    /// so the real Service's clusterIP counts.</param>
    public static LoopbackAssignment AssignAll(IReadOnlyList<Resource> resources, AddressRanges ranges, bool waypointsDeployed = false)
    {
        var netns = ranges.Mode == NetworkMode.Netns;
        var firstNodeOctet = ranges.FirstNodeOctet;
        if (!netns) ArgumentOutOfRangeException.ThrowIfZero(firstNodeOctet);
        var problems = new List<ConfigError>();
        var used = new HashSet<uint>();
        var owners = new Dictionary<IPAddress, string>();
        // Keyed by (namespace, name) rather than "ns/name" strings: no string per pod is built on this path.
        var pods = new Dictionary<ObjectKey, IPAddress?>(resources.Count);
        var services = new Dictionary<ObjectKey, IPAddress?>();
        var nodeSet = new HashSet<string>(StringComparer.Ordinal);
        var podsToAllocate = new List<ObjectKey>(resources.Count);
        // Netns mode: the node of each pod to allocate (its address is in the node's /24); waypoints are placed later.
        var podNodes = new Dictionary<ObjectKey, string>();
        var servicesToAllocate = new List<ObjectKey>();

        // Waypoints first: each gets a pod and a Service named after its Gateway (as Istio's deployment controller
        // creates them); registering them before the declared objects means a declared Service of the same name
        // cannot take the waypoint Service's address (the builder reports that Service and ignores it).
        var waypointGateways = new List<GatewayResource>();
        var waypointKeys = new HashSet<ObjectKey>();
        foreach (var r in resources)
        {
            if (r is GatewayResource { IsWaypoint: true } gateway && waypointKeys.Add(new ObjectKey(gateway.Metadata.Namespace, gateway.Metadata.Name)))
            {
                waypointGateways.Add(gateway);
                if (waypointsDeployed)
                {
                    continue;
                }
                var key = new ObjectKey(gateway.Metadata.Namespace, gateway.Metadata.Name);
                var podKey = new ObjectKey(key.Namespace, WaypointPlacement.PodNameFor(key.Namespace, key.Name));
                pods.Add(podKey, null);
                podsToAllocate.Add(podKey);
                services.Add(key, null);
                servicesToAllocate.Add(key);
                if (gateway.Metadata.Annotations.TryGetValue(WaypointLabels.NodeAnnotation, out var node) && node.Length > 0)
                {
                    nodeSet.Add(node);
                }
            }
        }

        foreach (var r in resources)
        {
            switch (r)
            {
                case PodResource pod:
                {
                    var key = new ObjectKey(pod.Metadata.Namespace, pod.Metadata.Name);
                    if (pods.ContainsKey(key))
                    {
                        break;
                    }
                    if (!string.IsNullOrEmpty(pod.NodeName))
                    {
                        nodeSet.Add(pod.NodeName);
                    }
                    var explicitIp = ParseExplicit(pod.PodIP, pod, "status.podIP", "pod", key, used, owners, problems);
                    pods.Add(key, explicitIp);
                    if (explicitIp is null)
                    {
                        podsToAllocate.Add(key);
                        podNodes[key] = pod.NodeName ?? "";
                    }
                    break;
                }
                case ServiceResource svc:
                {
                    var key = new ObjectKey(svc.Metadata.Namespace, svc.Metadata.Name);
                    if (services.ContainsKey(key))
                    {
                        break;
                    }
                    if (IsHeadless(svc) || IsExternalName(svc))
                    {
                        services.Add(key, null);
                        break;
                    }
                    var explicitIp = ParseExplicit(svc.ClusterIP, svc, "spec.clusterIP", "service", key, used, owners, problems);
                    services.Add(key, explicitIp);
                    if (explicitIp is null)
                    {
                        servicesToAllocate.Add(key);
                    }
                    break;
                }
            }
        }

        var nodes = new string[nodeSet.Count];
        nodeSet.CopyTo(nodes);
        Array.Sort(nodes, StringComparer.Ordinal);
        var waypoints = new WaypointPlacement[waypointGateways.Count];
        for (var i = 0; i < waypoints.Length; i++)
        {
            var gateway = waypointGateways[i];
            // Local mode has no scheduler: the Gateway's ambient.dev/node annotation, else the first node by name.
            var node = gateway.Metadata.Annotations.TryGetValue(WaypointLabels.NodeAnnotation, out var named) && named.Length > 0
                ? named
                : nodes.Length > 0 ? nodes[0] : "";
            if (node.Length == 0 && !waypointsDeployed)
            {
                problems.Add(new ConfigError(gateway.Source, "metadata.annotations[" + WaypointLabels.NodeAnnotation + "]",
                    $"waypoint {gateway.Metadata.Namespace}/{gateway.Metadata.Name} has no node to run on (no pod names a spec.nodeName); set the annotation"));
            }
            waypoints[i] = new WaypointPlacement(gateway, WaypointPlacement.PodNameFor(gateway.Metadata.Namespace, gateway.Metadata.Name), node);
        }

        var nodeAddresses = new Dictionary<string, IPAddress>(nodes.Length, StringComparer.Ordinal);
        var index = 0;
        foreach (var node in nodes)
        {
            if (netns)
            {
                if (index >= ranges.MaxNodes)
                {
                    problems.Add(new ConfigError(new SourceLocation("", 0), "spec.nodeName", $"more than {ranges.MaxNodes} nodes; node '{node}' gets no /24 of the pod CIDR {ranges.PodCidr}"));
                    break;
                }
                nodeAddresses.Add(node, ranges.NodeGateway(index));
                used.Add(ranges.NodeBlock(index) + 1);
                index++;
                continue;
            }
            var third = firstNodeOctet + index / 254;
            if (third > 255)
            {
                problems.Add(new ConfigError(new SourceLocation("", 0), "spec.nodeName", $"more than {(256 - firstNodeOctet) * 254} nodes; node '{node}' gets no loopback address"));
                break;
            }
            nodeAddresses.Add(node, ToIPAddress((127u << 24) | ((uint)third << 8) | (uint)(index % 254 + 1)));
            index++;
        }

        podsToAllocate.Sort(ObjectKey.CompareJoined);
        if (netns)
        {
            AllocateNetnsPods(ranges, nodes, nodeAddresses, podNodes, waypoints, podsToAllocate, pods, used, problems);
        }
        else
        {
            var podAllocator = new LoopbackAddressAllocator(PodRange.First, PodRange.Last, used);
            foreach (var key in podsToAllocate)
            {
                pods[key] = podAllocator.Allocate(key.Namespace, key.Name);
            }
        }
        servicesToAllocate.Sort(ObjectKey.CompareJoined);
        LoopbackAddressAllocator serviceAllocator;
        if (netns)
        {
            // The DNS VIP is the cluster resolver's (every pod's resolv.conf), never a Service's.
            LoopbackAddressAllocator.TryToUInt32(ranges.DnsVip, out var dnsVip);
            used.Add(dnsVip);
            serviceAllocator = ForCidr(ranges.ServiceCidr, used);
        }
        else
        {
            serviceAllocator = new LoopbackAddressAllocator(ServiceRange.First, ServiceRange.Last, used);
        }
        foreach (var key in servicesToAllocate)
        {
            try
            {
                services[key] = serviceAllocator.Allocate(key.Namespace, key.Name);
            }
            catch (InvalidOperationException e)
            {
                problems.Add(new ConfigError(new SourceLocation("", 0), "spec.clusterIP", $"service {key} gets no VIP: {e.Message}"));
            }
        }
        return new LoopbackAssignment(pods, services, nodeAddresses, [.. problems], waypoints);
    }

    /// <summary>Each pod gets a slot of its node's /24 (hashed as in loopback mode, so stable the same way).</summary>
    private static void AllocateNetnsPods(
        AddressRanges ranges, string[] nodes, Dictionary<string, IPAddress> nodeAddresses, Dictionary<ObjectKey, string> podNodes,
        WaypointPlacement[] waypoints, List<ObjectKey> podsToAllocate, Dictionary<ObjectKey, IPAddress?> pods, HashSet<uint> used,
        List<ConfigError> problems)
    {
        foreach (var w in waypoints)
        {
            podNodes[new ObjectKey(w.Namespace, w.PodName)] = w.Node;
        }
        var allocators = new Dictionary<string, LoopbackAddressAllocator>(nodes.Length, StringComparer.Ordinal);
        for (var i = 0; i < nodes.Length && i < ranges.MaxNodes; i++)
        {
            allocators.Add(nodes[i], new LoopbackAddressAllocator(ranges.NodeBlock(i), 1, used));
        }
        foreach (var key in podsToAllocate)
        {
            // No node (reported by whoever runs pods) or a node beyond the pod CIDR: no address, as an unscheduled pod.
            if (!podNodes.TryGetValue(key, out var node) || !nodeAddresses.ContainsKey(node) || !allocators.TryGetValue(node, out var allocator))
            {
                continue;
            }
            try
            {
                pods[key] = allocator.Allocate(key.Namespace, key.Name);
            }
            catch (InvalidOperationException)
            {
                problems.Add(new ConfigError(new SourceLocation("", 0), "spec.nodeName",
                    $"node '{node}' has no free address left in {ranges.NodePodCidr(Array.IndexOf(nodes, node))} for pod {key}"));
            }
        }
    }

    // ip.ToString() == text without a string per pod per build.
    private static bool PrintsAs(IPAddress ip, string text)
    {
        Span<char> printed = stackalloc char[15]; // "255.255.255.255"
        return ip.TryFormat(printed, out var written) && printed[..written].SequenceEqual(text);
    }

    internal static bool IsHeadless(ServiceResource svc) => string.Equals(svc.ClusterIP, "None", StringComparison.OrdinalIgnoreCase);

    internal static bool IsExternalName(ServiceResource svc) => string.Equals(svc.Type, "ExternalName", StringComparison.Ordinal);

    private static IPAddress? ParseExplicit(
        string? text, Resource owner, string field, string kind, ObjectKey key,
        HashSet<uint> used, Dictionary<IPAddress, string> owners, List<ConfigError> problems)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        // IPAddress.TryParse also takes shorthand such as "10.1" or "0x0a.0.0.1"; Kubernetes
        // only accepts the canonical dotted quad, so an IPv4 address must print back exactly as written.
        if (!IPAddress.TryParse(text, out var ip)
            || (ip.AddressFamily == AddressFamily.InterNetwork && !PrintsAs(ip, text))
            || (ip.AddressFamily == AddressFamily.InterNetworkV6 && (ip.ScopeId != 0 || ip.IsIPv4MappedToIPv6))
            || text.Contains('/'))
        {
            problems.Add(new ConfigError(owner.Source, field, $"'{text}' is not an IP address; {kind} {key} gets a loopback address instead"));
            return null;
        }
        if (!owners.TryAdd(ip, kind + " " + key))
        {
            problems.Add(new ConfigError(owner.Source, field, $"address {ip} of {kind} {key} is already used by {owners[ip]}"));
        }
        if (TryToUInt32(ip, out var v4))
        {
            used.Add(v4);
        }
        return ip;
    }
}

/// <summary>A namespaced object name; orders like the string "ns/name" would.</summary>
internal readonly record struct ObjectKey(string Namespace, string Name)
{
    public override string ToString() => Namespace + "/" + Name;

    /// <summary>Ordinal order of <c>Namespace + "/" + Name</c>, without concatenating.</summary>
    public static int CompareJoined(ObjectKey x, ObjectKey y)
    {
        if (string.Equals(x.Namespace, y.Namespace, StringComparison.Ordinal))
        {
            return string.CompareOrdinal(x.Name, y.Name);
        }
        var lengthX = x.Namespace.Length + 1 + x.Name.Length;
        var lengthY = y.Namespace.Length + 1 + y.Name.Length;
        var common = Math.Min(lengthX, lengthY);
        for (var i = 0; i < common; i++)
        {
            var cx = x.CharAt(i);
            var cy = y.CharAt(i);
            if (cx != cy)
            {
                return cx - cy;
            }
        }
        return lengthX - lengthY;
    }

    private char CharAt(int i) => i < Namespace.Length ? Namespace[i] : i == Namespace.Length ? '/' : Name[i - Namespace.Length - 1];
}

/// <summary>The outcome of <see cref="LoopbackAddressAllocator.AssignAll"/>.</summary>
internal sealed class LoopbackAssignment(
    Dictionary<ObjectKey, IPAddress?> pods,
    Dictionary<ObjectKey, IPAddress?> services,
    Dictionary<string, IPAddress> nodes,
    IReadOnlyList<ConfigError> problems,
    IReadOnlyList<WaypointPlacement>? waypoints = null)
{
    /// <summary>Every waypoint Gateway (class istio-waypoint) with its pod name and node, in config order; the pod's
    /// address is <see cref="PodAddress"/>(namespace, pod name).</summary>
    public IReadOnlyList<WaypointPlacement> Waypoints => waypoints ?? [];

    /// <summary>The pod's explicit status.podIP, else its allocated loopback address; null for an unknown pod.</summary>
    public IPAddress? PodAddress(string @namespace, string name) => pods.GetValueOrDefault(new ObjectKey(@namespace, name));

    /// <summary>The service's explicit clusterIP, else its allocated VIP; null for headless, ExternalName or unknown services.</summary>
    public IPAddress? ServiceVip(string @namespace, string name) => services.GetValueOrDefault(new ObjectKey(@namespace, name));

    public IPAddress? NodeAddress(string node) => nodes.GetValueOrDefault(node);

    public IReadOnlyDictionary<string, IPAddress> Nodes => nodes;

    public IReadOnlyList<ConfigError> Problems => problems;
}
