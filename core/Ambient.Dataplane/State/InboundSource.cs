using System.Net;
using Ambient.Core.Model;
using Ambient.Hbone.Server;

namespace Ambient.Dataplane.State;

/// <summary>
/// The source workload of an accepted HBONE CONNECT, for metrics and logs: the pod named by <c>forwarded: for=</c>,
/// else by the baggage's <c>k8s.namespace.name</c>/<c>k8s.pod.name</c> (the app's own address is not the pod's when
/// it reached a SOCKS5 listener from elsewhere), trusted only if its identity is the authenticated peer's.
/// </summary>
internal static class InboundSource
{
    public static WorkloadInfo? Find(MeshSnapshot snapshot, InboundConnectionInfo info)
    {
        WorkloadInfo? source = null;
        if (ForwardedFor(info.Forwarded) is { } address)
        {
            source = snapshot.FindWorkloadByAddress(address);
        }
        if ((source is null || source.Identity != info.PeerIdentity)
            && BaggageValue(info.Baggage, "k8s.namespace.name") is { } ns && BaggageValue(info.Baggage, "k8s.pod.name") is { } pod)
        {
            source = snapshot.FindPod(ns, pod);
        }
        return source is not null && source.Identity == info.PeerIdentity ? source : null;
    }

    private static string? BaggageValue(string? baggage, string key)
    {
        if (baggage is null)
        {
            return null;
        }
        foreach (var member in baggage.Split(','))
        {
            var eq = member.IndexOf('=');
            if (eq > 0 && member.AsSpan(0, eq).Trim().SequenceEqual(key))
            {
                return member[(eq + 1)..].Trim();
            }
        }
        return null;
    }

    /// <summary>The address in a <c>forwarded: for=</c> header (RFC 7239), or null.</summary>
    internal static IPAddress? ForwardedFor(string? forwarded)
    {
        if (forwarded is null)
        {
            return null;
        }
        var i = forwarded.IndexOf("for=", StringComparison.Ordinal);
        if (i < 0)
        {
            return null;
        }
        var value = forwarded[(i + 4)..];
        var end = value.IndexOf(';');
        value = (end < 0 ? value : value[..end]).Trim('"');
        return IPEndPoint.TryParse(value, out var ep) ? ep.Address : IPAddress.TryParse(value, out var ip) ? ip : null;
    }
}
