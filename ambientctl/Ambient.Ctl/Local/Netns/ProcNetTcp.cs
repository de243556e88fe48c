using System.Globalization;

namespace Ambient.Ctl.Local.Netns;

/// <summary>Reads /proc/PID/net/tcp[6]: the TCP sockets of the network namespace that process is in.</summary>
internal static class ProcNetTcp
{
    // st column: 0A is TCP_LISTEN.
    private const string Listen = "0A";

    /// <summary>Whether any socket of that namespace is in LISTEN on <paramref name="port"/> (any address); false when unreadable.</summary>
    public static bool Listens(string path, int port)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        return Listens(lines, port);
    }

    /// <summary>The lines of the file, header first: `sl local_address rem_address st ...`, addresses as HEX:PORT.</summary>
    internal static bool Listens(IReadOnlyList<string> lines, int port)
    {
        for (var i = 1; i < lines.Count; i++)
        {
            var fields = lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 4 || fields[3] != Listen) continue;
            var colon = fields[1].LastIndexOf(':');
            if (colon > 0 && int.TryParse(fields[1].AsSpan(colon + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var local) && local == port)
            {
                return true;
            }
        }
        return false;
    }
}
