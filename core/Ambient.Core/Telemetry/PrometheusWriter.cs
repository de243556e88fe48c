using System.Text;

namespace Ambient.Core.Telemetry;

/// <summary>Prometheus text exposition format (0.0.4): the lines every metric family starts with.</summary>
internal static class PrometheusWriter
{
    /// <summary>Writes a family's <c># HELP</c> and <c># TYPE</c> lines; its samples follow.</summary>
    public static StringBuilder Family(StringBuilder sb, string name, string type, string help) =>
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n')
            .Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
}
