using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// The config-tree oracle sees every property a restore must keep: for each one, two trees built
/// alike but for that property, and the oracle must report exactly the expected lines (and none
/// for the trees before the change). Trees are built with libc calls on byte names and with
/// Debian's setfacl/setfattr, never through src/.
/// </summary>
[TestClass]
public sealed class DirectorySnapshotTests
{
    /// <summary>Every path's mtime after building, so only the property under test differs.</summary>
    private const long Seconds = 1_700_000_000;
    private const string Mtime = "1700000000.123456789";

    private static readonly string BaseFile = "type=file mode=0644 owner=0:0 mtime=" + Mtime
        + " size=3 sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    /// <summary>One property: a change made to tree B only; <paramref name="KeepTimes"/> when the change is an mtime.</summary>
    private sealed record TreeCase(Action<string> Setup, Action<string> Mutation, string[] Expected, bool KeepTimes = false);

    private static readonly Dictionary<string, TreeCase> Cases = new()
    {
        ["name as bytes (not UTF-8)"] = new(
            root => CreateFile(root, Latin1("café"), "abc"),
            root => { Rename(root, Latin1("café"), Latin1("cafè")); },
            ["caf\\xe8: unexpected (got " + BaseFile + ")", "caf\\xe9: missing (expected " + BaseFile + ")"]),
        ["name with a backslash and a newline"] = new(
            root => CreateFile(root, "a\\b"u8, "abc"),
            root => Rename(root, "a\\b"u8, "a\nb"u8),
            ["a\\x0ab: unexpected (got " + BaseFile + ")", "a\\\\b: missing (expected " + BaseFile + ")"]),
        ["file bytes"] = new(
            root => CreateFile(root, "f"u8, "abc"),
            root => CreateFile(root, "f"u8, "abd"),
            ["f: sha256 expected ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad got a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9"]),
        ["file size"] = new(
            root => CreateFile(root, "f"u8, "abc"),
            root => CreateFile(root, "f"u8, "abcd"),
            ["f: size expected 3 got 4", "f: sha256 expected ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad got 88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"]),
        ["type"] = new(
            root => CreateFile(root, "x"u8, "abc"),
            root => { Unlink(root, "x"u8); MakeDirectory(root, "x"u8, 0b111_101_101); },
            ["x: type expected file got directory", "x: mode expected 0644 got 0755",
             "x: size expected 3 got (none)", "x: sha256 expected ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad got (none)"]),
        ["fifo"] = new(
            root => CreateFile(root, "x"u8, ""),
            root => { Unlink(root, "x"u8); Check(mkfifo(PathOf(root, "x"u8), 0b110_100_100), "mkfifo"); },
            ["x: type expected file got fifo", "x: size expected 0 got (none)",
             "x: sha256 expected e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 got (none)"]),
        ["device numbers"] = new(
            root => MakeNode(root, "dev"u8, major: 1, minor: 3),
            root => { Unlink(root, "dev"u8); MakeNode(root, "dev"u8, major: 1, minor: 5); },
            ["dev: device expected 1:3 got 1:5"]),
        ["mode"] = new(
            root => CreateFile(root, "f"u8, "abc"),
            root => Chmod(root, "f"u8, 0b110_100_000),
            ["f: mode expected 0644 got 0640"]),
        ["setuid"] = new(
            root => { CreateFile(root, "f"u8, "abc"); Chmod(root, "f"u8, 0b111_101_101); },
            root => Chmod(root, "f"u8, 0b100_111_101_101),
            ["f: mode expected 0755 got 4755"]),
        ["setgid"] = new(
            root => { MakeDirectory(root, "d"u8, 0b111_101_101); },
            root => Chmod(root, "d"u8, 0b010_111_101_101),
            ["d: mode expected 0755 got 2755"]),
        ["sticky"] = new(
            root => { MakeDirectory(root, "d"u8, 0b111_111_111); Chmod(root, "d"u8, 0b111_111_111); },
            root => Chmod(root, "d"u8, 0b001_111_111_111),
            ["d: mode expected 0777 got 1777"]),
        ["mode of the root itself"] = new(
            root => { },
            root => Chmod(root, ""u8, 0b111_000_000),
            [".: mode expected 0755 got 0700"]),
        ["owner"] = new(
            root => { CreateFile(root, "f"u8, "abc"); Check(lchown(PathOf(root, "f"u8), 1234, 5678), "lchown"); },
            root => Check(lchown(PathOf(root, "f"u8), 1234, 5679), "lchown"),
            ["f: owner expected 1234:5678 got 1234:5679"]),
        ["file mtime nanoseconds"] = new(
            root => CreateFile(root, "f"u8, "abc"),
            root => SetMtime(root, "f"u8, Seconds, 123_456_788),
            ["f: mtime expected " + Mtime + " got 1700000000.123456788"], KeepTimes: true),
        ["directory mtime"] = new(
            root => MakeDirectory(root, "d"u8, 0b111_101_101),
            root => SetMtime(root, "d"u8, Seconds + 1, 123_456_789),
            ["d: mtime expected " + Mtime + " got 1700000001.123456789"], KeepTimes: true),
        ["symlink's own mtime"] = new(
            root => Symlink(root, "f"u8, "l"u8),
            root => SetMtime(root, "l"u8, Seconds, 1),
            ["l: mtime expected " + Mtime + " got 1700000000.000000001"], KeepTimes: true),
        ["symlink target as bytes"] = new(
            root => Symlink(root, Latin1("tÿ"), "l"u8),
            root => { Unlink(root, "l"u8); Symlink(root, Latin1("tþ"), "l"u8); },
            ["l: target expected t\\xff got t\\xfe"]),
        ["hard links"] = new(
            root => { CreateFile(root, "a"u8, "abc"); Check(link(PathOf(root, "a"u8), PathOf(root, "b"u8)), "link"); },
            root => { Unlink(root, "b"u8); CreateFile(root, "b"u8, "abc"); },
            ["a: hard links expected a, b got (none)", "b: hard links expected a, b got (none)"]),
        ["hard links in a subdirectory"] = new(
            root => { MakeDirectory(root, "d"u8, 0b111_101_101); CreateFile(root, "a"u8, "abc"); CreateFile(root, "d/b"u8, "abc"); CreateFile(root, "c"u8, "abc"); },
            root => { Unlink(root, "d/b"u8); Check(link(PathOf(root, "a"u8), PathOf(root, "d/b"u8)), "link"); },
            ["a: hard links expected (none) got a, d/b", "d/b: hard links expected (none) got a, d/b"]),
        ["POSIX access ACL"] = new(
            root => CreateFile(root, "f"u8, "abc"),
            root => Tool("setfacl", "-m", "u:1234:r", Path.Combine(root, "f")),
            ["f: xattr system.posix_acl_access expected (none) got user::rw-,user:1234:r--,group::r--,mask::r--,other::r--"]),
        ["POSIX default ACL"] = new(
            root => MakeDirectory(root, "d"u8, 0b111_101_101),
            root => Tool("setfacl", "-d", "-m", "g:5678:rx", Path.Combine(root, "d")),
            ["d: xattr system.posix_acl_default expected (none) got user::rwx,group::r-x,group:5678:r-x,mask::r-x,other::r-x"]),
        ["user xattr"] = new(
            root => CreateFile(root, "f"u8, "abc"),
            root => Tool("setfattr", "-n", "user.origin", "-v", "registry", Path.Combine(root, "f")),
            ["f: xattr user.origin expected (none) got \"registry\""]),
        ["trusted xattr"] = new(
            root => CreateFile(root, "f"u8, "abc"),
            root => Tool("setfattr", "-n", "trusted.overlay", "-v", "0x00ff", Path.Combine(root, "f")),
            ["f: xattr trusted.overlay expected (none) got 0x00ff"]),
        ["security xattr"] = new(
            root => CreateFile(root, "f"u8, "abc"),
            // security.capability as setcap writes cap_net_bind_service=ep (VFS_CAP_REVISION_2).
            root => Tool("setfattr", "-n", "security.capability", "-v", "0x0100000200040000000000000000000000000000", Path.Combine(root, "f")),
            ["f: xattr security.capability expected (none) got 0x0100000200040000000000000000000000000000"]),
        ["xattr value"] = new(
            root => { CreateFile(root, "f"u8, "abc"); Tool("setfattr", "-n", "user.origin", "-v", "one", Path.Combine(root, "f")); },
            root => Tool("setfattr", "-n", "user.origin", "-v", "two", Path.Combine(root, "f")),
            ["f: xattr user.origin expected \"one\" got \"two\""]),
        ["a file deeper down"] = new(
            root => { MakeDirectory(root, "d"u8, 0b111_101_101); MakeDirectory(root, "d/e"u8, 0b111_101_101); },
            root => CreateFile(root, "d/e/new"u8, "abc"),
            ["d/e/new: unexpected (got " + BaseFile + ")"]),
    };

    public static IEnumerable<TestDataRow<string>> CaseNames => Cases.Keys.Select(k => new TestDataRow<string>(k) { DisplayName = k });

    [TestMethod]
    [DynamicData(nameof(CaseNames))]
    public void Sees_the_property(string name)
    {
        var property = Cases[name];
        var temp = Directory.CreateTempSubdirectory("rdr-oracle-tree-").FullName;
        try
        {
            Check(temp, property);
        }
        finally
        {
            // rm, not Directory.Delete: .NET cannot name an entry whose name is not UTF-8.
            Tool("rm", "-rf", "--", temp);
        }
    }

    private static void Check(string temp, TreeCase property)
    {
        var a = Path.Combine(temp, "a");
        var b = Path.Combine(temp, "b");
        foreach (var root in new[] { a, b })
        {
            Directory.CreateDirectory(root);
            File.SetUnixFileMode(root, (UnixFileMode)0b111_101_101);
            property.Setup(root);
            FixTimes(root);
        }

        var expected = DirectorySnapshot.Take(a);
        var before = expected.Differences(DirectorySnapshot.Take(b));
        CollectionAssert.AreEqual(Array.Empty<string>(), before.ToArray(), "built alike:\n" + string.Join("\n", before));

        property.Mutation(b);
        if (!property.KeepTimes) FixTimes(b);
        var differences = expected.Differences(DirectorySnapshot.Take(b)).ToArray();
        CollectionAssert.AreEqual(property.Expected, differences, "got:\n" + string.Join("\n", differences));
        Assert.AreEqual(string.Join("\n", property.Expected), expected.FirstDifference(DirectorySnapshot.Take(b)));
    }

    [TestMethod]
    public void Without_drops_a_path_and_everything_below_it()
    {
        using var temp = new TempDirectory("rdr-oracle-tree-");
        MakeDirectory(temp.Path, "d"u8, 0b111_101_101);
        CreateFile(temp.Path, "d/f"u8, "abc");
        CreateFile(temp.Path, "d.txt"u8, "abc");
        var snapshot = DirectorySnapshot.Take(temp.Path);
        CollectionAssert.AreEqual(new[] { ".", "d", "d.txt", "d/f" }, snapshot.Paths.ToArray()); // byte order: '.' < '/'
        CollectionAssert.AreEqual(new[] { ".", "d.txt" }, snapshot.Without("d").Paths.ToArray());
        Assert.AreEqual("file", snapshot["d/f"]["type"]);
    }

    [TestMethod]
    public void An_acl_reads_as_getfacl_prints_it()
    {
        // The decoder is checked against the tool that wrote the ACL, entry for entry.
        using var temp = new TempDirectory("rdr-oracle-tree-");
        CreateFile(temp.Path, "f"u8, "abc");
        var file = Path.Combine(temp.Path, "f");
        Tool("setfacl", "-m", "u:1234:rw,g:5678:x,m:rwx", file);
        var getfacl = Tool("getfacl", "--numeric", "--omit-header", "--absolute-names", file);
        var expected = string.Join(",", getfacl.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')[0].Trim()));
        Assert.AreEqual("user::rw-,user:1234:rw-,group::r--,group:5678:--x,mask::rwx,other::r--", expected);
        Assert.AreEqual(expected, DirectorySnapshot.Take(temp.Path)["f"]["xattr system.posix_acl_access"]);
    }

    private static void FixTimes(string root)
    {
        foreach (var path in Walk(Encoding.UTF8.GetBytes(root)))
            SetMtime(path, Seconds, 123_456_789);
    }

    private static IEnumerable<byte[]> Walk(byte[] path, bool isDirectory = true)
    {
        yield return path;
        if (!isDirectory) yield break;
        foreach (var (name, type) in NativeEntries(path))
            foreach (var below in Walk(Concat(path, "/"u8.ToArray(), name), type == 4 /* DT_DIR */))
                yield return below;
    }

    /// <summary>Names and d_type of a directory's entries (a name need not be UTF-8).</summary>
    private static List<(byte[] Name, byte Type)> NativeEntries(byte[] directory)
    {
        var dir = opendir(Z(directory));
        if (dir == IntPtr.Zero) throw new IOException($"opendir failed: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            var entries = new List<(byte[], byte)>();
            while (readdir(dir) is var entry && entry != IntPtr.Zero)
            {
                // glibc's struct dirent on 64-bit Linux: d_type at 18, d_name at 19.
                var length = 0;
                while (Marshal.ReadByte(entry, 19 + length) != 0) length++;
                var name = new byte[length];
                Marshal.Copy(entry + 19, name, 0, length);
                if (name is not ([(byte)'.'] or [(byte)'.', (byte)'.'])) entries.Add((name, Marshal.ReadByte(entry, 18)));
            }

            return entries;
        }
        finally
        {
            closedir(dir);
        }
    }

    /// <summary>A name in Latin-1: é is the single byte 0xe9, not UTF-8.</summary>
    private static byte[] Latin1(string text) => Encoding.Latin1.GetBytes(text);

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static byte[] PathOf(string root, ReadOnlySpan<byte> relative) =>
        relative.IsEmpty ? Encoding.UTF8.GetBytes(root) : Concat(Encoding.UTF8.GetBytes(root), "/"u8.ToArray(), relative.ToArray());

    private static byte[] Z(byte[] path) => Concat(path, [0]);

    private static void CreateFile(string root, ReadOnlySpan<byte> relative, string content)
    {
        var fd = open(Z(PathOf(root, relative)), 0x241 /* O_WRONLY | O_CREAT | O_TRUNC */, 0b110_100_100);
        Check(fd, "open");
        var bytes = Encoding.UTF8.GetBytes(content);
        try
        {
            if (bytes.Length > 0 && write(fd, bytes, bytes.Length) != bytes.Length) throw new IOException("short write");
        }
        finally
        {
            close(fd);
        }

        Chmod(root, relative, 0b110_100_100); // whatever the umask
    }

    private static void MakeDirectory(string root, ReadOnlySpan<byte> relative, uint mode)
    {
        Check(mkdir(Z(PathOf(root, relative)), mode), "mkdir");
        Chmod(root, relative, mode);
    }

    private static void MakeNode(string root, ReadOnlySpan<byte> relative, uint major, uint minor)
    {
        // makedev(3) for numbers below 256.
        if (mknod(Z(PathOf(root, relative)), 0x2000 | 0b110_100_100, (major << 8) | minor) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == 1) Assert.Inconclusive("This environment does not allow mknod (EPERM), so no device node can be created.");
            throw new IOException($"mknod failed: errno {errno}");
        }
    }

    private static void Chmod(string root, ReadOnlySpan<byte> relative, uint mode) => Check(chmod(Z(PathOf(root, relative)), mode), "chmod");

    private static void Rename(string root, ReadOnlySpan<byte> from, ReadOnlySpan<byte> to) =>
        Check(rename(Z(PathOf(root, from)), Z(PathOf(root, to))), "rename");

    private static void Unlink(string root, ReadOnlySpan<byte> relative) => Check(unlink(Z(PathOf(root, relative))), "unlink");

    private static void Symlink(string root, ReadOnlySpan<byte> target, ReadOnlySpan<byte> relative) =>
        Check(symlink(Z(target.ToArray()), Z(PathOf(root, relative))), "symlink");

    private static void SetMtime(string root, ReadOnlySpan<byte> relative, long seconds, long nanoseconds) =>
        SetMtime(PathOf(root, relative), seconds, nanoseconds);

    private static void SetMtime(byte[] path, long seconds, long nanoseconds)
    {
        // atime UTIME_OMIT, mtime as given; AT_SYMLINK_NOFOLLOW so a link's own time is set.
        long[] times = [0, (1L << 30) - 2, seconds, nanoseconds];
        Check(utimensat(-100, Z(path), times, 0x100), "utimensat");
    }

    private static void Check(int result, string call)
    {
        if (result < 0) throw new IOException($"{call} failed: errno {Marshal.GetLastPInvokeError()}");
    }

    private static string Tool(string tool, params string[] arguments)
    {
        var path = tool == "rm" ? "/bin/rm" : Path.Combine("/usr/bin", tool);
        // Installed by scripts/install-prerequisites.sh (Debian's acl and attr): missing is a failure, not a skip.
        Assert.IsTrue(File.Exists(path), $"{path} is missing: install Debian's acl and attr packages (scripts/install-prerequisites.sh).");
        var start = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        Assert.IsTrue(process.WaitForExit(60_000), $"{tool} did not finish");
        Assert.AreEqual(0, process.ExitCode, $"{tool} {string.Join(' ', arguments)}: {error}");
        return output;
    }

    [DllImport("libc", SetLastError = true)] private static extern int open(byte[] path, int flags, uint mode);
    [DllImport("libc", SetLastError = true)] private static extern nint write(int fd, byte[] buffer, nint count);
    [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
    [DllImport("libc", SetLastError = true)] private static extern int mkdir(byte[] path, uint mode);
    [DllImport("libc", SetLastError = true)] private static extern int mkfifo(byte[] path, uint mode);
    [DllImport("libc", SetLastError = true)] private static extern int mknod(byte[] path, uint mode, ulong device);
    [DllImport("libc", SetLastError = true)] private static extern int chmod(byte[] path, uint mode);
    [DllImport("libc", SetLastError = true)] private static extern int lchown(byte[] path, uint owner, uint group);
    [DllImport("libc", SetLastError = true)] private static extern int rename(byte[] from, byte[] to);
    [DllImport("libc", SetLastError = true)] private static extern int unlink(byte[] path);
    [DllImport("libc", SetLastError = true)] private static extern int symlink(byte[] target, byte[] path);
    [DllImport("libc", SetLastError = true)] private static extern int link(byte[] from, byte[] to);
    [DllImport("libc", SetLastError = true)] private static extern int utimensat(int dirfd, byte[] path, long[] times, int flags);
    [DllImport("libc", SetLastError = true)] private static extern IntPtr opendir(byte[] path);
    [DllImport("libc", SetLastError = true)] private static extern IntPtr readdir(IntPtr directory);
    [DllImport("libc", SetLastError = true)] private static extern int closedir(IntPtr directory);
}
