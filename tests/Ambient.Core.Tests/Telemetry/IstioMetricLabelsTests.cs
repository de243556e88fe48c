using System.Collections.Immutable;
using System.Text;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;

namespace Ambient.Core.Tests.Telemetry;

public sealed class IstioMetricLabelsTests
{
    private static ImmutableSortedDictionary<string, string> Labels(params (string Key, string Value)[] labels) =>
        ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, labels.Select(l => KeyValuePair.Create(l.Key, l.Value)));

    [Theory]
    // Istio's order: its own canonical labels, the Kubernetes recommended ones, then app/version; else the workload name and "latest".
    [InlineData("reviews", "v2", "service.istio.io/canonical-name=reviews,service.istio.io/canonical-revision=v2,app.kubernetes.io/name=k,app=a,version=v1")]
    [InlineData("k", "kv", "app.kubernetes.io/name=k,app.kubernetes.io/version=kv,app=a,version=v1")]
    [InlineData("a", "v1", "app=a,version=v1")]
    [InlineData("deploy", "latest", "")]
    [InlineData("a", "latest", "app=a")]
    public void CanonicalServiceComesFromPodLabelsAsIstioDerivesIt(string name, string revision, string podLabels)
    {
        var labels = Labels([.. podLabels.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(l => (l.Split('=')[0], l.Split('=')[1]))]);
        Assert.Equal(name, CanonicalService.Name(labels, "deploy"));
        Assert.Equal(revision, CanonicalService.Revision(labels));
    }

    [Fact]
    public void UnknownEndsAreUnknownAndThePeerIdentityNamesTheSourceNamespace()
    {
        var text = IstioMetricLabels.For(IstioMetricLabels.ReporterWaypoint, source: null, "spiffe://cluster.local/ns/shop/sa/client",
            destination: null, service: null, IstioMetricLabels.Http, "503", "UH", mutualTls: true).ToPrometheus();
        Assert.Equal(
            "reporter=\"waypoint\",source_workload=\"unknown\",source_canonical_service=\"unknown\",source_canonical_revision=\"unknown\"," +
            "source_workload_namespace=\"shop\",source_principal=\"spiffe://cluster.local/ns/shop/sa/client\",source_app=\"unknown\"," +
            "source_version=\"unknown\",source_cluster=\"unknown\",destination_service=\"unknown\",destination_service_namespace=\"unknown\"," +
            "destination_service_name=\"unknown\",destination_workload=\"unknown\",destination_canonical_service=\"unknown\"," +
            "destination_canonical_revision=\"unknown\",destination_workload_namespace=\"unknown\",destination_principal=\"unknown\"," +
            "destination_app=\"unknown\",destination_version=\"unknown\",destination_cluster=\"unknown\",request_protocol=\"http\"," +
            "response_code=\"503\",response_flags=\"UH\",connection_security_policy=\"mutual_tls\"", text);
    }

    [Fact]
    public void KnownWorkloadsAndServiceFillEveryLabel()
    {
        static WorkloadInfo Pod(string name, string sa, string canonical, string revision) =>
            new(WorkloadInfo.PodUid("c1", "shop", name), "shop", "cluster.local", sa)
            {
                Name = name, WorkloadName = name, CanonicalName = canonical, CanonicalRevision = revision, ClusterId = "c1",
            };
        var labels = IstioMetricLabels.For(IstioMetricLabels.ReporterSource, Pod("client-1", "client", "client", "v1"), null,
            Pod("reviews-1", "reviews", "reviews", "v2"), new ServiceInfo("reviews", "shop", "reviews.shop.svc.cluster.local"),
            IstioMetricLabels.Tcp, responseCode: null, "-", mutualTls: true);
        var text = labels.ToPrometheus();
        foreach (var expected in new[]
        {
            "source_workload=\"client-1\"", "source_workload_namespace=\"shop\"", "source_principal=\"spiffe://cluster.local/ns/shop/sa/client\"",
            "source_app=\"client\"", "source_version=\"v1\"", "source_canonical_service=\"client\"", "source_canonical_revision=\"v1\"",
            "source_cluster=\"c1\"", "destination_service=\"reviews.shop.svc.cluster.local\"", "destination_service_name=\"reviews\"",
            "destination_service_namespace=\"shop\"", "destination_workload=\"reviews-1\"", "destination_principal=\"spiffe://cluster.local/ns/shop/sa/reviews\"",
            "destination_app=\"reviews\"", "destination_version=\"v2\"", "destination_canonical_service=\"reviews\"",
            "destination_canonical_revision=\"v2\"", "destination_cluster=\"c1\"", "request_protocol=\"tcp\"",
        })
        {
            Assert.Contains(expected, text);
        }
        // TCP metrics carry no response code.
        Assert.DoesNotContain("response_code", text);
    }

    [Fact]
    public void RequestMetricsWriteACounterAndCumulativeHistograms()
    {
        var metrics = new RequestMetrics();
        var row = metrics.For(IstioMetricLabels.For(IstioMetricLabels.ReporterWaypoint, null, null, null, null, IstioMetricLabels.Http, "200", "-", true));
        row.Record(3, 10, 2000);
        row.Record(70, 0, 0);
        var sb = new StringBuilder();
        metrics.WritePrometheus(sb);
        var text = sb.ToString();
        Assert.Contains("# TYPE istio_requests_total counter", text);
        Assert.Contains("response_code=\"200\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"} 2\n", text);
        Assert.Contains(",le=\"1\"} 0\n", text);
        Assert.Contains(",le=\"5\"} 1\n", text);
        Assert.Contains(",le=\"100\"} 2\n", text);
        Assert.Contains(",le=\"+Inf\"} 2\n", text);
        Assert.Contains("connection_security_policy=\"mutual_tls\"} 73\n", text); // istio_request_duration_milliseconds_sum
    }
}
