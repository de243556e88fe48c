using System.Collections.Immutable;
using Ambient.Core.Authz;
using Ambient.Core.Model;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Dataplane.State;
using Ambient.Hbone.Telemetry;
using Ambient.Waypoint.Inbound;
using Ambient.Waypoint.State;
using Microsoft.AspNetCore.Http;

namespace Ambient.Waypoint.Authz;

/// <summary>Set on a request the waypoint's AuthorizationPolicies denied: what the metrics and the access log report.</summary>
internal sealed class AuthorizationDenial(L7Decision decision)
{
    public L7Decision Decision { get; } = decision;
}

/// <summary>
/// The waypoint's L7 authorization, Envoy's RBAC filter in Istio's waypoint: the pushed AuthorizationPolicies
/// (<see cref="WaypointConfig.Policies"/>) compiled into an <see cref="L7Authorizer"/> on every change (on the xDS read
/// loop) and swapped in, so a request sees one consistent set and never locks; each request is decided before it is
/// routed. A denial is answered as Envoy answers it (403, <c>RBAC: access denied</c>) and the backend never sees the
/// request; dry-run and AUDIT outcomes are logged only.
/// </summary>
internal sealed partial class WaypointAuthorization
{
    /// <summary>Envoy's response flag for a request its RBAC filter denied (RbacAccessDenied).</summary>
    public const string ResponseFlag = "RBAC";

    /// <summary>Envoy's local reply body for an RBAC denial.</summary>
    public const string DeniedBody = "RBAC: access denied";

    private readonly string _gatewayNamespace;
    private readonly string _gatewayName;
    private readonly ILogger _logger;
    private L7Authorizer _current = L7Authorizer.Empty;

    public WaypointAuthorization(WaypointConfig config, string gatewayNamespace, string gatewayName, ILogger logger)
    {
        _gatewayNamespace = gatewayNamespace;
        _gatewayName = gatewayName;
        _logger = logger;
        Rebuild(config.Policies);
        config.PoliciesChanged += Rebuild;
    }

    public L7Authorizer Current => Volatile.Read(ref _current);

    private void Rebuild(ImmutableDictionary<string, AuthorizationPolicySpec> policies)
    {
        var next = L7Authorizer.Build(policies.Values, _gatewayNamespace, _gatewayName);
        foreach (var line in next.Skipped)
        {
            Log.Skipped(_logger, line);
        }
        Volatile.Write(ref _current, next);
        Log.Updated(_logger, next.Policies.Length);
    }

    /// <summary>
    /// Decides the request on <paramref name="tunnel"/> addressed to <paramref name="addressed"/> (null: a workload
    /// address, where only the Gateway's policies apply). A denied request is marked with <see cref="AuthorizationDenial"/>.
    /// </summary>
    public L7Decision Check(HttpContext context, IHboneTunnelFeature tunnel, ServiceInfo? addressed)
    {
        var authorizer = Current;
        if (authorizer.IsEmpty || !authorizer.AppliesTo(addressed?.Namespace, addressed?.Name))
        {
            return L7Decision.NoPolicies;
        }
        var connection = tunnel.Connection;
        // The client's address as its ztunnel forwards it (Istio's waypoints see the original source), else the peer's.
        var source = IpKey.From(InboundSource.ForwardedFor(connection.Forwarded) ?? connection.Source.Address);
        var request = context.Request;
        var facts = new L7Request(tunnel.PeerIdentity, source, source, IpKey.From(tunnel.OriginalTarget.Address), tunnel.OriginalTarget.Port,
            request.Method, request.Path.Value ?? "/", request.Host.Value ?? "", request.Headers);
        var decision = authorizer.Evaluate(addressed?.Namespace, addressed?.Name, facts);
        if (decision.DryRun is { } dryRun)
        {
            Log.DryRun(_logger, LogText.Clip(request.Method, 16), LogText.Clip(request.Host.Value, 100), LogText.Clip(request.Path.Value, 200),
                tunnel.PeerIdentity, decision.Describe(), dryRun.Describe());
        }
        if (decision.Audit is { } audit)
        {
            Log.Audited(_logger, audit.Key, LogText.Clip(request.Method, 16), LogText.Clip(request.Host.Value, 100), LogText.Clip(request.Path.Value, 200),
                tunnel.PeerIdentity);
        }
        if (!decision.Allowed)
        {
            context.Features.Set(new AuthorizationDenial(decision));
            Log.Denied(_logger, LogText.Clip(request.Method, 16), LogText.Clip(request.Host.Value, 100), LogText.Clip(request.Path.Value, 200),
                tunnel.PeerIdentity, decision.Describe());
        }
        return decision;
    }

    /// <summary>Envoy's local reply for an RBAC denial.</summary>
    public static Task DenyAsync(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status403Forbidden;
        context.Response.ContentType = "text/plain";
        context.Response.ContentLength = DeniedBody.Length;
        return context.Response.WriteAsync(DeniedBody, context.RequestAborted);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "authorization: {Method} {Authority}{Path} from {Source}: {Decision}")]
        public static partial void Denied(ILogger logger, string method, string authority, string path, string source, string decision);

        [LoggerMessage(2, LogLevel.Information, "authorization (dry-run): {Method} {Authority}{Path} from {Source}: enforced: {Decision}; {DryRun}")]
        public static partial void DryRun(ILogger logger, string method, string authority, string path, string source, string decision, string dryRun);

        [LoggerMessage(3, LogLevel.Information, "authorization: AUDIT policy {Policy} matched {Method} {Authority}{Path} from {Source}")]
        public static partial void Audited(ILogger logger, string policy, string method, string authority, string path, string source);

        [LoggerMessage(4, LogLevel.Warning, "authorization: {Line}")]
        public static partial void Skipped(ILogger logger, string line);

        [LoggerMessage(5, LogLevel.Information, "authorization: {Count} AuthorizationPolicies in effect at this waypoint")]
        public static partial void Updated(ILogger logger, int count);
    }
}
