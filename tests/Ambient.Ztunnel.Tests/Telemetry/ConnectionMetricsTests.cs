using System.Text;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Ztunnel.Telemetry;

namespace Ambient.Ztunnel.Tests.Telemetry;

public sealed class ConnectionMetricsTests
{
    [Fact]
    public void TcpMetricsCarryIstiosFullLabelSet()
    {
        static WorkloadInfo Pod(string name, string sa, string canonical) =>
            new(WorkloadInfo.PodUid("Kubernetes", "shop", name), "shop", "cluster.local", sa)
            {
                Name = name, WorkloadName = name, CanonicalName = canonical, ClusterId = "Kubernetes",
            };
        var metrics = new ConnectionMetrics();
        metrics.Open(IstioMetricLabels.ReporterSource, Pod("sleep-1", "sleep", "sleep"), null, Pod("echo-1", "echo", "echo"),
            new ServiceInfo("echo", "shop", "echo.shop.svc.cluster.local"), "-", mutualTls: true).ConnectionClosed(5, 7);
        var sb = new StringBuilder();
        metrics.WritePrometheus(sb);
        var line = sb.ToString().Split('\n').Single(l => l.StartsWith("istio_tcp_sent_bytes_total{", StringComparison.Ordinal));
        Assert.Equal(
            "istio_tcp_sent_bytes_total{reporter=\"source\",source_workload=\"sleep-1\",source_canonical_service=\"sleep\"," +
            "source_canonical_revision=\"latest\",source_workload_namespace=\"shop\",source_principal=\"spiffe://cluster.local/ns/shop/sa/sleep\"," +
            "source_app=\"sleep\",source_version=\"latest\",source_cluster=\"Kubernetes\",destination_service=\"echo.shop.svc.cluster.local\"," +
            "destination_service_namespace=\"shop\",destination_service_name=\"echo\",destination_workload=\"echo-1\"," +
            "destination_canonical_service=\"echo\",destination_canonical_revision=\"latest\",destination_workload_namespace=\"shop\"," +
            "destination_principal=\"spiffe://cluster.local/ns/shop/sa/echo\",destination_app=\"echo\",destination_version=\"latest\"," +
            "destination_cluster=\"Kubernetes\",request_protocol=\"tcp\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"} 7", line);
    }
}
