using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Model;

/// <summary>Maps a Kubernetes Service port's <c>appProtocol</c> to the workload API enum.</summary>
internal static class AppProtocols
{
    public static AppProtocol Parse(string? appProtocol)
    {
        if (string.IsNullOrEmpty(appProtocol))
        {
            return AppProtocol.Unknown;
        }
        // Kubernetes treats appProtocol case-insensitively for the unprefixed names; "kubernetes.io/h2c" is the
        // standard name for cleartext HTTP/2.
        if (Is(appProtocol, "http")) return AppProtocol.Http11;
        if (Is(appProtocol, "http2") || Is(appProtocol, "h2c") || Is(appProtocol, "kubernetes.io/h2c")) return AppProtocol.Http2;
        if (Is(appProtocol, "grpc")) return AppProtocol.Grpc;
        if (Is(appProtocol, "tcp")) return AppProtocol.Tcp;
        if (Is(appProtocol, "tls")) return AppProtocol.Tls;
        return AppProtocol.Unknown;
    }

    private static bool Is(string value, string name) => string.Equals(value, name, StringComparison.OrdinalIgnoreCase);
}
