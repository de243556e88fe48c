using System.Globalization;
using System.Runtime.InteropServices;

namespace Ambient.LoadGen.Measure;

/// <summary>CPU time and memory of the proxies under test, from /proc (Linux only).</summary>
internal static partial class ProcessStats
{
    private static readonly long ClockTicks = OperatingSystem.IsLinux() ? Math.Max(1, Sysconf(ScClkTck)) : 100;

    /// <summary>utime + stime of <paramref name="pid"/> in seconds (fields 14 and 15 of /proc/PID/stat).</summary>
    public static double CpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        // The command name (field 2) may hold spaces and parentheses: fields are counted after the LAST ')'.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var utime = long.Parse(fields[11], CultureInfo.InvariantCulture);
        var stime = long.Parse(fields[12], CultureInfo.InvariantCulture);
        return (double)(utime + stime) / ClockTicks;
    }

    /// <summary>A "VmXXX:  N kB" line of /proc/PID/status, in MiB.</summary>
    public static double StatusMiB(int pid, string field)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
            {
                var kb = long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
                return kb / 1024.0;
            }
        }
        throw new IOException($"/proc/{pid}/status has no {field}");
    }

    public static double TotalCpu(IReadOnlyList<int> pids)
    {
        double sum = 0;
        foreach (var p in pids)
        {
            sum += CpuSeconds(p);
        }
        return sum;
    }

    private const int ScClkTck = 2;

    [LibraryImport("libc", EntryPoint = "sysconf")]
    private static partial long Sysconf(int name);
}
