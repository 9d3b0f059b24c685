using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

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
    uint ModifiedNanoseconds)
{
    /// <summary>The inode number; with <see cref="Device"/> it identifies the file across its hard links.</summary>
    public ulong Inode { get; init; }

    /// <summary>The device the file lives on (major &lt;&lt; 32 | minor).</summary>
    public ulong Device { get; init; }

    /// <summary>How many names (hard links) the file has.</summary>
    public uint LinkCount { get; init; }
}

/// <summary>
/// The POSIX calls the archive needs and .NET does not expose: owner ids, the full st_mode
/// (setuid/setgid/sticky and file type) without following links, inode and link count, lchown,
/// utimensat, hard links and extended attributes. Every path is passed to the kernel as the
/// bytes <see cref="SurrogateEscape"/> says it stands for, so names that are not UTF-8 work
/// (.NET's own file APIs cannot open them). Every failure becomes an <see cref="IOException"/>
/// naming the path and the errno text, unless a method says it returns the errno.
/// </summary>
internal static unsafe partial class UnixFileSystem
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxBasicStats = 0x7ff;

    // The statx fields we read; the kernel may leave out any field the filesystem cannot supply.
    private const uint StatxType = 0x1, StatxMode = 0x2, StatxNlink = 0x4, StatxUid = 0x8, StatxGid = 0x10, StatxMtime = 0x40, StatxIno = 0x100, StatxSize = 0x200;
    private const uint StatxNeeded = StatxType | StatxMode | StatxNlink | StatxUid | StatxGid | StatxMtime | StatxIno | StatxSize;

    // open(2) flags (the generic Linux values, shared by x86-64 and arm64).
    private const int ORdOnly = 0x0, OWrOnly = 0x1, OCreat = 0x40, OExcl = 0x80, ONoCtty = 0x100, ONonBlock = 0x800, ONoFollow = 0x20000, OCloExec = 0x80000;

    /// <summary>errno values the callers react to.</summary>
    public const int Eperm = 1, Enoent = 2, Eacces = 13, Eexist = 17, Exdev = 18, Einval = 22, Enospc = 28, Erange = 34, Enodata = 61, Eopnotsupp = 95, Edquot = 122, E2big = 7;

    // utimensat's "leave this timestamp alone" marker, so restoring mtime does not invent an atime.
    private const long UtimeOmit = (1L << 30) - 2;

    // glibc's struct dirent on 64-bit Linux: d_ino, d_off (8 bytes each), d_reclen (2), d_type (1), then d_name.
    private const int DirentNameOffset = 19;

    /// <summary>
    /// <c>struct statx</c> is the same 256 bytes on every Linux architecture, which is why it is
    /// used instead of <c>struct stat</c>, whose layout differs between x86-64 and arm64.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct StatxBuffer
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(16)] public uint Nlink;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(32)] public ulong Inode;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(112)] public long MtimeSeconds;
        [FieldOffset(120)] public uint MtimeNanoseconds;
        [FieldOffset(136)] public uint DevMajor;
        [FieldOffset(140)] public uint DevMinor;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        // Both fields are C 'long', which is pointer sized on Linux.
        public nint Seconds;
        public nint Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static partial int NativeStatx(int dirFd, byte[] path, int flags, uint mask, out StatxBuffer buffer);

    [LibraryImport("libc", EntryPoint = "lchown", SetLastError = true)]
    private static partial int NativeLchown(byte[] path, uint owner, uint group);

    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true)]
    private static partial int NativeMkdir(byte[] path, uint mode);

    [LibraryImport("libc", EntryPoint = "chmod", SetLastError = true)]
    private static partial int NativeChmod(byte[] path, uint mode);

    [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true)]
    private static partial int NativeUtimensat(int dirFd, byte[] path, Timespec* times, int flags);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true)]
    private static partial int NativeOpen(byte[] path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "symlink", SetLastError = true)]
    private static partial int NativeSymlink(byte[] target, byte[] path);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true)]
    private static partial int NativeLink(byte[] existing, byte[] path);

    [LibraryImport("libc", EntryPoint = "readlink", SetLastError = true)]
    private static partial nint NativeReadlink(byte[] path, byte* buffer, nint size);

    [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true)]
    private static partial int NativeUnlink(byte[] path);

    [LibraryImport("libc", EntryPoint = "rmdir", SetLastError = true)]
    private static partial int NativeRmdir(byte[] path);

    [LibraryImport("libc", EntryPoint = "opendir", SetLastError = true)]
    private static partial nint NativeOpendir(byte[] path);

    [LibraryImport("libc", EntryPoint = "readdir", SetLastError = true)]
    private static partial nint NativeReaddir(nint directory);

    [LibraryImport("libc", EntryPoint = "closedir", SetLastError = true)]
    private static partial int NativeClosedir(nint directory);

    [LibraryImport("libc", EntryPoint = "llistxattr", SetLastError = true)]
    private static partial nint NativeListxattr(byte[] path, byte* list, nint size);

    [LibraryImport("libc", EntryPoint = "lgetxattr", SetLastError = true)]
    private static partial nint NativeGetxattr(byte[] path, byte[] name, byte* value, nint size);

    [LibraryImport("libc", EntryPoint = "lsetxattr", SetLastError = true)]
    private static partial int NativeSetxattr(byte[] path, byte[] name, byte* value, nint size, int flags);

    [LibraryImport("libc", EntryPoint = "lremovexattr", SetLastError = true)]
    private static partial int NativeRemovexattr(byte[] path, byte[] name);

    /// <summary>Like lstat: a symbolic link is described itself, never its target.</summary>
    public static UnixFileStatus GetStatus(string path) =>
        TryGetStatus(path, followSymlinks: false) ?? throw Failure("stat", path, Enoent);

    /// <summary>Like <see cref="GetStatus"/> but returns null when nothing exists at the path.</summary>
    public static UnixFileStatus? TryGetStatus(string path, bool followSymlinks = false)
    {
        var flags = followSymlinks ? 0 : AtSymlinkNoFollow;
        if (NativeStatx(AtFdCwd, Bytes(path), flags, StatxBasicStats, out var buffer) != 0)
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
            throw new IOException($"Cannot read the owner, mode, size, inode and mtime of '{Printable(path)}': the filesystem did not report them (statx mask 0x{buffer.Mask:x}).");
        }

        return new UnixFileStatus(
            KindOf(buffer.Mode),
            buffer.Mode & 0xfff,
            buffer.Uid,
            buffer.Gid,
            (long)buffer.Size,
            buffer.MtimeSeconds,
            buffer.MtimeNanoseconds)
        {
            Inode = buffer.Inode,
            Device = ((ulong)buffer.DevMajor << 32) | buffer.DevMinor,
            LinkCount = buffer.Nlink,
        };
    }

    /// <summary>Changes the owner without following a final symbolic link.</summary>
    public static void SetOwner(string path, uint userId, uint groupId)
    {
        if (NativeLchown(Bytes(path), userId, groupId) != 0)
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
        if (NativeMkdir(Bytes(path), (uint)permissions) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno == Eexist
                ? new IOException($"Cannot create directory '{Printable(path)}': something already exists there.")
                : Failure("create directory", path, errno);
        }
    }

    /// <summary>Sets all twelve permission bits, setuid/setgid/sticky included; chmod ignores the umask.</summary>
    public static void SetPermissions(string path, int permissions)
    {
        if (NativeChmod(Bytes(path), (uint)(permissions & 0xfff)) != 0)
        {
            throw Failure("change the mode of", path, Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>
    /// Creates a new file for writing with O_CREAT|O_EXCL|O_NOFOLLOW, which fails on any existing
    /// name (a dangling symbolic link included), so the final component is never followed.
    /// </summary>
    public static SafeFileHandle CreateNewFile(string path, int permissions) =>
        Open(path, OWrOnly | OCreat | OExcl | ONoFollow | OCloExec, (uint)(permissions & 0x1ff), "create");

    /// <summary>
    /// Opens a file for reading without following a final symbolic link, and without blocking
    /// should the name have been replaced by a FIFO since it was stat'ed.
    /// </summary>
    public static SafeFileHandle OpenRead(string path) =>
        Open(path, ORdOnly | ONoFollow | ONoCtty | ONonBlock | OCloExec, 0, "open");

    /// <summary>The target of a symbolic link, exactly as stored (bytes, decoded with <see cref="SurrogateEscape"/>).</summary>
    public static string ReadLink(string path)
    {
        // A target is at most PATH_MAX - 1 bytes; one more byte tells a full buffer from truncation.
        var buffer = stackalloc byte[4097];
        var length = NativeReadlink(Bytes(path), buffer, 4097);
        if (length < 0)
        {
            throw Failure("read the symbolic link", path, Marshal.GetLastPInvokeError());
        }

        if (length >= 4097)
        {
            throw new IOException($"The symbolic link '{Printable(path)}' has a target longer than Linux allows.");
        }

        return SurrogateEscape.Decode(new ReadOnlySpan<byte>(buffer, (int)length));
    }

    /// <summary>Creates a symbolic link at <paramref name="path"/> holding <paramref name="target"/> as is.</summary>
    public static void CreateSymbolicLink(string path, string target)
    {
        if (NativeSymlink(Bytes(target), Bytes(path)) != 0)
        {
            throw Failure("create the symbolic link", path, Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>
    /// link(2) without following <paramref name="existing"/> if it is a symbolic link. Returns
    /// false for EXDEV (the two names are on different filesystems); throws on anything else.
    /// </summary>
    public static bool TryCreateHardLink(string existing, string path)
    {
        if (NativeLink(Bytes(existing), Bytes(path)) == 0)
        {
            return true;
        }

        var errno = Marshal.GetLastPInvokeError();
        return errno == Exdev ? false : throw Failure($"create the hard link to '{Printable(existing)}' at", path, errno);
    }

    /// <summary>
    /// The names in a directory, without "." and "..", ordered by their bytes (as
    /// <c>LC_ALL=C ls</c> would), each decoded with <see cref="SurrogateEscape"/>.
    /// </summary>
    public static List<string> ReadDirectory(string path)
    {
        var directory = NativeOpendir(Bytes(path));
        if (directory == 0)
        {
            throw Failure("list the directory", path, Marshal.GetLastPInvokeError());
        }

        var names = new List<byte[]>();
        try
        {
            while (true)
            {
                var entry = NativeReaddir(directory);
                if (entry == 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno != 0)
                    {
                        throw Failure("list the directory", path, errno);
                    }

                    break;
                }

                var name = MemoryMarshal.CreateReadOnlySpanFromNullTerminated((byte*)entry + DirentNameOffset);
                if (!name.SequenceEqual("."u8) && !name.SequenceEqual(".."u8))
                {
                    names.Add(name.ToArray());
                }
            }
        }
        finally
        {
            _ = NativeClosedir(directory);
        }

        names.Sort((a, b) => a.AsSpan().SequenceCompareTo(b));
        return names.ConvertAll(n => SurrogateEscape.Decode(n));
    }

    /// <summary>
    /// The extended attribute names of a path (not following a final link), or an empty list when
    /// its filesystem does not support extended attributes at all.
    /// </summary>
    public static List<string> ListExtendedAttributes(string path)
    {
        var bytes = Bytes(path);
        while (true)
        {
            var size = NativeListxattr(bytes, null, 0);
            if (size < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                // ENOENT: the entry vanished since it was stat'ed; reading it will say so.
                return errno is Eopnotsupp or Enoent ? [] : throw Failure("list the extended attributes of", path, errno);
            }

            var buffer = new byte[size];
            fixed (byte* list = buffer)
            {
                var got = NativeListxattr(bytes, list, size);
                if (got < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == Erange)
                    {
                        continue; // An attribute was added in between; ask again.
                    }

                    throw Failure("list the extended attributes of", path, errno);
                }

                // The list is each name followed by a NUL.
                var names = new List<string>();
                var rest = buffer.AsSpan(0, (int)got);
                while (!rest.IsEmpty)
                {
                    var end = rest.IndexOf((byte)0);
                    var name = end < 0 ? rest : rest[..end];
                    if (!name.IsEmpty)
                    {
                        names.Add(SurrogateEscape.Decode(name));
                    }

                    rest = end < 0 ? [] : rest[(end + 1)..];
                }

                return names;
            }
        }
    }

    /// <summary>An extended attribute's value (not following a final link), or null when it is gone.</summary>
    public static byte[]? GetExtendedAttribute(string path, string name)
    {
        var bytes = Bytes(path);
        var nameBytes = Bytes(name);
        while (true)
        {
            var size = NativeGetxattr(bytes, nameBytes, null, 0);
            if (size < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                return errno == Enodata ? null : throw Failure($"read the extended attribute '{Printable(name)}' of", path, errno);
            }

            var buffer = new byte[size];
            fixed (byte* value = buffer)
            {
                var got = NativeGetxattr(bytes, nameBytes, value, size);
                if (got >= 0)
                {
                    return buffer[..(int)got];
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno == Enodata)
                {
                    return null;
                }

                if (errno != Erange)
                {
                    throw Failure($"read the extended attribute '{Printable(name)}' of", path, errno);
                }
            }
        }
    }

    /// <summary>Sets an extended attribute without following a final link; returns 0 or the errno, for the caller to judge.</summary>
    public static int SetExtendedAttribute(string path, string name, ReadOnlySpan<byte> value)
    {
        fixed (byte* data = value)
        {
            return NativeSetxattr(Bytes(path), Bytes(name), data, value.Length, 0) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
    }

    /// <summary>Removes an extended attribute without following a final link; returns 0 or the errno (ENODATA when it was not there).</summary>
    public static int RemoveExtendedAttribute(string path, string name) =>
        NativeRemovexattr(Bytes(path), Bytes(name)) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>
    /// Deletes a path and, for a directory, everything below it, never following a symbolic link.
    /// Unlike Directory.Delete it removes names that are not UTF-8, and read-only directories.
    /// Nothing at the path is not an error.
    /// </summary>
    public static void DeleteTree(string path)
    {
        var status = TryGetStatus(path);
        if (status is null)
        {
            return;
        }

        if (status.Value.Kind != UnixFileKind.Directory)
        {
            if (NativeUnlink(Bytes(path)) != 0 && Marshal.GetLastPInvokeError() is var errno && errno != Enoent)
            {
                throw Failure("delete", path, errno);
            }

            return;
        }

        if ((status.Value.Permissions & 0b111_000_000) != 0b111_000_000)
        {
            SetPermissions(path, status.Value.Permissions | 0b111_000_000);
        }

        foreach (var name in ReadDirectory(path))
        {
            DeleteTree(path + "/" + name);
        }

        if (NativeRmdir(Bytes(path)) != 0 && Marshal.GetLastPInvokeError() is var rmdirErrno && rmdirErrno != Enoent)
        {
            throw Failure("delete the directory", path, rmdirErrno);
        }
    }

    /// <summary>Sets mtime (leaving atime alone) without following a final symbolic link.</summary>
    public static void SetModificationTime(string path, long seconds, uint nanoseconds)
    {
        var times = stackalloc Timespec[2];
        times[0] = new Timespec { Seconds = 0, Nanoseconds = (nint)UtimeOmit };
        times[1] = new Timespec { Seconds = (nint)seconds, Nanoseconds = (nint)nanoseconds };
        if (NativeUtimensat(AtFdCwd, Bytes(path), times, AtSymlinkNoFollow) != 0)
        {
            throw Failure("set the modification time of", path, Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>The errno text, e.g. "Operation not supported (errno 95)".</summary>
    public static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    private static SafeFileHandle Open(string path, int flags, uint mode, string action)
    {
        var fd = NativeOpen(Bytes(path), flags, mode);
        if (fd < 0)
        {
            throw Failure(action, path, Marshal.GetLastPInvokeError());
        }

        return new SafeFileHandle(fd, ownsHandle: true);
    }

    private static byte[] Bytes(string path) => SurrogateEscape.EncodeNullTerminated(path);

    private static string Printable(string path) => UnsafeArchiveException.Printable(path);

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
        new($"Cannot {action} '{Printable(path)}': {Describe(errno)}.") { HResult = errno };
}
