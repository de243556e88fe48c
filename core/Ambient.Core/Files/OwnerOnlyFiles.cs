namespace Ambient.Core.Files;

/// <summary>
/// Folders (0700) and files (0600) only their owner can read: secrets, and logs that may quote them. The mode is
/// set at creation, so there is no moment when another user could open the file; one left more open by an older
/// run is tightened (we own it, so we may).
/// </summary>
internal static class OwnerOnlyFiles
{
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    public const UnixFileMode FolderMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Creates <paramref name="path"/> (and missing parents) with mode 0700, or takes group/other bits off an existing one.</summary>
    public static void CreateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
            return;
        }
        // Each missing level is made 0700 itself (and the umask can only remove bits), so a missing state folder
        // above a logs folder never appears group-writable under a permissive umask such as 002.
        var missing = new Stack<string>();
        for (var level = Path.GetFullPath(path); !Directory.Exists(level); level = Path.GetDirectoryName(level)!)
        {
            missing.Push(level);
        }
        while (missing.TryPop(out var level))
        {
            Directory.CreateDirectory(level, FolderMode);
        }
        Tighten(path, File.GetUnixFileMode(path));
    }

    /// <summary>Opens <paramref name="path"/> for appending (shared for reading), created 0600, its folder 0700.</summary>
    public static FileStream OpenAppend(string path)
    {
        CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var options = new FileStreamOptions { Mode = System.IO.FileMode.Append, Access = FileAccess.Write, Share = FileShare.ReadWrite };
        if (OperatingSystem.IsWindows())
        {
            return new FileStream(path, options);
        }
        options.UnixCreateMode = FileMode;
        var stream = new FileStream(path, options);
        Tighten(path, File.GetUnixFileMode(stream.SafeFileHandle));
        return stream;
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static void Tighten(string path, UnixFileMode mode)
    {
        if ((mode & GroupOrOther) != 0)
        {
            File.SetUnixFileMode(path, mode & ~GroupOrOther);
        }
    }
}
