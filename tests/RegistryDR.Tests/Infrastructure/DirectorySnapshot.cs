using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// The test oracle for a directory tree: for the root (".") and every path below it, without
/// following links, as lstat/readlink/listxattr report it: the name as bytes (shown escaped when
/// not UTF-8), type, mode with setuid/setgid/sticky, uid:gid, mtime to the nanosecond (symlinks'
/// own too), size and SHA-256 of a file's bytes, a symlink's target as bytes, a device's numbers,
/// which paths share an inode (hard-link groups within the tree), the POSIX ACLs
/// (<c>system.posix_acl_access</c>/<c>_default</c>, decoded) and every other extended attribute.
/// </summary>
/// <remarks>
/// Walks the tree with its own libc calls (opendir/readdir/statx/readlink/llistxattr/lgetxattr),
/// independent of src/ (so it cannot share a bug with the archive it judges) and of .NET's
/// directory enumeration (which cannot represent a name that is not UTF-8). Linux, LP64 glibc
/// (x86-64 and arm64: the dirent layout below). Access and change times are not compared: no
/// restore can set a ctime, and reading a file changes its atime.
/// </remarks>
internal sealed class DirectorySnapshot
{
    private readonly List<Node> _nodes;
    private readonly Dictionary<string, Node> _byKey;

    private DirectorySnapshot(List<Node> nodes)
    {
        _nodes = nodes;
        _byKey = nodes.ToDictionary(n => n.Key, StringComparer.Ordinal);
    }

    /// <summary>Every path, one line each, in byte order of the names: <c>ssl/server.key: type=file mode=0600 …</c>.</summary>
    public IReadOnlyList<string> Entries => _nodes.Select(n => n.ToString()).ToList();

    /// <summary>Relative paths (escaped as in <see cref="Entries"/>), "." for the root.</summary>
    public IReadOnlyList<string> Paths => _nodes.Select(n => n.Display).ToList();

    /// <summary>The attributes of one path (escaped relative path, "." for the root): "type", "mode", "owner", "mtime", …</summary>
    public IReadOnlyDictionary<string, string> this[string path] => _nodes.Single(n => n.Display == path).Attributes;

    /// <summary>Snapshots <paramref name="root"/> and everything below it.</summary>
    public static DirectorySnapshot Take(string root)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture is not (Architecture.X64 or Architecture.Arm64))
            throw new PlatformNotSupportedException("DirectorySnapshot reads glibc's dirent layout of 64-bit Linux (x86-64, arm64).");

        var nodes = new List<Node>();
        Walk(Encoding.UTF8.GetBytes(root), [], nodes);
        nodes.Sort((a, b) => a.RelativePath.AsSpan().SequenceCompareTo(b.RelativePath));

        // Hard links within the tree: every path sharing an inode names the group's first path.
        foreach (var group in nodes.Where(n => n.Inode is not null).GroupBy(n => n.Inode).Where(g => g.Count() > 1))
        {
            var members = group.ToList();
            foreach (var member in members)
                member.Attributes["hard links"] = string.Join(", ", members.Select(m => m.Display));
        }

        return new DirectorySnapshot(nodes);
    }

    /// <summary>This snapshot without the given paths (escaped, relative) and everything below them.</summary>
    public DirectorySnapshot Without(params string[] paths) =>
        new(_nodes.Where(n => !paths.Any(p => n.Display == p || n.Display.StartsWith(p + "/", StringComparison.Ordinal))).ToList());

    /// <summary>
    /// Every difference between this (expected) tree and <paramref name="actual"/>, one line each:
    /// <c>ssl/server.key: mode expected 0600 got 0644</c>, <c>caf\xe9: missing (expected …)</c>.
    /// </summary>
    public IReadOnlyList<string> Differences(DirectorySnapshot actual)
    {
        ArgumentNullException.ThrowIfNull(actual);
        var differences = new List<string>();
        var keys = _nodes.Select(n => n.RelativePath).Concat(actual._nodes.Select(n => n.RelativePath))
            .DistinctBy(Convert.ToBase64String)
            .OrderBy(k => k, ByteOrder.Instance);
        foreach (var key in keys)
        {
            var name = key.Length == 0 ? "." : Escape(key);
            var expected = _byKey.GetValueOrDefault(NodeKey(key));
            var got = actual._byKey.GetValueOrDefault(NodeKey(key));
            if (got is null)
            {
                differences.Add($"{name}: missing (expected {expected!.Describe()})");
            }
            else if (expected is null)
            {
                differences.Add($"{name}: unexpected (got {got.Describe()})");
            }
            else
            {
                foreach (var attribute in expected.Attributes.Keys.Union(got.Attributes.Keys).Order(AttributeOrder.Instance))
                {
                    var e = expected.Attributes.GetValueOrDefault(attribute, "(none)");
                    var a = got.Attributes.GetValueOrDefault(attribute, "(none)");
                    if (!string.Equals(e, a, StringComparison.Ordinal))
                        differences.Add($"{name}: {attribute} expected {e} got {a}");
                }
            }
        }

        return differences;
    }

    /// <summary>The first differences (up to ten, then a count), or null when the trees are equal.</summary>
    public string? FirstDifference(DirectorySnapshot other)
    {
        var differences = Differences(other);
        if (differences.Count == 0) return null;
        const int shown = 10;
        var text = string.Join("\n", differences.Take(shown));
        return differences.Count > shown ? $"{text}\n(and {differences.Count - shown} more differences)" : text;
    }

    public override string ToString() => $"{_nodes.Count} paths";

    private static string NodeKey(byte[] relative) => Convert.ToBase64String(relative);

    private static void Walk(byte[] path, byte[] relative, List<Node> nodes)
    {
        var node = Node.Read(path, relative);
        nodes.Add(node);
        if (node.Attributes["type"] != "directory") return;

        foreach (var name in Libc.ReadDirectory(path))
        {
            var childPath = Join(path, name);
            var childRelative = relative.Length == 0 ? name : Join(relative, name);
            Walk(childPath, childRelative, nodes);
        }
    }

    private static byte[] Join(byte[] parent, byte[] name)
    {
        var joined = new byte[parent.Length + 1 + name.Length];
        parent.CopyTo(joined, 0);
        joined[parent.Length] = (byte)'/';
        name.CopyTo(joined, parent.Length + 1);
        return joined;
    }

    /// <summary>
    /// Bytes as text, injectively: printable ASCII and valid multi-byte UTF-8 as they are, a
    /// backslash as <c>\\</c>, every other byte (control characters, bytes that are not UTF-8) as <c>\xNN</c>.
    /// </summary>
    internal static string Escape(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder();
        var i = 0;
        while (i < bytes.Length)
        {
            var b = bytes[i];
            if (b == (byte)'\\')
            {
                text.Append(@"\\");
                i++;
            }
            else if (b is >= 0x20 and < 0x7f)
            {
                text.Append((char)b);
                i++;
            }
            else if (b >= 0x80 && DatabaseSnapshot.Utf8SequenceLength(bytes, i) is var length and > 1)
            {
                text.Append(Encoding.UTF8.GetString(bytes.Slice(i, length)));
                i += length;
            }
            else
            {
                text.Append(CultureInfo.InvariantCulture, $"\\x{b:x2}");
                i++;
            }
        }

        return text.ToString();
    }

    /// <summary>type, mode, owner, mtime, size, sha256, target, device, hard links, then xattrs by name.</summary>
    private sealed class AttributeOrder : IComparer<string>
    {
        public static readonly AttributeOrder Instance = new();

        private static readonly string[] Known = ["type", "mode", "owner", "mtime", "size", "sha256", "target", "device", "hard links"];

        public int Compare(string? x, string? y)
        {
            static int Rank(string? key) => Array.IndexOf(Known, key) is var i and >= 0 ? i : Known.Length;
            var byRank = Rank(x).CompareTo(Rank(y));
            return byRank != 0 ? byRank : string.CompareOrdinal(x, y);
        }
    }

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }

    private sealed class Node
    {
        public required byte[] RelativePath { get; init; }

        public required SortedDictionary<string, string> Attributes { get; init; }

        /// <summary>(device, inode) of a non-directory, to find hard links.</summary>
        public (ulong Device, ulong Inode)? Inode { get; init; }

        public string Key => NodeKey(RelativePath);

        public string Display => RelativePath.Length == 0 ? "." : Escape(RelativePath);

        public static Node Read(byte[] path, byte[] relative)
        {
            var status = Libc.LStat(path);
            var attributes = new SortedDictionary<string, string>(AttributeOrder.Instance)
            {
                ["type"] = status.Type,
                ["mode"] = Convert.ToString(status.Mode & 0xfff, 8).PadLeft(4, '0'),
                ["owner"] = $"{status.UserId}:{status.GroupId}",
                ["mtime"] = $"{status.MtimeSeconds}.{status.MtimeNanoseconds:D9}",
            };
            switch (status.Type)
            {
                case "file":
                    attributes["size"] = status.Size.ToString(CultureInfo.InvariantCulture);
                    attributes["sha256"] = Libc.Sha256(path);
                    break;
                case "symlink":
                    attributes["target"] = Escape(Libc.ReadLink(path));
                    break;
                case "character device" or "block device":
                    attributes["device"] = $"{status.RdevMajor}:{status.RdevMinor}";
                    break;
            }

            foreach (var (name, value) in Libc.ExtendedAttributes(path))
            {
                attributes[$"xattr {Escape(name)}"] = Escape(name) is "system.posix_acl_access" or "system.posix_acl_default"
                    ? PosixAcl.Decode(value)
                    : ShowValue(value);
            }

            return new Node
            {
                RelativePath = relative,
                Attributes = attributes,
                Inode = status.Type == "directory" ? null : (((ulong)status.DeviceMajor << 32) | status.DeviceMinor, status.Inode),
            };
        }

        public string Describe() => string.Join(" ", Attributes.Select(a => $"{a.Key}={a.Value}"));

        public override string ToString() => $"{Display}: {Describe()}";

        private static string ShowValue(byte[] value) =>
            value.All(b => b is >= 0x20 and < 0x7f) ? "\"" + Escape(value) + "\"" : "0x" + Convert.ToHexStringLower(value);
    }

    /// <summary>The kernel's POSIX ACL xattr format (linux/posix_acl_xattr.h): a version 2 header, then
    /// (tag u16, permissions u16, id u32) entries, little-endian; decoded to getfacl's short text.</summary>
    internal static class PosixAcl
    {
        public static string Decode(byte[] value)
        {
            if (value.Length < 4 || BitConverter.ToUInt32(value, 0) != 2 || (value.Length - 4) % 8 != 0)
                return "(not an ACL) 0x" + Convert.ToHexStringLower(value);
            var entries = new List<string>();
            for (var offset = 4; offset < value.Length; offset += 8)
            {
                var tag = BitConverter.ToUInt16(value, offset);
                var permissions = BitConverter.ToUInt16(value, offset + 2);
                var id = BitConverter.ToUInt32(value, offset + 4);
                var who = tag switch
                {
                    0x01 => "user::",
                    0x02 => $"user:{id}:",
                    0x04 => "group::",
                    0x08 => $"group:{id}:",
                    0x10 => "mask::",
                    0x20 => "other::",
                    _ => $"tag 0x{tag:x}:{id}:",
                };
                var rwx = $"{((permissions & 4) != 0 ? 'r' : '-')}{((permissions & 2) != 0 ? 'w' : '-')}{((permissions & 1) != 0 ? 'x' : '-')}";
                entries.Add(who + rwx);
            }

            return string.Join(",", entries);
        }
    }

    private readonly record struct Status(
        string Type, uint Mode, uint UserId, uint GroupId, ulong Inode, ulong Size,
        long MtimeSeconds, uint MtimeNanoseconds, uint RdevMajor, uint RdevMinor, uint DeviceMajor, uint DeviceMinor);

    /// <summary>The few libc calls the oracle needs, on byte paths (a name need not be UTF-8).</summary>
    private static class Libc
    {
        private const int AtFdCwd = -100;
        private const int AtSymlinkNoFollow = 0x100;
        private const uint StatxBasicStats = 0x7ff;
        private const int ERANGE = 34, ENODATA = 61, ENOTSUP = 95;

        [DllImport("libc", SetLastError = true)]
        private static extern int statx(int dirfd, byte[] path, int flags, uint mask, byte[] buffer);

        [DllImport("libc", SetLastError = true)]
        private static extern IntPtr opendir(byte[] path);

        [DllImport("libc", SetLastError = true)]
        private static extern IntPtr readdir(IntPtr directory);

        [DllImport("libc", SetLastError = true)]
        private static extern int closedir(IntPtr directory);

        [DllImport("libc", SetLastError = true)]
        private static extern nint readlink(byte[] path, byte[] buffer, nint size);

        [DllImport("libc", SetLastError = true)]
        private static extern nint llistxattr(byte[] path, byte[]? list, nint size);

        [DllImport("libc", SetLastError = true)]
        private static extern nint lgetxattr(byte[] path, byte[] name, byte[]? value, nint size);

        [DllImport("libc", SetLastError = true)]
        private static extern int open(byte[] path, int flags);

        public static Status LStat(byte[] path)
        {
            // struct statx (linux/stat.h) has the same layout on every architecture.
            var buffer = new byte[256];
            if (statx(AtFdCwd, CString(path), AtSymlinkNoFollow, StatxBasicStats, buffer) != 0)
                throw Failure("statx", path);
            var span = buffer.AsSpan();
            var mode = BitConverter.ToUInt16(buffer, 28);
            var type = (mode & 0xf000) switch
            {
                0x8000 => "file",
                0x4000 => "directory",
                0xa000 => "symlink",
                0x1000 => "fifo",
                0xc000 => "socket",
                0x2000 => "character device",
                0x6000 => "block device",
                _ => $"unknown 0x{mode & 0xf000:x}",
            };
            return new Status(
                type, mode, BitConverter.ToUInt32(buffer, 20), BitConverter.ToUInt32(buffer, 24), BitConverter.ToUInt64(buffer, 32),
                BitConverter.ToUInt64(buffer, 40), BitConverter.ToInt64(buffer, 112), BitConverter.ToUInt32(buffer, 120),
                BitConverter.ToUInt32(buffer, 128), BitConverter.ToUInt32(buffer, 132), BitConverter.ToUInt32(buffer, 136), BitConverter.ToUInt32(buffer, 140));
        }

        /// <summary>Names in a directory, without "." and "..".</summary>
        public static List<byte[]> ReadDirectory(byte[] path)
        {
            var directory = opendir(CString(path));
            if (directory == IntPtr.Zero) throw Failure("opendir", path);
            try
            {
                var names = new List<byte[]>();
                while (true)
                {
                    Marshal.SetLastPInvokeError(0);
                    var entry = readdir(directory);
                    if (entry == IntPtr.Zero)
                    {
                        if (Marshal.GetLastPInvokeError() != 0) throw Failure("readdir", path);
                        return names;
                    }

                    // glibc's struct dirent on 64-bit Linux: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
                    const int nameOffset = 19;
                    var length = 0;
                    while (Marshal.ReadByte(entry, nameOffset + length) != 0) length++;
                    var name = new byte[length];
                    Marshal.Copy(entry + nameOffset, name, 0, length);
                    if (name is [(byte)'.'] or [(byte)'.', (byte)'.']) continue;
                    names.Add(name);
                }
            }
            finally
            {
                closedir(directory);
            }
        }

        public static byte[] ReadLink(byte[] path)
        {
            for (var size = 256; ; size *= 2)
            {
                var buffer = new byte[size];
                var length = readlink(CString(path), buffer, size);
                if (length < 0) throw Failure("readlink", path);
                if (length < size) return buffer[..(int)length];
            }
        }

        public static string Sha256(byte[] path)
        {
            var fd = open(CString(path), 0x80000 /* O_RDONLY | O_CLOEXEC */);
            if (fd < 0) throw Failure("open", path);
            using var stream = new FileStream(new SafeFileHandle(fd, ownsHandle: true), FileAccess.Read);
            return Convert.ToHexStringLower(SHA256.HashData(stream));
        }

        public static List<(byte[] Name, byte[] Value)> ExtendedAttributes(byte[] path)
        {
            var cpath = CString(path);
            byte[] list;
            while (true)
            {
                var size = llistxattr(cpath, null, 0);
                if (size < 0)
                {
                    if (Marshal.GetLastPInvokeError() == ENOTSUP) return [];
                    throw Failure("llistxattr", path);
                }

                list = new byte[size];
                var read = llistxattr(cpath, list, size);
                if (read >= 0)
                {
                    list = list[..(int)read];
                    break;
                }

                if (Marshal.GetLastPInvokeError() != ERANGE) throw Failure("llistxattr", path); // grew meanwhile: again
            }

            var attributes = new List<(byte[], byte[])>();
            foreach (var name in list.AsSpan().Split((byte)0))
            {
                if (list.AsSpan()[name].IsEmpty) continue;
                var nameBytes = list.AsSpan()[name].ToArray();
                var cname = CString(nameBytes);
                var size = lgetxattr(cpath, cname, null, 0);
                if (size < 0)
                {
                    if (Marshal.GetLastPInvokeError() == ENODATA) continue; // removed meanwhile
                    throw Failure($"lgetxattr {Escape(nameBytes)}", path);
                }

                var value = new byte[size];
                var read = lgetxattr(cpath, cname, value, size);
                if (read < 0) throw Failure($"lgetxattr {Escape(nameBytes)}", path);
                attributes.Add((nameBytes, value[..(int)read]));
            }

            attributes.Sort((a, b) => a.Item1.AsSpan().SequenceCompareTo(b.Item1));
            return attributes;
        }

        private static byte[] CString(byte[] bytes)
        {
            var terminated = new byte[bytes.Length + 1];
            bytes.CopyTo(terminated, 0);
            return terminated;
        }

        private static IOException Failure(string call, byte[] path)
        {
            var errno = Marshal.GetLastPInvokeError();
            return new IOException($"DirectorySnapshot: {call} of '{Escape(path)}' failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
        }
    }
}
