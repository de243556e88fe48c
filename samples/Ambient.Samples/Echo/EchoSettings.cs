using System.Globalization;
using System.Net;

namespace Ambient.Samples.Echo;

/// <summary>What the echo pod knows about itself, from the environment ambientctl sets for every pod.</summary>
internal sealed record EchoSettings(IPAddress Address, int Port, string Pod, string Namespace, string ServiceAccount, string? Version)
{
    public static EchoSettings? FromEnvironment(Func<string, string?> env, out string? error)
    {
        var ipText = env("POD_IP") ?? "127.0.0.1";
        if (!IPAddress.TryParse(ipText, out var ip))
        {
            error = $"POD_IP '{ipText}' is not an IP address";
            return null;
        }
        var portText = env("PORT") ?? "8080";
        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            error = $"PORT '{portText}' is not a port (1-65535)";
            return null;
        }
        error = null;
        return new EchoSettings(ip, port, env("POD_NAME") ?? Environment.MachineName, env("POD_NAMESPACE") ?? "default",
            env("SERVICE_ACCOUNT") ?? "default", env("VERSION"));
    }
}
