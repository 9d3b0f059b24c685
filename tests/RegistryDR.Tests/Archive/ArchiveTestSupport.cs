using System.Runtime.InteropServices;
using System.Text;
using ICSharpCode.SharpZipLib.GZip;
using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Tests.Archive;

/// <summary>A fresh directory under the system temp path, removed with everything in it on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "registrydr-archive-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(string relative) => System.IO.Path.Combine(Path, relative);

    public string CreateDirectory(string relative) => Directory.CreateDirectory(Combine(relative)).FullName;

    public void Dispose()
    {
        // Removes symbolic links themselves, never what they point to, and names that are not
        // UTF-8 (which Directory.Delete cannot).
        UnixFileSystem.DeleteTree(Path);
    }
}

/// <summary>
/// Stands in for an upload or download stream: forward-only, no Length, no Position, so any
/// attempt by the archive code to seek fails loudly.
/// </summary>
internal sealed class NonSeekableStream : Stream
{
    private readonly Stream _inner;

    public NonSeekableStream(Stream inner) => _inner = inner;

    public override bool CanRead => _inner.CanRead;

    public override bool CanSeek => false;

    public override bool CanWrite => _inner.CanWrite;

    public override long Length => throw new NotSupportedException("Length of a non-seekable stream.");

    public override long Position
    {
        get => throw new NotSupportedException("Position of a non-seekable stream.");
        set => throw new NotSupportedException("Position of a non-seekable stream.");
    }

    public override void Flush() => _inner.Flush();

    public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("Seek on a non-seekable stream.");

    public override void SetLength(long value) => throw new NotSupportedException("SetLength on a non-seekable stream.");

    public override void Write(byte[] buffer, int offset, int count) => _inner.Write(buffer, offset, count);
}

/// <summary>
/// Hand-built archives for the reader's negative tests, written with SharpZipLib directly so
/// they contain exactly what a hostile or damaged archive would.
/// </summary>
internal static class HandMadeArchive
{
    public const string Prefix = "var/local/dtr";

    public static readonly ArchiveRoot Root = ArchiveRoot.For("/var/local/dtr");

    /// <summary>
    /// Builds a tar.gz. With a block factor of 1 SharpZipLib holds back at most one block, so an
    /// archive whose last entry is never completed (<paramref name="finishTar"/> false) still
    /// contains that entry's header once a little data follows it.
    /// </summary>
    public static byte[] Build(Action<TarOutputStream> write, bool finishTar = true)
    {
        var buffer = new MemoryStream();
        var gzip = new GZipOutputStream(buffer) { IsStreamOwner = false };
        var tar = new TarOutputStream(gzip, 1, Encoding.UTF8) { IsStreamOwner = false };
        write(tar);
        if (finishTar)
        {
            // Writes the end-of-archive blocks and flushes; gzip stays open (not owned).
            tar.Dispose();
        }

        gzip.Finish();
        return buffer.ToArray();
    }

    /// <summary>Gzips raw tar blocks, for headers SharpZipLib refuses to produce (negative sizes).</summary>
    public static byte[] BuildRaw(params byte[][] blocks)
    {
        var buffer = new MemoryStream();
        using (var gzip = new GZipOutputStream(buffer) { IsStreamOwner = false })
        {
            foreach (var block in blocks)
            {
                gzip.Write(block, 0, block.Length);
            }

            gzip.Write(new byte[1024], 0, 1024);
        }

        return buffer.ToArray();
    }

    public static TarHeader Header(string name, byte typeFlag, long size = 0, string linkName = "", int mode = 0b110_100_100) => new()
    {
        Name = name,
        TypeFlag = typeFlag,
        Size = size,
        LinkName = linkName,
        Mode = mode,
        UserId = 0,
        GroupId = 0,
        UserName = "root",
        GroupName = "root",
        ModTime = new DateTime(2024, 1, 2, 3, 4, 5, DateTimeKind.Utc),
    };

    public static void Put(this TarOutputStream tar, TarHeader header, byte[]? content = null)
    {
        tar.PutNextEntry(new TarEntry(header));
        if (content is { Length: > 0 })
        {
            tar.Write(content, 0, content.Length);
        }

        tar.CloseEntry();
    }

    public static void RootDirectory(this TarOutputStream tar) => tar.Put(Header(Prefix + "/", TarHeader.LF_DIR, mode: 0b111_101_101));

    public static void Directory(this TarOutputStream tar, string relative) =>
        tar.Put(Header($"{Prefix}/{relative}/", TarHeader.LF_DIR, mode: 0b111_101_101));

    public static void File(this TarOutputStream tar, string name, string content = "data")
    {
        var bytes = Encoding.UTF8.GetBytes(content);
        tar.Put(Header(name, TarHeader.LF_NORMAL, bytes.Length), bytes);
    }

    public static void Symlink(this TarOutputStream tar, string name, string target) =>
        tar.Put(Header(name, TarHeader.LF_SYMLINK, linkName: target, mode: 0b111_111_111));

    public static void Special(this TarOutputStream tar, string name, byte typeFlag, string linkName = "") =>
        tar.Put(Header(name, typeFlag, linkName: linkName));

    /// <summary>A PAX extended header whose records apply to the next entry.</summary>
    public static void Pax(this TarOutputStream tar, params (string Key, string Value)[] records)
    {
        var data = new List<byte>();
        foreach (var (key, value) in records)
        {
            var body = Encoding.UTF8.GetByteCount($" {key}={value}\n");
            var length = body + 1;
            while (length.ToString().Length + body != length)
            {
                length = length.ToString().Length + body;
            }

            data.AddRange(Encoding.UTF8.GetBytes($"{length} {key}={value}\n"));
        }

        tar.Put(Header("././@PaxHeader", TarHeader.LF_XHDR, data.Count), [.. data]);
    }

    /// <summary>One header block with a raw size field, checksum recomputed.</summary>
    public static byte[] RawHeaderBlock(TarHeader header, ReadOnlySpan<byte> sizeField)
    {
        var block = new byte[512];
        header.WriteHeader(block, Encoding.UTF8);
        sizeField.CopyTo(block.AsSpan(124, 12));
        block.AsSpan(148, 8).Fill((byte)' ');
        var sum = block.Sum(b => (int)b);
        Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ").CopyTo(block, 148);
        return block;
    }

    public static byte[] Decompress(byte[] archive)
    {
        using var gzip = new GZipInputStream(new MemoryStream(archive));
        var tar = new MemoryStream();
        gzip.CopyTo(tar);
        return tar.ToArray();
    }

    public static byte[] Compress(byte[] tar)
    {
        var buffer = new MemoryStream();
        using (var gzip = new GZipOutputStream(buffer) { IsStreamOwner = false })
        {
            gzip.Write(tar, 0, tar.Length);
        }

        return buffer.ToArray();
    }

    /// <summary>Entry names and type flags as SharpZipLib's own reader sees them, as an independent check of the format.</summary>
    public static List<(string Name, char Type, TarEntry Entry)> List(byte[] archive)
    {
        var result = new List<(string, char, TarEntry)>();
        using var tar = new TarInputStream(new GZipInputStream(new MemoryStream(archive)), Encoding.UTF8);
        while (tar.GetNextEntry() is { } entry)
        {
            result.Add((entry.Name, (char)entry.TarHeader.TypeFlag, entry));
        }

        return result;
    }
}

/// <summary>Test-only POSIX calls for building fixtures .NET cannot create itself.</summary>
internal static class TestPosix
{
    public static void MakeFifo(string path) => Check(MkFifo(path, 0b110_100_100), "mkfifo", path);

    /// <summary>Creates a character device node; false where the environment forbids mknod.</summary>
    public static bool TryMakeCharacterDevice(string path, uint major, uint minor)
    {
        const uint CharacterDevice = 0x2000;
        var device = ((ulong)(major & 0xfff) << 8) | (minor & 0xff) | ((ulong)(minor & ~0xffu) << 12) | ((ulong)(major & ~0xfffu) << 32);
        return MkNod(path, CharacterDevice | 0b110_000_000, device) == 0;
    }

    public static void MakeHardLink(string existing, string link) => Check(Link(existing, link), "link", link);

    public static void Chown(string path, uint uid, uint gid) => UnixFileSystem.SetOwner(path, uid, gid);

    public static void SetMode(string path, int mode) => UnixFileSystem.SetPermissions(path, mode);

    private static void Check(int result, string call, string path)
    {
        if (result != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"{call} '{path}' failed: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
    }

    // Classic DllImport: the test project does not allow the unsafe code LibraryImport generates.
    [DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int MkFifo(string path, uint mode);

    [DllImport("libc", EntryPoint = "mknod", SetLastError = true)]
    private static extern int MkNod(string path, uint mode, ulong device);

    [DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int Link(string existing, string link);
}
