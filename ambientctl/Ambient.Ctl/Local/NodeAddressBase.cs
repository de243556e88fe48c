using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Ambient.Core.Config;
using Ambient.Core.Model;

namespace Ambient.Ctl.Local;

/// <summary>
/// Where the local mesh puts its nodes: 127.0.1.1, 127.0.1.2, ... by default, or from <c>AMBIENT_NODE_ADDRESS_BASE</c>
/// (<c>127.0.N.0</c>: nodes get 127.0.N.1, 127.0.N.2, ...). Node addresses carry the fixed admin, metrics and readiness
/// ports, so a second mesh (a test run, a trial beside the walkthrough's mesh) needs a range of its own; pods and
/// service VIPs already differ by name. Read by every command that plans the mesh, so `local up`, its background
/// supervisor (which inherits the environment), `exec` and `demo` agree.
/// </summary>
internal static class NodeAddressBase
{
    public const string Variable = "AMBIENT_NODE_ADDRESS_BASE";

    /// <summary>The third octet of the first node address; the default when the variable is unset or empty.</summary>
    public static byte FromEnvironment(out ConfigError? error) => Parse(Environment.GetEnvironmentVariable(Variable), out error);

    internal static byte Parse(string? text, out ConfigError? error)
    {
        error = null;
        if (string.IsNullOrEmpty(text)) return LoopbackAddressAllocator.DefaultFirstNodeOctet;
        // 127.0.N.0 only: 127.0.0.x is the control plane's (istiod-lite on 127.0.0.1), 127.1-127.254 the pods' and VIPs'.
        Span<byte> b = stackalloc byte[4];
        if (IPAddress.TryParse(text, out var ip) && ip.AddressFamily == AddressFamily.InterNetwork
            && ip.ToString() == text && ip.TryWriteBytes(b, out _) && b[0] == 127 && b[1] == 0 && b[2] != 0 && b[3] == 0)
        {
            return b[2];
        }
        error = new ConfigError(new SourceLocation("environment", 0), Variable,
            $"'{text}' is not a node address base: write 127.0.N.0 with N from 1 to 255 (nodes then get 127.0.N.1, 127.0.N.2, ...; default 127.0.{LoopbackAddressAllocator.DefaultFirstNodeOctet.ToString(CultureInfo.InvariantCulture)}.0)");
        return LoopbackAddressAllocator.DefaultFirstNodeOctet;
    }
}
