using System.Net;
using System.Net.Sockets;
using Ambient.Core.Model;

namespace Ambient.Ztunnel.DnsProxy;

/// <summary>How a queried name relates to the mesh.</summary>
internal enum DnsNameMatch
{
    /// <summary>Not a name the mesh answers for: forward it.</summary>
    NotOurs,

    /// <summary>A service's name: answer from its addresses.</summary>
    Service,

    /// <summary>Under <c>svc.&lt;cluster domain&gt;</c>, which the mesh is the authority for, and no service: NXDOMAIN.</summary>
    NoSuchName,

    /// <summary><c>&lt;ns&gt;.svc.&lt;cluster domain&gt;</c>: a name that exists only as the parent of service names, so
    /// NOERROR with no records. NXDOMAIN here would tell a resolver that follows RFC 8020 that nothing exists below it.</summary>
    EmptyNonTerminal,
}

/// <summary>A service's answers, encoded once per snapshot: the A and AAAA data back to back.</summary>
internal sealed class DnsHost(ServiceInfo service, byte[] v4, byte[] v6)
{
    public ServiceInfo Service { get; } = service;

    /// <summary>IPv4 addresses, 4 bytes each: the VIPs, or for a headless service each endpoint's first IPv4 address.</summary>
    public byte[] V4 { get; } = v4;

    /// <summary>IPv6 addresses, 16 bytes each.</summary>
    public byte[] V6 { get; } = v6;

    /// <summary>True for a service with VIPs (those are only reachable from the service's own network).</summary>
    public bool HasVips => !Service.Vips.IsEmpty;
}

/// <summary>
/// The service names of one <see cref="MeshSnapshot"/>, as Istio's ztunnel DNS server resolves them
/// (src/dns/server.rs): the name as asked, then the Kubernetes expansions that its label count allows, relative to the
/// client's namespace: <c>name</c> -> <c>name.&lt;client ns&gt;.svc.&lt;domain&gt;</c>, <c>name.ns</c> ->
/// <c>name.ns.svc.&lt;domain&gt;</c>, <c>name.ns.svc</c> -> <c>name.ns.svc.&lt;domain&gt;</c>. Services without a VIP are
/// kept only when they are Kubernetes headless services (a hostname under <c>svc.&lt;domain&gt;</c>); they answer with
/// their endpoints' addresses. Built once per snapshot; lookups take a span and allocate nothing.
/// </summary>
internal sealed class DnsNameTable
{
    // Longest candidate: a 253-character name, a dot, a 63-character namespace and ".svc." plus the domain.
    private const int ScratchLength = 640;

    private readonly Dictionary<string, DnsHost[]> _hosts;
    private readonly Dictionary<string, DnsHost[]>.AlternateLookup<ReadOnlySpan<char>> _lookup;

    /// <summary>The cluster domain (<c>cluster.local</c>), lower-case.</summary>
    private readonly string _domain;

    /// <summary><c>.svc.&lt;domain&gt;</c>: the zone the mesh answers for.</summary>
    private readonly string _svcSuffix;

    private DnsNameTable(MeshSnapshot snapshot)
    {
        Snapshot = snapshot;
        _domain = snapshot.Options.DomainSuffix.TrimEnd('.').ToLowerInvariant();
        _svcSuffix = ".svc." + _domain;
        var byName = new Dictionary<string, List<DnsHost>>(snapshot.Services.Length, StringComparer.Ordinal);
        foreach (var service in snapshot.Services)
        {
            var hostname = service.Hostname.TrimEnd('.').ToLowerInvariant();
            var headless = service.Vips.IsEmpty;
            if (headless && !hostname.EndsWith(_svcSuffix, StringComparison.Ordinal))
            {
                // No VIP and not a Kubernetes service: nothing to answer, the upstream resolver may know it.
                continue;
            }
            if (!byName.TryGetValue(hostname, out var list))
            {
                byName.Add(hostname, list = new List<DnsHost>(1));
            }
            list.Add(headless ? Headless(snapshot, service) : WithVips(service));
        }
        _hosts = new Dictionary<string, DnsHost[]>(byName.Count, StringComparer.Ordinal);
        foreach (var (name, list) in byName)
        {
            _hosts.Add(name, [.. list]);
        }
        _lookup = _hosts.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public MeshSnapshot Snapshot { get; }

    public static DnsNameTable Build(MeshSnapshot snapshot) => new(snapshot);

    /// <summary>
    /// Looks <paramref name="name"/> up (lower-case, dot-separated, no final dot, <paramref name="labels"/> labels) as a
    /// client in <paramref name="clientNamespace"/> (null when the client is not a known workload: then a bare
    /// <c>name</c> cannot be expanded). When several namespaces export one hostname, the client's own wins.
    /// </summary>
    public DnsNameMatch Find(ReadOnlySpan<char> name, int labels, string? clientNamespace, out DnsHost? host)
    {
        host = null;
        if (labels == 0)
        {
            return DnsNameMatch.NotOurs;
        }
        if (_lookup.TryGetValue(name, out var exact))
        {
            host = Pick(exact, clientNamespace);
            return DnsNameMatch.Service;
        }
        Span<char> scratch = stackalloc char[ScratchLength];
        var length = labels switch
        {
            1 when clientNamespace is not null => Concat(scratch, name, ".", clientNamespace, _svcSuffix),
            2 => Concat(scratch, name, "", "", _svcSuffix),
            3 when name.EndsWith(".svc", StringComparison.Ordinal) => Concat(scratch, name, ".", _domain, ""),
            _ => 0,
        };
        if (length > 0 && _lookup.TryGetValue(scratch[..length], out var expanded))
        {
            host = Pick(expanded, clientNamespace);
            return DnsNameMatch.Service;
        }
        if (name.Length > _svcSuffix.Length && name.EndsWith(_svcSuffix, StringComparison.Ordinal))
        {
            return name[..^_svcSuffix.Length].Contains('.') ? DnsNameMatch.NoSuchName : DnsNameMatch.EmptyNonTerminal;
        }
        return DnsNameMatch.NotOurs;
    }

    private static int Concat(Span<char> destination, ReadOnlySpan<char> a, ReadOnlySpan<char> b, ReadOnlySpan<char> c, ReadOnlySpan<char> d)
    {
        var length = a.Length + b.Length + c.Length + d.Length;
        if (length > destination.Length)
        {
            return 0;
        }
        a.CopyTo(destination);
        b.CopyTo(destination[a.Length..]);
        c.CopyTo(destination[(a.Length + b.Length)..]);
        d.CopyTo(destination[(a.Length + b.Length + c.Length)..]);
        return length;
    }

    private static DnsHost Pick(DnsHost[] candidates, string? clientNamespace)
    {
        if (candidates.Length > 1 && clientNamespace is not null)
        {
            foreach (var c in candidates)
            {
                if (string.Equals(c.Service.Namespace, clientNamespace, StringComparison.Ordinal))
                {
                    return c;
                }
            }
        }
        return candidates[0];
    }

    private static DnsHost WithVips(ServiceInfo service)
    {
        var v4 = new List<byte>();
        var v6 = new List<byte>();
        foreach (var vip in service.Vips)
        {
            Append(vip, v4, v6);
        }
        return new DnsHost(service, [.. v4], [.. v6]);
    }

    /// <summary>A headless service resolves to its endpoints: each one's first address of either family.</summary>
    private static DnsHost Headless(MeshSnapshot snapshot, ServiceInfo service)
    {
        var v4 = new List<byte>();
        var v6 = new List<byte>();
        foreach (var endpoint in snapshot.EndpointsOf(service))
        {
            var hasV4 = false;
            var hasV6 = false;
            foreach (var address in endpoint.Workload.Addresses)
            {
                var v4Address = address.AddressFamily == AddressFamily.InterNetwork || address.IsIPv4MappedToIPv6;
                if (v4Address ? hasV4 : hasV6)
                {
                    continue;
                }
                Append(address, v4, v6);
                hasV4 |= v4Address;
                hasV6 |= !v4Address;
            }
        }
        return new DnsHost(service, [.. v4], [.. v6]);
    }

    private static void Append(IPAddress address, List<byte> v4, List<byte> v6)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out var written))
        {
            return;
        }
        (written == 4 ? v4 : v6).AddRange(bytes[..written]);
    }
}
