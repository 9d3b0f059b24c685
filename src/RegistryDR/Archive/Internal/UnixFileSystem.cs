using System.Runtime.InteropServices;

namespace RegistryDR.Archive.Internal;

internal enum UnixFileKind
{
    Other,
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// <summary>What <c>statx</c> reports about one path, reduced to what the archive stores.</summary>
internal readonly record struct UnixFileStatus(
    UnixFileKind Kind,
    int Permissions,
    uint UserId,
    uint GroupId,
    long Size,
    long ModifiedSeconds,
    uint ModifiedNanoseconds);

/// <summary>
/// The few POSIX calls the archive needs and .NET does not expose: owner ids, the full st_mode
/// (setuid/setgid/sticky and file type) without following links, lchown, and utimensat.
/// Every failure becomes an <see cref="IOException"/> naming the path and the errno text.
/// </summary>
internal static partial class UnixFileSystem
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxBasicStats = 0x7ff;

    // The statx fields we read; the kernel may leave out any field the filesystem cannot supply.
    private const uint StatxType = 0x1, StatxMode = 0x2, StatxUid = 0x8, StatxGid = 0x10, StatxMtime = 0x40, StatxSize = 0x200;
    private const uint StatxNeeded = StatxType | StatxMode | StatxUid | StatxGid | StatxMtime | StatxSize;

    private const int Enoent = 2;
    private const int Eexist = 17;

    // utimensat's "leave this timestamp alone" marker, so restoring mtime does not invent an atime.
    private const long UtimeOmit = (1L << 30) - 2;

    /// <summary>
    /// <c>struct statx</c> is the same 256 bytes on every Linux architecture, which is why it is
    /// used instead of <c>struct stat</c>, whose layout differs between x86-64 and arm64.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct StatxBuffer
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(112)] public long MtimeSeconds;
        [FieldOffset(120)] public uint MtimeNanoseconds;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        // Both fields are C 'long', which is pointer sized on Linux.
        public nint Seconds;
        public nint Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NativeStatx(int dirFd, string path, int flags, uint mask, out StatxBuffer buffer);

    [LibraryImport("libc", EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NativeLchown(string path, uint owner, uint group);

    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NativeMkdir(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int NativeUtimensat(int dirFd, string path, Timespec* times, int flags);

    /// <summary>Like lstat: a symbolic link is described itself, never its target.</summary>
    public static UnixFileStatus GetStatus(string path) =>
        TryGetStatus(path, followSymlinks: false) ?? throw Failure("stat", path, Enoent);

    /// <summary>Like <see cref="GetStatus"/> but returns null when nothing exists at the path.</summary>
    public static UnixFileStatus? TryGetStatus(string path, bool followSymlinks = false)
    {
        var flags = followSymlinks ? 0 : AtSymlinkNoFollow;
        if (NativeStatx(AtFdCwd, path, flags, StatxBasicStats, out var buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Enoent)
            {
                return null;
            }

            throw Failure("stat", path, errno);
        }

        if ((buffer.Mask & StatxNeeded) != StatxNeeded)
        {
            throw new IOException($"Cannot read the owner, mode, size and mtime of '{path}': the filesystem did not report them (statx mask 0x{buffer.Mask:x}).");
        }

        return new UnixFileStatus(
            KindOf(buffer.Mode),
            buffer.Mode & 0xfff,
            buffer.Uid,
            buffer.Gid,
            (long)buffer.Size,
            buffer.MtimeSeconds,
            buffer.MtimeNanoseconds);
    }

    /// <summary>Changes the owner without following a final symbolic link.</summary>
    public static void SetOwner(string path, uint userId, uint groupId)
    {
        if (NativeLchown(path, userId, groupId) != 0)
        {
            throw Failure("change the owner of", path, Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>
    /// Creates one directory level. Unlike Directory.CreateDirectory, an existing entry (including
    /// a symbolic link to a directory) is an error, never silently reused.
    /// </summary>
    public static void CreateDirectory(string path, int permissions)
    {
        if (NativeMkdir(path, (uint)permissions) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno == Eexist
                ? new IOException($"Cannot create directory '{path}': something already exists there.")
                : Failure("create directory", path, errno);
        }
    }

    /// <summary>Sets all twelve permission bits, setuid/setgid/sticky included; chmod ignores the umask.</summary>
    public static void SetPermissions(string path, int permissions)
    {
        ThrowIfWindows();
        File.SetUnixFileMode(path, (UnixFileMode)(permissions & 0xfff));
    }

    /// <summary>
    /// Creates a new file for writing with O_CREAT|O_EXCL, which fails on any existing name (a
    /// dangling symbolic link included), so the final component is never followed.
    /// </summary>
    public static FileStream CreateNewFile(string path, int permissions)
    {
        ThrowIfWindows();
        return new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
            BufferSize = 0,
            UnixCreateMode = (UnixFileMode)(permissions & 0x1ff),
        });
    }

    /// <summary>Sets mtime (leaving atime alone) without following a final symbolic link.</summary>
    public static unsafe void SetModificationTime(string path, long seconds, uint nanoseconds)
    {
        var times = stackalloc Timespec[2];
        times[0] = new Timespec { Seconds = 0, Nanoseconds = (nint)UtimeOmit };
        times[1] = new Timespec { Seconds = (nint)seconds, Nanoseconds = (nint)nanoseconds };
        if (NativeUtimensat(AtFdCwd, path, times, AtSymlinkNoFollow) != 0)
        {
            throw Failure("set the modification time of", path, Marshal.GetLastPInvokeError());
        }
    }

    private static void ThrowIfWindows()
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("Config archives can only be restored on Linux.");
        }
    }

    private static UnixFileKind KindOf(ushort mode) => (mode & 0xf000) switch
    {
        0x8000 => UnixFileKind.Regular,
        0x4000 => UnixFileKind.Directory,
        0xa000 => UnixFileKind.Symlink,
        0x1000 => UnixFileKind.Fifo,
        0xc000 => UnixFileKind.Socket,
        0x2000 => UnixFileKind.CharDevice,
        0x6000 => UnixFileKind.BlockDevice,
        _ => UnixFileKind.Other,
    };

    private static IOException Failure(string action, string path, int errno) =>
        new($"Cannot {action} '{path}': {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
}
