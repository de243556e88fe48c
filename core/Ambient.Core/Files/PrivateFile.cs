using System.Text;

namespace Ambient.Core.Files;

/// <summary>
/// Owner-only (0600) files for secrets. The mode is set when the file is created, never afterwards, so there is no
/// window in which another user can open a key; content appears under its final name by rename, so a crash never
/// leaves a half-written key that would look corrupt on the next start.
/// </summary>
internal static class PrivateFile
{
    public const UnixFileMode OwnerReadWrite = OwnerOnlyFiles.FileMode;

    /// <summary>Creates <paramref name="path"/> (mode 0700 on Unix) if missing.</summary>
    public static void EnsureDirectory(string path)
    {
        // An existing folder is left as it is: CaStore and NodeTokens check it (StrictModes) rather than repair it.
        if (!Directory.Exists(path))
        {
            OwnerOnlyFiles.CreateDirectory(path);
        }
    }

    /// <summary>Writes (or atomically replaces) <paramref name="path"/> with mode 0600.</summary>
    public static void Write(string path, string content) => WriteCore(path, content, overwrite: true);

    /// <summary>
    /// Writes <paramref name="path"/> with mode 0600 only if it does not exist yet; returns false (and leaves the
    /// existing file alone) when another writer got there first.
    /// </summary>
    public static bool TryCreate(string path, string content) => WriteCore(path, content, overwrite: false);

    private static bool WriteCore(string path, string content, bool overwrite)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var temp = Path.Combine(directory, "." + Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerReadWrite;
        }
        try
        {
            using (var stream = new FileStream(temp, options))
            {
                stream.Write(Encoding.UTF8.GetBytes(content));
                stream.Flush(flushToDisk: true);
            }
            if (!OperatingSystem.IsWindows())
            {
                // The create mode is filtered by the umask; this only ever removes bits, but make it exact.
                File.SetUnixFileMode(temp, OwnerReadWrite);
            }
            if (overwrite)
            {
                File.Move(temp, path, overwrite: true);
                return true;
            }
            try
            {
                // Without overwrite the move fails if the target exists (link+unlink on Unix): no lost race.
                File.Move(temp, path, overwrite: false);
                return true;
            }
            catch (IOException) when (File.Exists(path))
            {
                return false;
            }
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }
}
