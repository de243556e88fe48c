using System.Collections.Immutable;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Waypoint;
using Ambient.Core.Xds;
using Google.Protobuf;

namespace Ambient.Waypoint.State;

/// <summary>
/// The waypoint's own xDS resources as istiod-lite last sent them (route.proto): HTTPRoutes by <c>ns/name</c>,
/// the application protocol of each served Service's ports by <c>ns/hostname</c>, and the AuthorizationPolicies that
/// target the waypoint's Gateway or a Service it serves (authorization_policy.proto) by <c>ns/name</c>. Each delta response is applied
/// all-or-nothing into new immutable maps; readers take the current maps without locking.
/// </summary>
internal sealed class WaypointConfig
{
    private ImmutableDictionary<string, HTTPRoute> _routes = ImmutableDictionary<string, HTTPRoute>.Empty.WithComparers(StringComparer.Ordinal);
    private ImmutableDictionary<string, ServiceProtocols> _protocols = ImmutableDictionary<string, ServiceProtocols>.Empty.WithComparers(StringComparer.Ordinal);
    private ImmutableDictionary<string, AuthorizationPolicySpec> _policies = ImmutableDictionary<string, AuthorizationPolicySpec>.Empty.WithComparers(StringComparer.Ordinal);

    public ImmutableDictionary<string, HTTPRoute> Routes => Volatile.Read(ref _routes);

    public ImmutableDictionary<string, ServiceProtocols> Protocols => Volatile.Read(ref _protocols);

    public ImmutableDictionary<string, AuthorizationPolicySpec> Policies => Volatile.Read(ref _policies);

    /// <summary>Raised after the routes changed (on the xDS read loop), e.g. to rebuild a route table.</summary>
    public event Action<ImmutableDictionary<string, HTTPRoute>>? RoutesChanged;

    /// <summary>Raised after the policies changed (on the xDS read loop), to recompile the authorizer.</summary>
    public event Action<ImmutableDictionary<string, AuthorizationPolicySpec>>? PoliciesChanged;

    /// <summary>The handlers to subscribe with (see <c>DeltaXdsClient.OptionalTypes</c>).</summary>
    public IReadOnlyDictionary<string, Func<DeltaDiscoveryResponse, string?>> XdsTypes => new Dictionary<string, Func<DeltaDiscoveryResponse, string?>>
    {
        [XdsTypeUrls.HttpRoute] = ApplyRoutes,
        [XdsTypeUrls.ServiceProtocols] = ApplyProtocols,
        [XdsTypeUrls.AuthorizationPolicy] = ApplyPolicies,
    };

    /// <summary>
    /// The protocol of <paramref name="port"/> of the Service <paramref name="namespace"/>/<paramref name="hostname"/>;
    /// TCP when istiod said nothing about it (a real istiod never sends this type).
    /// </summary>
    public PortAppProtocol ProtocolOf(string @namespace, string hostname, int port)
    {
        if (Protocols.TryGetValue(@namespace + "/" + hostname, out var service))
        {
            foreach (var p in service.Ports)
            {
                if (p.ServicePort == port)
                {
                    return p.Protocol;
                }
            }
        }
        return PortAppProtocol.Tcp;
    }

    /// <summary>True when istiod named this Service as one the waypoint serves.</summary>
    public bool HasProtocols(string @namespace, string hostname) => Protocols.ContainsKey(@namespace + "/" + hostname);

    internal string? ApplyRoutes(DeltaDiscoveryResponse response) =>
        Apply(response, ref _routes, HTTPRoute.Parser, static r => r.Namespace + "/" + r.Name, RoutesChanged);

    internal string? ApplyProtocols(DeltaDiscoveryResponse response) =>
        Apply(response, ref _protocols, ServiceProtocols.Parser, static p => p.Namespace + "/" + p.Hostname, changed: null);

    internal string? ApplyPolicies(DeltaDiscoveryResponse response) =>
        Apply(response, ref _policies, AuthorizationPolicySpec.Parser, static p => p.Namespace + "/" + p.Name, PoliciesChanged);

    /// <summary>Applies the response into a new map and swaps it in (then raises <paramref name="changed"/>); the
    /// error, with nothing changed, when a resource does not decode.</summary>
    private static string? Apply<T>(DeltaDiscoveryResponse response, ref ImmutableDictionary<string, T> current,
        MessageParser<T> parser, Func<T, string> nameOf, Action<ImmutableDictionary<string, T>>? changed)
        where T : IMessage<T>
    {
        var next = Apply(response, Volatile.Read(ref current), parser, nameOf, out var error);
        if (next is null)
        {
            return error;
        }
        Volatile.Write(ref current, next);
        changed?.Invoke(next);
        return null;
    }

    private static ImmutableDictionary<string, T>? Apply<T>(DeltaDiscoveryResponse response, ImmutableDictionary<string, T> current,
        MessageParser<T> parser, Func<T, string> nameOf, out string? error)
        where T : IMessage<T>
    {
        var builder = current.ToBuilder();
        foreach (var removed in response.RemovedResources)
        {
            builder.Remove(removed);
        }
        foreach (var resource in response.Resources)
        {
            T message;
            try
            {
                message = resource.Resource_ is { } any ? parser.ParseFrom(any.Value) : throw new InvalidDataException("the resource has no body");
            }
            catch (Exception ex) when (ex is InvalidDataException or InvalidProtocolBufferException)
            {
                error = $"{response.TypeUrl} '{resource.Name}' does not decode: {ex.Message}";
                return null;
            }
            if (nameOf(message) != resource.Name)
            {
                error = $"{response.TypeUrl} '{resource.Name}' carries '{nameOf(message)}'";
                return null;
            }
            builder[resource.Name] = message;
        }
        error = null;
        return builder.ToImmutable();
    }
}
