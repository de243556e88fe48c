using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Dataplane.State;
using Ambient.Waypoint.Authz;
using Ambient.Waypoint.Forwarding;
using Ambient.Waypoint.Inbound;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace Ambient.Waypoint.Telemetry;

/// <summary>
/// Istio's request metrics as a waypoint reports them (reporter="waypoint"): wraps the request handler and records
/// each request once it is answered. The source is the tunnel's authenticated peer (<c>source_principal</c> = the
/// client's SPIFFE id) and its workload when the snapshot knows it; the destination is the backend the forwarder
/// picked (<see cref="ForwardedRequest.Destination"/>) and its Service, else the Service the client addressed. Response flags
/// follow Envoy's: RBAC denied by an AuthorizationPolicy, UH no healthy upstream, NR no route, UF connect failure, UT upstream timeout, UC upstream reset,
/// DC downstream reset.
/// Hot path: the row is looked up by the (source, destination, code, flags) objects themselves; label text is built
/// once per distinct row, never per request.
/// </summary>
internal sealed class WaypointRequestMetrics
{
    // Snapshots replace workload objects, so keys of old snapshots go stale; past this many the cache starts over
    // (the rows themselves live on in RequestMetrics, keyed by label values).
    private const int MaxCachedKeys = 4096;

    private static readonly string[] StatusCodeText = BuildStatusCodeText();

    private readonly ProxyState _state;
    private readonly RequestMetrics _metrics = new();
    private readonly ConcurrentDictionary<RowKey, RequestRow> _rows = new();

    public WaypointRequestMetrics(ProxyState state) => _state = state;

    /// <summary>Runs <paramref name="handler"/> for one proxied request and records it.</summary>
    public async Task MeasureAsync(HttpContext context, Func<HttpContext, Task> handler)
    {
        var started = Stopwatch.GetTimestamp();
        // The bytes that cross each body, whatever its framing (chunked bodies declare no length).
        var requestBody = new CountingStream(context.Request.Body);
        var responseBody = new CountingStream(context.Response.Body);
        context.Request.Body = requestBody;
        context.Response.Body = responseBody;
        try
        {
            await handler(context).ConfigureAwait(false);
        }
        finally
        {
            Record(context, Stopwatch.GetElapsedTime(started), requestBody.Count, responseBody.Count);
        }
    }

    public void WritePrometheus(StringBuilder sb) => _metrics.WritePrometheus(sb);

    private void Record(HttpContext context, TimeSpan duration, long requestBytes, long responseBytes)
    {
        if (context.Features.Get<IHboneTunnelFeature>() is not { } tunnel)
        {
            return;
        }
        var snapshot = _state.Snapshot;
        var picked = context.Features.Get<ForwardedRequest>()?.Destination;
        var status = context.Response.StatusCode;
        var key = new RowKey(
            InboundSource.Find(snapshot, tunnel.Connection),
            tunnel.PeerIdentity,
            picked?.Workload,
            picked?.Service ?? snapshot.FindServiceByVip(tunnel.OriginalTarget.Address),
            IsGrpc(context.Request.ContentType) ? IstioMetricLabels.Grpc : IstioMetricLabels.Http,
            status,
            Flags(context, picked is not null, status));
        if (!_rows.TryGetValue(key, out var row))
        {
            if (_rows.Count >= MaxCachedKeys)
            {
                _rows.Clear();
            }
            row = _rows.GetOrAdd(key, static (k, metrics) => metrics.For(k.ToLabels()), _metrics);
        }
        row.Record(duration.TotalMilliseconds, requestBytes, responseBytes);
    }

    private static string Flags(HttpContext context, bool picked, int status)
    {
        if (!picked)
        {
            if (context.Features.Get<AuthorizationDenial>() is not null)
            {
                return WaypointAuthorization.ResponseFlag;
            }
            // Answered by the waypoint itself: no endpoint for the backend (503), no route (404), or a filter's answer.
            return status switch
            {
                StatusCodes.Status503ServiceUnavailable => "UH",
                StatusCodes.Status404NotFound => "NR",
                _ => "-",
            };
        }
        return context.Features.Get<IForwarderErrorFeature>()?.Error switch
        {
            null or ForwarderError.None => "-",
            ForwarderError.Request => "UF",
            ForwarderError.RequestTimedOut => "UT",
            ForwarderError.RequestCanceled or ForwarderError.RequestBodyClient or ForwarderError.ResponseBodyClient
                or ForwarderError.UpgradeRequestClient or ForwarderError.UpgradeResponseClient => "DC",
            _ => "UC",
        };
    }

    private static bool IsGrpc(string? contentType) =>
        contentType is not null && contentType.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase);

    private static string[] BuildStatusCodeText()
    {
        var text = new string[600];
        for (var i = 0; i < text.Length; i++)
        {
            text[i] = i.ToString(CultureInfo.InvariantCulture);
        }
        return text;
    }

    /// <summary>What a row depends on, compared by reference for the snapshot's objects (cheap to hash and compare).</summary>
    private readonly record struct RowKey(WorkloadInfo? Source, string Principal, WorkloadInfo? Destination, ServiceInfo? Service,
        string Protocol, int Status, string Flags)
    {
        public bool Equals(RowKey other) =>
            ReferenceEquals(Source, other.Source) && ReferenceEquals(Destination, other.Destination) && ReferenceEquals(Service, other.Service)
            && Status == other.Status && ReferenceEquals(Protocol, other.Protocol) && ReferenceEquals(Flags, other.Flags)
            && string.Equals(Principal, other.Principal, StringComparison.Ordinal);

        public override int GetHashCode() =>
            HashCode.Combine(Source is null ? 0 : System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(Source),
                Destination is null ? 0 : System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(Destination),
                Service is null ? 0 : System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(Service),
                Status, Flags.Length, Principal);

        public IstioMetricLabels ToLabels() =>
            IstioMetricLabels.For(IstioMetricLabels.ReporterWaypoint, Source, Principal, Destination, Service, Protocol,
                (uint)Status < StatusCodeText.Length ? StatusCodeText[Status] : Status.ToString(CultureInfo.InvariantCulture),
                Flags, mutualTls: true);
    }
}
