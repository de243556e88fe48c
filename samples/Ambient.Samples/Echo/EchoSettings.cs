using System.Globalization;
using System.Net;

namespace Ambient.Samples.Echo;

/// <summary>
/// What the echo pod knows about itself, from the environment ambientctl sets for every pod (the downward API, by
/// convention): POD_IP, PORTS (every containerPort, comma-separated; PORT, the first, when PORTS is absent), POD_NAME,
/// NAMESPACE or POD_NAMESPACE, SERVICE_NAME or else POD_LABEL_APP (the pod's <c>app</c> label), SERVICE_ACCOUNT, VERSION.
/// NAMESPACE and SERVICE_NAME are the names the Gateway API conformance echo server reads.
/// </summary>
internal sealed record EchoSettings(
    IPAddress Address,
    IReadOnlyList<int> Ports,
    string Pod,
    string Namespace,
    string Service,
    string ServiceAccount,
    string? Version)
{
    public const int DefaultPort = 8080;

    public static EchoSettings? FromEnvironment(Func<string, string?> env, out string? error)
    {
        var ipText = env("POD_IP") ?? "127.0.0.1";
        if (!IPAddress.TryParse(ipText, out var ip))
        {
            error = $"POD_IP '{ipText}' is not an IP address";
            return null;
        }
        var (portsName, portsText) = env("PORTS") is { Length: > 0 } list ? ("PORTS", list)
            : ("PORT", env("PORT") ?? DefaultPort.ToString(CultureInfo.InvariantCulture));
        var ports = new List<int>();
        foreach (var part in portsText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                error = $"{portsName} '{portsText}': '{part}' is not a port (1-65535)";
                return null;
            }
            if (!ports.Contains(port)) ports.Add(port);
        }
        if (ports.Count == 0)
        {
            error = $"{portsName} '{portsText}' names no port";
            return null;
        }
        error = null;
        return new EchoSettings(ip, ports, env("POD_NAME") ?? Environment.MachineName,
            NonEmpty(env("NAMESPACE")) ?? NonEmpty(env("POD_NAMESPACE")) ?? "default",
            NonEmpty(env("SERVICE_NAME")) ?? NonEmpty(env("POD_LABEL_APP")) ?? "",
            env("SERVICE_ACCOUNT") ?? "default", env("VERSION"));
    }

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}
