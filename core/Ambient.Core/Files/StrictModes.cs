using System.Runtime.InteropServices;

namespace Ambient.Core.Files;

/// <summary>A secret, or the folder holding secrets, could have been planted or read by another user.</summary>
internal sealed class InsecureFileException(string message) : IOException(message);

/// <summary>
/// ssh's StrictModes for the mesh's secrets: before a CA key, a node token or the folder holding them is trusted,
/// it must belong to the user running us, a folder must not be writable by group or others (they could plant a
/// root of their own), and a secret file must not be readable or writable by group or others. Every refusal
/// names the path and the fix. Only the mode and owner are read (statx(2) on Linux), so this stays trim-clean for
/// the native ztunnel; on Windows there is nothing to check.
/// </summary>
internal static partial class StrictModes
{
    private const UnixFileMode GroupOrOtherWrite = UnixFileMode.GroupWrite | UnixFileMode.OtherWrite;
    private const UnixFileMode GroupOrOtherAny = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Throws <see cref="InsecureFileException"/> unless <paramref name="folder"/> is ours and writable only by us.</summary>
    public static void CheckFolder(string folder, string what)
    {
        if (OperatingSystem.IsWindows() || !Directory.Exists(folder))
        {
            return;
        }
        CheckOwner(folder, what, $"remove it (or choose another folder) and let it be created again; do not reuse a {what} another user made");
        var mode = File.GetUnixFileMode(folder);
        if ((mode & GroupOrOtherWrite) != 0)
        {
            throw new InsecureFileException(
                $"{what} '{folder}' is writable by group or others (mode {Octal(mode)}): another user could plant a CA root or tokens there. " +
                $"Fix: chmod go-w '{folder}' if you made it, else remove it");
        }
    }

    /// <summary>Throws <see cref="InsecureFileException"/> unless <paramref name="file"/> is ours and neither readable nor writable by group or others.</summary>
    public static void CheckSecretFile(string file, string what)
    {
        if (OperatingSystem.IsWindows() || !File.Exists(file))
        {
            return;
        }
        CheckOwner(file, what, $"remove it so a new one is made, or chown it to yourself if it really is yours");
        var mode = File.GetUnixFileMode(file);
        if ((mode & GroupOrOtherAny) != 0)
        {
            throw new InsecureFileException(
                $"{what} '{file}' is accessible by group or others (mode {Octal(mode)}); it must be private to its owner. Fix: chmod 600 '{file}'");
        }
    }

    private static void CheckOwner(string path, string what, string fix)
    {
        if (!TryGetOwner(path, out var owner) || !TryGetEffectiveUser(out var me) || owner == me)
        {
            return;
        }
        throw new InsecureFileException($"{what} '{path}' is owned by uid {owner}, not by this user (uid {me}), so it cannot be trusted. Fix: {fix}");
    }

    private static string Octal(UnixFileMode mode) => "0" + Convert.ToString((int)mode & 0xFFF, 8).PadLeft(3, '0');

    // struct statx has the same layout on every Linux architecture: stx_uid is the u32 at offset 20.
    private const int AtFdCwd = -100;
    private const uint StatxUid = 0x0008;
    private const int StatxSize = 256;
    private const int StatxUidOffset = 20;

    private static bool TryGetOwner(string path, out uint uid)
    {
        uid = 0;
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        Span<byte> buffer = stackalloc byte[StatxSize];
        try
        {
            if (Statx(AtFdCwd, path, 0, StatxUid, ref MemoryMarshal.GetReference(buffer)) != 0)
            {
                return false;
            }
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // a libc without statx (before glibc 2.28): the mode checks still apply
        }
        uid = MemoryMarshal.Read<uint>(buffer[StatxUidOffset..]);
        return true;
    }

    private static bool TryGetEffectiveUser(out uint uid)
    {
        try
        {
            uid = GetEffectiveUserId();
            return true;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            uid = 0;
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, ref byte buffer);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUserId();
}
