using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Core.Files;

/// <summary>
/// Where a path really leads once every symbolic link on it is followed, to keep reads inside a folder. On Linux
/// the path of an already opened file comes from the kernel (<c>/proc/self/fd</c>), so a link swapped between the
/// check and the open cannot redirect the read.
/// </summary>
internal static partial class RealPath
{
    /// <summary>realpath(3) of <paramref name="path"/>; null when it cannot be resolved (missing, a loop, no libc).</summary>
    public static string? Resolve(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (OperatingSystem.IsWindows())
        {
            return ResolveManaged(path);
        }
        try
        {
            var resolved = NativeRealPath(path, 0);
            if (resolved == 0)
            {
                return null;
            }
            try
            {
                return Marshal.PtrToStringUTF8(resolved);
            }
            finally
            {
                Free(resolved);
            }
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return ResolveManaged(path);
        }
    }

    /// <summary>The real path of the file <paramref name="handle"/> was opened on (Linux); otherwise that of <paramref name="openedPath"/>.</summary>
    public static string? OfOpenFile(SafeFileHandle handle, string openedPath)
    {
        ArgumentNullException.ThrowIfNull(handle);
        if (OperatingSystem.IsLinux())
        {
            var fd = handle.DangerousGetHandle().ToInt64();
            try
            {
                if (new FileInfo($"/proc/self/fd/{fd}").LinkTarget is { } target && target.StartsWith('/'))
                {
                    return target;
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // /proc not mounted (some sandboxes): fall back to resolving the name.
            }
        }
        return Resolve(openedPath);
    }

    /// <summary>True when <paramref name="path"/> is <paramref name="folder"/> or inside it (both already real paths).</summary>
    public static bool IsInside(string path, string folder)
    {
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var root = Path.TrimEndingDirectorySeparator(folder);
        return path.Equals(root, comparison)
            || (path.StartsWith(root, comparison) && path.Length > root.Length && path[root.Length] == Path.DirectorySeparatorChar)
            || root == Path.DirectorySeparatorChar.ToString();
    }

    // Best effort where realpath(3) is missing: follows links on the final component only.
    private static string? ResolveManaged(string path)
    {
        try
        {
            var full = Path.GetFullPath(path);
            var target = File.ResolveLinkTarget(full, returnFinalTarget: true);
            return target is null ? full : Path.GetFullPath(target.FullName);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint NativeRealPath(string path, nint resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void Free(nint pointer);
}
