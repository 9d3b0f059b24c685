using System.Net.Sockets;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Tests.Archive;

[TestClass]
public sealed class ConfigArchiveWriterTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task ExcludesMatchBasenamesAnywhereWholeSubtreesAndDirectoriesAtAnyDepth()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        foreach (var file in new[] { "a.sock", "sub/b.sock", "sub/deeper/c.sock", "tmp/x", "tmp/y/z", "cache/blob", "sub/cache/blob", "sub/cachefile", "keep.txt", "tmpfile", "sub/tmp/kept", "sockets.txt" })
        {
            var path = Path.Combine(source, file);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, file);
        }

        var prefix = ArchiveRoot.For(source).EntryPrefix;
        var archive = new MemoryStream();
        var stats = await ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(source)], ["*.sock", "tmp/**", "**/cache"], archive, null, TestContext.CancellationToken);

        var names = HandMadeArchive.List(archive.ToArray()).Select(e => e.Name[(prefix.Length + 1)..].TrimEnd('/')).ToList();
        var expected = new[]
        {
            string.Empty, "keep.txt", "sockets.txt",
            "sub", "sub/cachefile", "sub/deeper", "sub/tmp", "sub/tmp/kept",
            "tmp", // "tmp/**" drops what is inside tmp, as in .gitignore, but keeps the directory itself.
            "tmpfile",
        };
        CollectionAssert.AreEqual(expected, names);
        Assert.AreEqual(new ArchiveStats(Files: 5, Directories: 5, Symlinks: 0, Bytes: stats.Bytes), stats);
    }

    [TestMethod]
    [DataRow("*.conf", "a.conf", false, true)]
    [DataRow("*.conf", "x/y/a.conf", false, true)]
    [DataRow("*.conf", "a.conf.bak", false, false)]
    [DataRow("conf/*.yml", "conf/a.yml", false, true)]
    [DataRow("conf/*.yml", "x/conf/a.yml", false, false)]
    [DataRow("conf/*.yml", "conf/sub/a.yml", false, false)]
    [DataRow("**/conf/*.yml", "x/y/conf/a.yml", false, true)]
    [DataRow("/top", "top", false, true)]
    [DataRow("/top", "x/top", false, false)]
    [DataRow("log?.txt", "log1.txt", false, true)]
    [DataRow("log?.txt", "log12.txt", false, false)]
    [DataRow("logs/", "logs", true, true)]
    [DataRow("logs/", "logs", false, false)]
    [DataRow("a/**/z", "a/z", false, true)]
    [DataRow("a/**/z", "a/b/c/z", false, true)]
    [DataRow("tmp/**", "tmp", true, false)]
    [DataRow("tmp/**", "tmp/a/b", false, true)]
    [DataRow("*", "anything/at/all", false, true)]
    public void ExcludeGlobSemantics(string glob, string path, bool isDirectory, bool excluded)
    {
        Assert.AreEqual(excluded, new ExcludeMatcher([glob]).IsExcluded(path, isDirectory), $"'{glob}' vs '{path}'");
    }

    [TestMethod]
    public async Task WritesToANonSeekableStreamAndReadsBackFromOne()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        var content = new byte[600_000];
        new Random(7).NextBytes(content);
        File.WriteAllBytes(Path.Combine(source, "blob"), content);
        var roots = new[] { ArchiveRoot.For(source) };

        var sink = new MemoryStream();
        var stats = await ConfigArchiveWriter.WriteAsync(roots, [], new NonSeekableStream(sink), null, TestContext.CancellationToken);

        Assert.IsTrue(sink.CanWrite, "The writer must leave the caller's stream open.");

        var staging = temp.CreateDirectory("staging");
        var input = new MemoryStream(sink.ToArray());
        var restored = await ConfigArchiveReader.ExtractAsync(new NonSeekableStream(input), roots, new Dictionary<string, string> { [roots[0].EntryPrefix] = staging }, true, TestContext.CancellationToken);
        Assert.IsTrue(input.CanRead, "The reader must leave the caller's stream open.");
        CollectionAssert.AreEqual(content, File.ReadAllBytes(Path.Combine(staging, "blob")));
        Assert.AreEqual(stats, restored);
        Assert.AreEqual(content.Length, stats.Bytes);
    }

    [TestMethod]
    public async Task MissingRootIsReportedByNameBeforeAnythingIsWritten()
    {
        using var temp = new TempDirectory();
        var present = temp.CreateDirectory("present");
        var missing = temp.Combine("usr/local/etc/dtr");
        var output = new MemoryStream();

        var error = await Assert.ThrowsExactlyAsync<DirectoryNotFoundException>(
            () => ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(present), ArchiveRoot.For(missing)], [], output, null, TestContext.CancellationToken));

        Assert.Contains(missing, error.Message);
        Assert.AreEqual(0, output.Length, "Nothing may be written when a root is missing.");
    }

    [TestMethod]
    public async Task SocketsAndFifosAreSkippedCountedAndReported()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        File.WriteAllText(Path.Combine(source, "regular"), "x");
        var fifo = Path.Combine(source, "pipe");
        TestPosix.MakeFifo(fifo);
        var socketPath = Path.Combine(source, "daemon.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(socketPath));
        Assert.AreEqual(UnixFileKind.Socket, UnixFileSystem.GetStatus(socketPath).Kind);

        var warnings = new List<string>();
        var archive = new MemoryStream();
        var stats = await ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(source)], [], archive, warnings.Add, TestContext.CancellationToken);

        Assert.AreEqual(2, stats.Skipped);
        Assert.AreEqual(1, stats.Files);
        Assert.HasCount(2, warnings);
        Assert.IsTrue(warnings.Any(w => w.Contains(fifo, StringComparison.Ordinal) && w.Contains("FIFO", StringComparison.Ordinal)), string.Join("\n", warnings));
        Assert.IsTrue(warnings.Any(w => w.Contains(socketPath, StringComparison.Ordinal) && w.Contains("socket", StringComparison.Ordinal)), string.Join("\n", warnings));
        var names = HandMadeArchive.List(archive.ToArray()).Select(e => Path.GetFileName(e.Name.TrimEnd('/'))).ToList();
        CollectionAssert.DoesNotContain(names, "pipe");
        CollectionAssert.DoesNotContain(names, "daemon.sock");
        CollectionAssert.Contains(names, "regular");
    }

    [TestMethod]
    public async Task DeviceNodesAreSkippedCountedAndReported()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        var device = Path.Combine(source, "null-device");
        if (!TestPosix.TryMakeCharacterDevice(device, 1, 3))
        {
            Assert.Inconclusive("This environment does not allow mknod, so no device node can be created.");
        }

        Assert.AreEqual(UnixFileKind.CharDevice, UnixFileSystem.GetStatus(device).Kind);
        var warnings = new List<string>();
        var archive = new MemoryStream();
        var stats = await ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(source)], [], archive, warnings.Add, TestContext.CancellationToken);

        Assert.AreEqual(1, stats.Skipped);
        Assert.AreEqual(0, stats.Files);
        Assert.HasCount(1, warnings);
        Assert.Contains("character device", warnings[0]);
        Assert.Contains(device, warnings[0]);
        Assert.HasCount(1, HandMadeArchive.List(archive.ToArray()), "Only the root directory entry may be in the archive.");
    }

    [TestMethod]
    public async Task HardLinksAreStoredAsLinksToTheFirstName()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        Directory.CreateDirectory(Path.Combine(source, "sub"));
        File.WriteAllText(Path.Combine(source, "original"), "shared content");
        TestPosix.MakeHardLink(Path.Combine(source, "original"), Path.Combine(source, "sub/second-name"));

        var archive = new MemoryStream();
        var stats = await ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(source)], [], archive, null, TestContext.CancellationToken);

        // As GNU tar writes them: the first name carries the data, the next is a '1' entry naming it.
        var prefix = ArchiveRoot.For(source).EntryPrefix;
        var entries = HandMadeArchive.List(archive.ToArray()).Where(e => e.Type is '0' or '1').ToList();
        CollectionAssert.AreEqual(new[] { $"0 {prefix}/original 14 ", $"1 {prefix}/sub/second-name 0 {prefix}/original" }, entries.Select(e => $"{e.Type} {e.Name} {e.Entry.Size} {e.Entry.TarHeader.LinkName}").ToList());
        Assert.AreEqual(1, stats.Files);
        Assert.AreEqual(1, stats.HardLinks);
        Assert.AreEqual(14, stats.Bytes);
        Assert.IsEmpty(stats.NotKept);
    }

    [TestMethod]
    public async Task TheSameTreeGivesTheSameTarStream()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        foreach (var name in new[] { "b", "a", "C", "a.d/x", "a-d/y", "ä" })
        {
            var path = Path.Combine(source, name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, name);
        }

        var first = new MemoryStream();
        var second = new MemoryStream();
        await ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(source)], [], first, null, TestContext.CancellationToken);
        await ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(source)], [], second, null, TestContext.CancellationToken);

        // Only the gzip header's timestamp may differ, so compare what is inside it.
        CollectionAssert.AreEqual(HandMadeArchive.Decompress(first.ToArray()), HandMadeArchive.Decompress(second.ToArray()));
        var prefix = ArchiveRoot.For(source).EntryPrefix + "/";
        var names = HandMadeArchive.List(first.ToArray()).Select(e => e.Name[prefix.Length..]).ToList();
        CollectionAssert.AreEqual(new[] { string.Empty, "C", "a", "a-d/", "a-d/y", "a.d/", "a.d/x", "b", "ä" }, names, "Directories first, then siblings in ordinal order.");
    }

    [TestMethod]
    public async Task LinksPointingOutsideTheirRootAreLeftOutWithAWarning()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        File.CreateSymbolicLink(Path.Combine(source, "system-ca"), "/etc/ssl/certs/ca-certificates.crt");
        File.CreateSymbolicLink(Path.Combine(source, "escape"), "../../outside");
        File.CreateSymbolicLink(Path.Combine(source, "fine"), "sub/target");
        var roots = new[] { ArchiveRoot.For(source) };

        var warnings = new List<string>();
        var archive = new MemoryStream();
        var stats = await ConfigArchiveWriter.WriteAsync(roots, [], archive, warnings.Add, TestContext.CancellationToken);

        Assert.AreEqual(1, stats.Symlinks);
        Assert.AreEqual(2, stats.Skipped);
        Assert.IsTrue(warnings.Any(w => w.Contains("system-ca", StringComparison.Ordinal)), string.Join("\n", warnings));
        Assert.IsTrue(warnings.Any(w => w.Contains("escape", StringComparison.Ordinal)), string.Join("\n", warnings));

        // What was written is restorable.
        var validated = await ConfigArchiveReader.ValidateAsync(new MemoryStream(archive.ToArray()), roots, TestContext.CancellationToken);
        Assert.AreEqual(1, validated.Symlinks);
    }

    [TestMethod]
    public async Task ARootThatIsASymbolicLinkIsArchivedAsTheDirectoryItLeadsTo()
    {
        using var temp = new TempDirectory();
        var real = temp.CreateDirectory("volume/dtr");
        File.WriteAllText(Path.Combine(real, "config.yml"), "x");
        var linked = temp.Combine("dtr-link");
        Directory.CreateSymbolicLink(linked, real);

        var archive = new MemoryStream();
        var stats = await ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(linked)], [], archive, null, TestContext.CancellationToken);

        Assert.AreEqual(1, stats.Files);
        var prefix = ArchiveRoot.For(linked).EntryPrefix;
        CollectionAssert.Contains(HandMadeArchive.List(archive.ToArray()).Select(e => e.Name).ToList(), prefix + "/config.yml");
    }

    [TestMethod]
    [DataRow("relative/path")]
    [DataRow("/")]
    [DataRow("/var/../etc")]
    [DataRow("/var/./dtr")]
    [DataRow("/var//dtr")]
    public void RootsMustBeCanonicalAbsolutePaths(string path)
    {
        Assert.ThrowsExactly<ArgumentException>(() => ArchiveRoot.For(path));
    }

    [TestMethod]
    public void RootForStripsTheLeadingAndTrailingSlash()
    {
        Assert.AreEqual(new ArchiveRoot("/var/local/dtr", "var/local/dtr"), ArchiveRoot.For("/var/local/dtr/"));
    }

    [TestMethod]
    public async Task OverlappingRootsAreRefused()
    {
        var output = new MemoryStream();
        await Assert.ThrowsExactlyAsync<ArgumentException>(
            () => ConfigArchiveWriter.WriteAsync([ArchiveRoot.For("/var/local/dtr"), ArchiveRoot.For("/var/local/dtr/sub")], [], output, null, TestContext.CancellationToken));
    }
}
