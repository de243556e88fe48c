using System.Collections.Immutable;
using System.Text;
using Ambient.Core.Identity;
using Ambient.Core.Model;

namespace Ambient.Core.Telemetry;

/// <summary>
/// Istio's canonical service of a pod, derived from its labels exactly as Istio derives it: its own
/// <c>service.istio.io/canonical-*</c> labels first, then the Kubernetes recommended <c>app.kubernetes.io/*</c>
/// ones, then the legacy <c>app</c>/<c>version</c>; the workload name and <c>latest</c> when none is set.
/// The metrics' <c>*_app</c>/<c>*_version</c> labels are these values, as Istio's ztunnel and waypoints report them.
/// </summary>
internal static class CanonicalService
{
    public static string Name(ImmutableSortedDictionary<string, string> podLabels, string workloadName) =>
        Label(podLabels, MeshLabels.CanonicalName) ?? Label(podLabels, MeshLabels.AppKubernetesName) ?? Label(podLabels, MeshLabels.App) ?? workloadName;

    public static string Revision(ImmutableSortedDictionary<string, string> podLabels) =>
        Label(podLabels, MeshLabels.CanonicalRevision) ?? Label(podLabels, MeshLabels.AppKubernetesVersion)
        ?? Label(podLabels, MeshLabels.Version) ?? MeshLabels.DefaultRevision;

    private static string? Label(ImmutableSortedDictionary<string, string> labels, string key) =>
        labels.TryGetValue(key, out var value) ? value : null;
}

/// <summary>
/// The label set of Istio's standard metrics (istio_tcp_* and istio_requests_total / istio_request_* alike), named
/// and derived as Istio's ztunnel and waypoints do, so existing dashboards work. One builder (<see cref="For"/>) for
/// every reporter; a record so equal label sets share one row.
/// <see cref="ResponseCode"/> is null for TCP metrics, which carry no <c>response_code</c> label.
/// </summary>
internal sealed record IstioMetricLabels(
    string Reporter,
    string SourceWorkload,
    string SourceWorkloadNamespace,
    string SourcePrincipal,
    string SourceApp,
    string SourceVersion,
    string SourceCanonicalService,
    string SourceCanonicalRevision,
    string SourceCluster,
    string DestinationService,
    string DestinationServiceName,
    string DestinationServiceNamespace,
    string DestinationWorkload,
    string DestinationWorkloadNamespace,
    string DestinationPrincipal,
    string DestinationApp,
    string DestinationVersion,
    string DestinationCanonicalService,
    string DestinationCanonicalRevision,
    string DestinationCluster,
    string RequestProtocol,
    string? ResponseCode,
    string ResponseFlags,
    string ConnectionSecurityPolicy)
{
    public const string ReporterSource = "source";
    public const string ReporterDestination = "destination";
    public const string ReporterWaypoint = "waypoint";
    public const string Unknown = "unknown";
    public const string MutualTls = "mutual_tls";
    public const string Tcp = "tcp";
    public const string Http = "http";
    public const string Grpc = "grpc";

    /// <summary>
    /// The labels of one connection or request. Workload labels come from the workloads at both ends (app and
    /// version are the canonical name and revision, as Istio's ztunnel reports them); <paramref name="sourcePrincipal"/>
    /// is the authenticated peer's identity when there is one (the most trustworthy source), else the source
    /// workload's identity under mutual TLS. Anything not known is <c>unknown</c>, as in Istio.
    /// </summary>
    public static IstioMetricLabels For(string reporter, WorkloadInfo? source, string? sourcePrincipal, WorkloadInfo? destination,
        ServiceInfo? service, string requestProtocol, string? responseCode, string responseFlags, bool mutualTls) =>
        new(
            reporter,
            source?.WorkloadName ?? Unknown,
            source?.Namespace ?? NamespaceOf(sourcePrincipal) ?? Unknown,
            sourcePrincipal ?? (source is not null && mutualTls ? source.Identity : Unknown),
            source?.CanonicalName ?? Unknown,
            source?.CanonicalRevision ?? Unknown,
            source?.CanonicalName ?? Unknown,
            source?.CanonicalRevision ?? Unknown,
            NonEmpty(source?.ClusterId),
            service?.Hostname ?? Unknown,
            service?.Name ?? Unknown,
            service?.Namespace ?? Unknown,
            destination?.WorkloadName ?? Unknown,
            destination?.Namespace ?? Unknown,
            destination is not null && mutualTls ? destination.Identity : Unknown,
            destination?.CanonicalName ?? Unknown,
            destination?.CanonicalRevision ?? Unknown,
            destination?.CanonicalName ?? Unknown,
            destination?.CanonicalRevision ?? Unknown,
            NonEmpty(destination?.ClusterId),
            requestProtocol,
            responseCode,
            responseFlags,
            mutualTls ? MutualTls : Unknown);

    /// <summary>Writes the labels inside a sample's braces, in the order Istio's ztunnel writes them.</summary>
    internal void Write(StringBuilder sb)
    {
        Label(sb, "reporter", Reporter, first: true);
        Label(sb, "source_workload", SourceWorkload);
        Label(sb, "source_canonical_service", SourceCanonicalService);
        Label(sb, "source_canonical_revision", SourceCanonicalRevision);
        Label(sb, "source_workload_namespace", SourceWorkloadNamespace);
        Label(sb, "source_principal", SourcePrincipal);
        Label(sb, "source_app", SourceApp);
        Label(sb, "source_version", SourceVersion);
        Label(sb, "source_cluster", SourceCluster);
        Label(sb, "destination_service", DestinationService);
        Label(sb, "destination_service_namespace", DestinationServiceNamespace);
        Label(sb, "destination_service_name", DestinationServiceName);
        Label(sb, "destination_workload", DestinationWorkload);
        Label(sb, "destination_canonical_service", DestinationCanonicalService);
        Label(sb, "destination_canonical_revision", DestinationCanonicalRevision);
        Label(sb, "destination_workload_namespace", DestinationWorkloadNamespace);
        Label(sb, "destination_principal", DestinationPrincipal);
        Label(sb, "destination_app", DestinationApp);
        Label(sb, "destination_version", DestinationVersion);
        Label(sb, "destination_cluster", DestinationCluster);
        Label(sb, "request_protocol", RequestProtocol);
        if (ResponseCode is not null)
        {
            Label(sb, "response_code", ResponseCode);
        }
        Label(sb, "response_flags", ResponseFlags);
        Label(sb, "connection_security_policy", ConnectionSecurityPolicy);
    }

    /// <summary>The label set as Prometheus text (what goes between the braces); built once per row, not per sample.</summary>
    public string ToPrometheus()
    {
        var sb = new StringBuilder(1024);
        Write(sb);
        return sb.ToString();
    }

    private static void Label(StringBuilder sb, string name, string value, bool first = false)
    {
        if (!first)
        {
            sb.Append(',');
        }
        sb.Append(name).Append("=\"").Append(Escape(value)).Append('"');
    }

    // Prometheus text format: backslash, double quote and newline are escaped inside label values.
    private static string Escape(string value) =>
        value.AsSpan().IndexOfAny('\\', '"', '\n') < 0 ? value : value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

    private static string NonEmpty(string? value) => string.IsNullOrEmpty(value) ? Unknown : value;

    private static string? NamespaceOf(string? principal) =>
        principal is not null && SpiffeId.TryParse(principal, out var id) ? id.Namespace : null;
}
