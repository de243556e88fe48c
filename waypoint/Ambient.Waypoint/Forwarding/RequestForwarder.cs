using System.Diagnostics;
using System.Net;
using Ambient.Core.Model;
using Ambient.Core.Protos.Waypoint;
using Ambient.Dataplane.State;
using Ambient.Hbone.Telemetry;
using Ambient.Waypoint.Inbound;
using Ambient.Waypoint.State;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace Ambient.Waypoint.Forwarding;

/// <summary>
/// The waypoint's request handler: decide the backend (<see cref="IRouteDecider"/>), pick a healthy endpoint
/// (<see cref="EndpointPicker"/>), forward with YARP's <see cref="IHttpForwarder"/> over HBONE, and write one access
/// log line per request. No healthy endpoint: 503; the endpoint cannot be reached: 502 (YARP's answer).
/// </summary>
internal sealed partial class RequestForwarder
{
    private static readonly ForwarderRequestConfig Http11 = new() { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
    private static readonly ForwarderRequestConfig Http2 = new() { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };

    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _invoker;
    private readonly EndpointPicker _picker;
    private readonly WaypointConfig _config;
    private readonly IRouteDecider _routes;
    private readonly ILogger _accessLog;

    public RequestForwarder(IHttpForwarder forwarder, HttpMessageInvoker invoker, EndpointPicker picker, WaypointConfig config,
        IRouteDecider routes, ILogger accessLog)
    {
        _forwarder = forwarder;
        _invoker = invoker;
        _picker = picker;
        _config = config;
        _routes = routes;
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
        try
        {
            var addressed = _picker.State.Snapshot.FindServiceByVip(tunnel.OriginalTarget.Address);
            var decision = _routes.Decide(context, tunnel, addressed);
            var picked = decision is { } d ? _picker.Pick(d.Service, d.Port) : _picker.Pick(tunnel.OriginalTarget);
            if (picked.Destination is null)
            {
                flags = ResponseFlags.NoRoute;
                context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                context.Response.ContentType = "text/plain";
                await context.Response.WriteAsync("no healthy upstream\n", context.RequestAborted).ConfigureAwait(false);
                Log.NoEndpoint(_accessLog, tunnel.OriginalTarget.ToString(), picked.Error ?? "");
                return;
            }
            destination = picked.Destination;
            context.Features.Set(new PickedDestination(destination));
            var config = UpstreamProtocol(destination.Service, decision?.Port ?? tunnel.OriginalTarget.Port);
            var error = await _forwarder.SendAsync(context, "http://" + destination.Authority, _invoker, config, DestinationTransformer.Instance)
                .ConfigureAwait(false);
            flags = error switch
            {
                ForwarderError.None => ResponseFlags.None,
                ForwarderError.Request or ForwarderError.RequestTimedOut => ResponseFlags.Connect,
                ForwarderError.RequestCanceled or ForwarderError.RequestBodyClient or ForwarderError.ResponseBodyClient => ResponseFlags.DownstreamReset,
                _ => ResponseFlags.UpstreamReset,
            };
        }
        finally
        {
            WriteAccessLog(context, tunnel, destination, flags, Stopwatch.GetElapsedTime(started));
        }
    }

    // As Istio: the backend port's declared protocol decides (http -> HTTP/1.1; http2, grpc -> HTTP/2 with prior
    // knowledge), whatever the client spoke to the waypoint.
    private ForwarderRequestConfig UpstreamProtocol(ServiceInfo? service, int port) =>
        service is not null && _config.ProtocolOf(service.Namespace, service.Hostname, port) is PortAppProtocol.Http2 or PortAppProtocol.Grpc
            ? Http2
            : Http11;

    private void WriteAccessLog(HttpContext context, IHboneTunnelFeature tunnel, ResolvedDestination? destination, string flags, TimeSpan duration)
    {
        if (!_accessLog.IsEnabled(LogLevel.Information))
        {
            return;
        }
        var request = context.Request;
        Log.Request(_accessLog,
            tunnel.Connection.Source.ToString(), tunnel.PeerIdentity,
            destination?.Service?.Hostname ?? AccessLogEntry.Unknown,
            destination?.Target.ToString() ?? AccessLogEntry.Unknown,
            destination?.Workload?.Name ?? AccessLogEntry.Unknown,
            destination?.ExpectedIdentity ?? AccessLogEntry.Unknown,
            LogText.Clip(request.Method, 16), LogText.Clip(request.Host.Value, 100), LogText.Clip(request.Path.Value + request.QueryString.Value, 200),
            request.Protocol, context.Response.StatusCode, (long)duration.TotalMilliseconds, flags);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3, EventName = "WaypointAccess", Level = LogLevel.Information, Message =
            "access src.addr={SrcAddr} src.identity={SrcIdentity} dst.service={DstService} dst.addr={DstAddr} " +
            "dst.workload={DstWorkload} dst.identity={DstIdentity} method={Method} authority={Authority} path={Path} " +
            "protocol={Protocol} status={Status} duration={DurationMs}ms flags={Flags} direction=waypoint")]
        public static partial void Request(ILogger logger, string srcAddr, string srcIdentity, string dstService, string dstAddr,
            string dstWorkload, string dstIdentity, string method, string authority, string path, string protocol, int status,
            long durationMs, string flags);

        [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "waypoint: no healthy endpoint for {Target}: {Error}")]
        public static partial void NoEndpoint(ILogger logger, string target, string error);
    }
}
