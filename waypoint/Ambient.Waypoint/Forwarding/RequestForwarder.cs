using System.Diagnostics;
using System.Net;
using Ambient.Core.Model;
using Ambient.Core.Protos.Waypoint;
using Ambient.Core.Protos.Workload;
using Ambient.Dataplane.State;
using Ambient.Hbone.Telemetry;
using Ambient.Waypoint.Authz;
using Ambient.Waypoint.Inbound;
using Ambient.Waypoint.Routing;
using Ambient.Waypoint.State;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace Ambient.Waypoint.Forwarding;

/// <summary>
/// The waypoint's request handler: authorize the request (<see cref="WaypointAuthorization"/>, AuthorizationPolicy:
/// a denial is answered 403 before anything else), route it (<see cref="LiveRouteTable"/>, HTTPRoute), pick a healthy
/// endpoint of the chosen Service (<see cref="EndpointPicker"/>), forward with YARP's <see cref="IHttpForwarder"/>
/// over HBONE, and write one access log line per request.
/// <para>
/// Applying the <see cref="RoutePlan"/>: no route -> the addressed Service as it is (Istio's default); redirect ->
/// the status and Location, nothing forwarded; direct response -> 500; forward -> request header edits, URL rewrite,
/// mirrors (fire and forget), then attempts with timeouts and retries, response header edits on the way back.
/// No healthy endpoint: 503; the endpoint cannot be reached: 502 (YARP's answer); a timeout: 504.
/// </para>
/// <para>
/// Retries: YARP's forwarder sends once, so the loop is here. The transformer withholds a response whose status the
/// rule retries (YARP then copies nothing), and a connect failure leaves the response unstarted; either way the
/// request is sent again to a freshly picked endpoint. A request body is kept while it streams
/// (<see cref="ReplayableRequestBody"/>, up to Envoy's 1 MiB buffer limit) and sent again with each retry; a body over
/// the limit is sent once, without retries, as Envoy does.
/// </para>
/// </summary>
internal sealed partial class RequestForwarder
{
    private static readonly ForwarderRequestConfig Http11 = new() { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
    private static readonly ForwarderRequestConfig Http2 = new() { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };

    // Envoy's default retry back-off base interval, used when the route asks for retries without a backoff.
    private static readonly TimeSpan DefaultBackoff = TimeSpan.FromMilliseconds(25);

    // Envoy's response flag for an upstream request timeout.
    private const string UpstreamTimeout = "UT";

    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _invoker;
    private readonly EndpointPicker _picker;
    private readonly WaypointConfig _config;
    private readonly LiveRouteTable _routes;
    private readonly WaypointAuthorization _authorization;
    private readonly RequestMirror _mirror;
    private readonly ILogger _accessLog;

    public RequestForwarder(IHttpForwarder forwarder, HttpMessageInvoker invoker, EndpointPicker picker, WaypointConfig config,
        LiveRouteTable routes, WaypointAuthorization authorization, ILogger accessLog)
    {
        _authorization = authorization;
        _forwarder = forwarder;
        _invoker = invoker;
        _picker = picker;
        _config = config;
        _routes = routes;
        _mirror = new RequestMirror(invoker, accessLog);
        _accessLog = accessLog;
    }

    public async Task HandleAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        if (context.Features.Get<IHboneTunnelFeature>() is not { } tunnel)
        {
            // Only tunnels reach the forwarder; anything else (the admin port) is not proxied.
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }
        ResolvedDestination? destination = null;
        var flags = ResponseFlags.None;
        var plan = RoutePlan.NoRoute(parentHasRoutes: false);
        string? details = null;
        try
        {
            var snapshot = _picker.State.Snapshot;
            var addressed = snapshot.FindServiceByVip(tunnel.OriginalTarget.Address);
            var port = tunnel.OriginalTarget.Port;
            // As Envoy's RBAC filter, before the router: a denied request is neither routed nor forwarded.
            if (_authorization.Check(context, tunnel, addressed) is { Allowed: false } denied)
            {
                flags = WaypointAuthorization.ResponseFlag;
                details = denied.ResponseCodeDetails();
                await WaypointAuthorization.DenyAsync(context).ConfigureAwait(false);
                return;
            }
            if (addressed is not null)
            {
                var request = context.Request;
                var facts = new RequestFacts(request.Method, request.Path.Value ?? "/", request.QueryString.Value, request.Host.Value ?? "",
                    request.Headers, request.Scheme, port);
                plan = _routes.Current.Route(new ServiceTarget(addressed.Namespace, addressed.Name, port), facts, tunnel.PeerNamespace);
            }

            ServiceInfo? backend = addressed;
            switch (plan.Outcome)
            {
                case RouteOutcome.Redirect:
                    plan.ResponseHeaders.ApplyTo(context.Response.Headers);
                    context.Response.StatusCode = plan.StatusCode;
                    context.Response.Headers.Location = plan.Location;
                    return;
                case RouteOutcome.DirectResponse:
                    flags = ResponseFlags.NoRoute;
                    plan.ResponseHeaders.ApplyTo(context.Response.Headers);
                    context.Response.StatusCode = plan.StatusCode;
                    return;
                case RouteOutcome.Forward:
                    backend = _routes.Resolve(snapshot, plan.Backend!);
                    port = plan.Backend!.Port;
                    if (backend is null)
                    {
                        // A backendRef to a Service the mesh does not have: 500 for this share, as the spec says.
                        flags = ResponseFlags.NoRoute;
                        plan.ResponseHeaders.ApplyTo(context.Response.Headers);
                        context.Response.StatusCode = StatusCodes.Status500InternalServerError;
                        return;
                    }
                    break;
            }

            var picked = backend is not null ? _picker.Pick(backend, port) : _picker.Pick(tunnel.OriginalTarget);
            if (picked.Destination is null)
            {
                flags = ResponseFlags.NoRoute;
                await NoHealthyUpstreamAsync(context, tunnel, picked.Error).ConfigureAwait(false);
                return;
            }
            destination = picked.Destination;
            var forwarded = Prepare(context, plan);
            forwarded.Destination = destination;
            context.Features.Set(forwarded);
            var config = UpstreamProtocol(destination.Service, port);
            (flags, destination) = await ForwardAsync(context, forwarded, plan, backend, port, config).ConfigureAwait(false);
        }
        finally
        {
            WriteAccessLog(context, tunnel, destination, plan, flags, details, Stopwatch.GetElapsedTime(started));
        }
    }

    /// <summary>Applies the plan's request side (header edits, mirrors) and returns the request's forwarding state.</summary>
    private ForwardedRequest Prepare(HttpContext context, in RoutePlan plan)
    {
        if (plan.Outcome != RouteOutcome.Forward)
        {
            return new ForwardedRequest();
        }
        var request = context.Request;
        plan.RequestHeaders.ApplyTo(request.Headers);
        var mirrors = plan.Mirrors;
        ReplayableRequestBody? body = null;
        if ((plan.Retry is not null || mirrors.Count > 0) && HasBody(request))
        {
            // Sent more than once (a retry, a mirror's copy): kept while it streams to the first attempt.
            body = new ReplayableRequestBody(request.Body, request.ContentLength);
            request.Body = body;
            context.Response.RegisterForDispose(body);
        }
        var replayable = body?.CanReplay ?? true;
        var forwarded = new ForwardedRequest
        {
            RewrittenPath = plan.RewrittenPath,
            RewrittenHost = plan.RewrittenHost,
            RequestHeaders = plan.RequestHeaders,
            ResponseHeaders = plan.ResponseHeaders,
            Retry = replayable ? plan.Retry : null,
            RetriesLeft = replayable && plan.Retry is { } retry ? retry.Attempts : 0,
            Body = body,
        };
        for (var i = 0; i < mirrors.Count; i++)
        {
            var mirrorService = _routes.Resolve(_picker.State.Snapshot, mirrors[i]);
            var mirrorDestination = mirrorService is null ? null : _picker.Pick(mirrorService, mirrors[i].Port).Destination;
            if (mirrorDestination is not null)
            {
                _mirror.Send(context, forwarded, mirrorDestination, body);
            }
        }
        return forwarded;
    }

    /// <summary>The attempt loop: per-attempt and whole-request timeouts, retries on the rule's codes, on connect failure and on a timed-out attempt.</summary>
    private async Task<(string Flags, ResolvedDestination Destination)> ForwardAsync(HttpContext context, ForwardedRequest forwarded,
        RoutePlan plan, ServiceInfo? backend, int port, ForwarderRequestConfig config)
    {
        var requestTimeout = plan.RequestTimeout;
        var attemptTimeout = plan.BackendRequestTimeout;
        using var whole = requestTimeout is { } total ? new CancellationTokenSource(total) : null;
        var destination = forwarded.Destination!;
        while (true)
        {
            using var attempt = attemptTimeout is { } each
                ? (whole is null ? new CancellationTokenSource(each) : CancellationTokenSource.CreateLinkedTokenSource(whole.Token))
                : null;
            if (attempt is not null && whole is not null)
            {
                attempt.CancelAfter(attemptTimeout!.Value);
            }
            var token = attempt?.Token ?? whole?.Token ?? CancellationToken.None;
            forwarded.RetryRequested = false;
            var error = await _forwarder.SendAsync(context, "http://" + destination.Authority, _invoker, config, RouteTransformer.Instance, token)
                .ConfigureAwait(false);
            var canRetry = !context.Response.HasStarted && forwarded.Retry is not null && forwarded.RetriesLeft > 0 && forwarded.CanResend;
            var attemptTimedOut = error != ForwarderError.None && attempt?.IsCancellationRequested == true;
            var wholeTimedOut = error != ForwarderError.None && whole?.IsCancellationRequested == true;
            // HTTPRouteRetry: a rule with a retry stanza retries connection errors, a timed-out attempt among them
            // (as Envoy retries a per-try timeout); only the whole request's timeout ends the loop at once.
            if (wholeTimedOut || (attemptTimedOut && !canRetry))
            {
                // Envoy's "upstream request timeout": the attempt or the whole request ran out of time.
                if (!context.Response.HasStarted)
                {
                    context.Response.Headers.Clear();
                    context.Response.StatusCode = StatusCodes.Status504GatewayTimeout;
                    await context.Response.WriteAsync("upstream request timeout\n", CancellationToken.None).ConfigureAwait(false);
                }
                return (UpstreamTimeout, destination);
            }
            var connectFailed = error == ForwarderError.Request && canRetry;
            if (!forwarded.RetryRequested && !connectFailed && !attemptTimedOut)
            {
                return (FlagsOf(error), destination);
            }

            if (!forwarded.CanResend)
            {
                // The withheld answer's body outgrew the buffer while the attempt ended: nothing to resend, nothing
                // to show. (The transformer only withholds a response while the body can be resent.)
                context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                return (ResponseFlags.UpstreamReset, destination);
            }

            // Another attempt: forget this one's answer, wait the backoff, pick again (maybe another endpoint), and
            // send the body again from its first byte.
            forwarded.RetriesLeft--;
            forwarded.Body?.Rewind();
            context.Features.Set<IForwarderErrorFeature>(null);
            context.Response.StatusCode = StatusCodes.Status200OK;
            try
            {
                await Task.Delay(forwarded.Retry!.Backoff ?? DefaultBackoff, whole?.Token ?? context.RequestAborted).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (whole?.IsCancellationRequested == true)
            {
                context.Response.StatusCode = StatusCodes.Status504GatewayTimeout;
                return (UpstreamTimeout, destination);
            }
            if ((backend is not null ? _picker.Pick(backend, port) : _picker.Pick(context.Features.Get<IHboneTunnelFeature>()!.OriginalTarget))
                .Destination is { } next)
            {
                forwarded.Destination = destination = next;
            }
        }
    }

    private static string FlagsOf(ForwarderError error) => error switch
    {
        ForwarderError.None => ResponseFlags.None,
        ForwarderError.Request or ForwarderError.RequestTimedOut => ResponseFlags.Connect,
        ForwarderError.RequestCanceled or ForwarderError.RequestBodyClient or ForwarderError.ResponseBodyClient => ResponseFlags.DownstreamReset,
        _ => ResponseFlags.UpstreamReset,
    };

    /// <summary>True when the request carries a body (which a retry or a mirror has to send again).</summary>
    internal static bool HasBody(HttpRequest request) =>
        request.ContentLength is { } length ? length > 0 : request.HttpContext.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? true;

    private async Task NoHealthyUpstreamAsync(HttpContext context, IHboneTunnelFeature tunnel, string? error)
    {
        context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync("no healthy upstream\n", context.RequestAborted).ConfigureAwait(false);
        Log.NoEndpoint(_accessLog, tunnel.OriginalTarget.ToString(), error ?? "");
    }

    // As Istio: the backend port's declared protocol decides (http -> HTTP/1.1; http2, grpc -> HTTP/2 with prior
    // knowledge), whatever the client spoke to the waypoint. istiod names the protocols of the Services this waypoint
    // serves (appProtocol, else the port name); a backendRef may name any other Service, whose port's appProtocol
    // (kubernetes.io/h2c among them) comes with the Service itself over the workload stream.
    private ForwarderRequestConfig UpstreamProtocol(ServiceInfo? service, int port)
    {
        if (service is null)
        {
            return Http11;
        }
        if (_config.HasProtocols(service.Namespace, service.Hostname))
        {
            return _config.ProtocolOf(service.Namespace, service.Hostname, port) is PortAppProtocol.Http2 or PortAppProtocol.Grpc ? Http2 : Http11;
        }
        return service.TryGetPort(port, out var declared) && declared.AppProtocol is AppProtocol.Http2 or AppProtocol.Grpc ? Http2 : Http11;
    }

    private void WriteAccessLog(HttpContext context, IHboneTunnelFeature tunnel, ResolvedDestination? destination, in RoutePlan plan,
        string flags, string? details, TimeSpan duration)
    {
        if (!_accessLog.IsEnabled(LogLevel.Information))
        {
            return;
        }
        var request = context.Request;
        var rule = plan.Rule;
        Log.Request(_accessLog,
            tunnel.Connection.Source.ToString(), tunnel.PeerIdentity,
            destination?.Service?.Hostname ?? AccessLogEntry.Unknown,
            destination?.Target.ToString() ?? AccessLogEntry.Unknown,
            destination?.Workload?.Name ?? AccessLogEntry.Unknown,
            destination?.ExpectedIdentity ?? AccessLogEntry.Unknown,
            LogText.Clip(request.Method, 16), LogText.Clip(request.Host.Value, 100), LogText.Clip(request.Path.Value + request.QueryString.Value, 200),
            request.Protocol, context.Response.StatusCode, (long)duration.TotalMilliseconds, flags,
            rule is null ? AccessLogEntry.Unknown : rule.RouteNamespace + "/" + rule.RouteName,
            rule is null ? AccessLogEntry.Unknown : rule.RuleName.Length > 0 ? rule.RuleName : rule.RuleIndex.ToString(System.Globalization.CultureInfo.InvariantCulture),
            plan.Backend is { } b ? $"{b.Namespace}/{b.Name}:{b.Port}" : AccessLogEntry.Unknown,
            details ?? AccessLogEntry.Unknown);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3, EventName = "WaypointAccess", Level = LogLevel.Information, Message =
            "access src.addr={SrcAddr} src.identity={SrcIdentity} dst.service={DstService} dst.addr={DstAddr} " +
            "dst.workload={DstWorkload} dst.identity={DstIdentity} method={Method} authority={Authority} path={Path} " +
            "protocol={Protocol} status={Status} duration={DurationMs}ms flags={Flags} route={Route} rule={Rule} backend={Backend} " +
            "details={Details} direction=waypoint")]
        public static partial void Request(ILogger logger, string srcAddr, string srcIdentity, string dstService, string dstAddr,
            string dstWorkload, string dstIdentity, string method, string authority, string path, string protocol, int status,
            long durationMs, string flags, string route, string rule, string backend, string details);

        [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "waypoint: no healthy endpoint for {Target}: {Error}")]
        public static partial void NoEndpoint(ILogger logger, string target, string error);
    }
}
