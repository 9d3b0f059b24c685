using System.Text;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Tests.Archive;

[TestClass]
public sealed class ConfigArchiveRoundTripTests
{
    private const uint ServiceUid = 1234;
    private const uint ServiceGid = 5678;

    private static readonly DateTime FileTime = new(2021, 3, 4, 5, 6, 7, DateTimeKind.Utc);
    private static readonly DateTime DirectoryTime = new(2020, 11, 12, 13, 14, 15, DateTimeKind.Utc);

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task TwoRootsRoundTripWithModesOwnersTimesAndLinks()
    {
        using var temp = new TempDirectory();
        var dtr = temp.CreateDirectory("node/var/local/dtr");
        var etc = temp.CreateDirectory("node/usr/local/etc/dtr");
        var random = BuildDtrTree(dtr);
        BuildEtcTree(etc);
        var roots = new[] { ArchiveRoot.For(dtr), ArchiveRoot.For(etc) };

        var archive = new MemoryStream();
        var written = await ConfigArchiveWriter.WriteAsync(roots, [], archive, warn: null, TestContext.CancellationToken);

        var targets = new Dictionary<string, string>
        {
            [roots[0].EntryPrefix] = temp.CreateDirectory("staging/dtr"),
            [roots[1].EntryPrefix] = temp.CreateDirectory("staging/etc"),
        };
        var validated = await ConfigArchiveReader.ValidateAsync(new MemoryStream(archive.ToArray()), roots, TestContext.CancellationToken);
        var extracted = await ConfigArchiveReader.ExtractAsync(new MemoryStream(archive.ToArray()), roots, targets, restoreOwnership: true, TestContext.CancellationToken);

        // Generic comparison of both trees: paths, types, modes, owners, mtimes, contents, link targets.
        TreeSnapshot.AssertSame(dtr, targets[roots[0].EntryPrefix]);
        TreeSnapshot.AssertSame(etc, targets[roots[1].EntryPrefix]);

        // And the specific expectations, so a writer and reader that agree on a wrong value still fail.
        var restored = targets[roots[0].EntryPrefix];
        AssertNode(restored, "conf/app.yml", UnixFileKind.Regular, 0b110_100_000, ServiceUid, ServiceGid);
        AssertNode(restored, "conf", UnixFileKind.Directory, 0b111_101_000, 0, 0);
        AssertNode(restored, "bin/run.sh", UnixFileKind.Regular, 0b111_101_101, 0, 0);
        AssertNode(restored, "shared", UnixFileKind.Directory, 0x400 | 0b111_111_101, ServiceUid, ServiceGid);
        AssertNode(restored, "bin/setuid-tool", UnixFileKind.Regular, 0x800 | 0b111_101_101, 0, 0);
        AssertNode(restored, "spool", UnixFileKind.Directory, 0x200 | 0b111_111_111, 0, 0);
        AssertNode(restored, "readonly", UnixFileKind.Directory, 0b101_101_101, 0, 0);
        AssertNode(restored, string.Empty, UnixFileKind.Directory, 0b111_101_001, ServiceUid, ServiceGid);
        AssertNode(restored, "links/owned", UnixFileKind.Symlink, null, ServiceUid, ServiceGid);
        Assert.AreEqual("../conf/app.yml", new FileInfo(Path.Combine(restored, "links/relative")).LinkTarget);
        Assert.AreEqual(dtr + "/conf/ca.pem", new FileInfo(Path.Combine(restored, "links/absolute")).LinkTarget);
        CollectionAssert.AreEqual(random, File.ReadAllBytes(Path.Combine(restored, "shared/blob.bin")));
        Assert.AreEqual(0, new FileInfo(Path.Combine(restored, "empty.txt")).Length);
        Assert.IsEmpty(Directory.EnumerateFileSystemEntries(Path.Combine(restored, "emptydir")));
        Assert.AreEqual(new DateTimeOffset(FileTime).ToUnixTimeSeconds(), UnixFileSystem.GetStatus(Path.Combine(restored, "conf/app.yml")).ModifiedSeconds);
        Assert.AreEqual(new DateTimeOffset(DirectoryTime).ToUnixTimeSeconds(), UnixFileSystem.GetStatus(Path.Combine(restored, "readonly")).ModifiedSeconds);
        AssertNode(targets[roots[1].EntryPrefix], "registry.json", UnixFileKind.Regular, 0b110_000_000, ServiceUid, ServiceGid);

        // Both sides count the same things: 11 files and one more name of one of them (a hard link), 14 directories (incl. both roots), 3 links.
        Assert.AreEqual(written, validated);
        Assert.AreEqual(written, extracted);
        Assert.AreEqual(new ArchiveStats(Files: 11, Directories: 14, Symlinks: 3, Bytes: written.Bytes) { HardLinks = 1 }, written);
        Assert.IsGreaterThan(3L * 1024 * 1024, written.Bytes);
        Assert.AreEqual(0, written.Skipped);
    }

    [TestMethod]
    public async Task WithoutRestoreOwnershipFilesBelongToTheRestoringUser()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        File.WriteAllText(Path.Combine(source, "owned.txt"), "x");
        TestPosix.Chown(Path.Combine(source, "owned.txt"), ServiceUid, ServiceGid);
        TestPosix.SetMode(Path.Combine(source, "owned.txt"), 0b110_100_000);
        var roots = new[] { ArchiveRoot.For(source) };
        var archive = new MemoryStream();
        await ConfigArchiveWriter.WriteAsync(roots, [], archive, null, TestContext.CancellationToken);

        var staging = temp.CreateDirectory("staging");
        await ConfigArchiveReader.ExtractAsync(new MemoryStream(archive.ToArray()), roots, new Dictionary<string, string> { [roots[0].EntryPrefix] = staging }, restoreOwnership: false, TestContext.CancellationToken);

        var status = UnixFileSystem.GetStatus(Path.Combine(staging, "owned.txt"));
        Assert.AreEqual(0u, status.UserId, "The restoring user (root) should own the file.");
        Assert.AreEqual(0b110_100_000, status.Permissions);
    }

    [TestMethod]
    public async Task LongNamesNonAsciiNamesLongLinkTargetsAndLargeIdsRoundTripThroughPax()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        var longDirectory = string.Join('/', Enumerable.Range(0, 6).Select(i => $"segment-{i}-" + new string('d', 30)));
        Directory.CreateDirectory(Path.Combine(source, longDirectory));
        var longFile = Path.Combine(source, longDirectory, "file-" + new string('f', 150) + ".conf");
        File.WriteAllText(longFile, "long");
        var unicode = Path.Combine(source, "zertifikat-ä-証明書.pem");
        File.WriteAllText(unicode, "unicode");
        var longTarget = longDirectory + "/" + Path.GetFileName(longFile);
        File.CreateSymbolicLink(Path.Combine(source, "long-link"), longTarget);
        var bigIds = Path.Combine(source, "big-ids");
        File.WriteAllText(bigIds, "ids");
        TestPosix.Chown(bigIds, 3_000_000_000, 2_500_000);
        var roots = new[] { ArchiveRoot.For(source) };

        var archive = new MemoryStream();
        await ConfigArchiveWriter.WriteAsync(roots, [], archive, null, TestContext.CancellationToken);
        var staging = temp.CreateDirectory("staging");
        await ConfigArchiveReader.ExtractAsync(new MemoryStream(archive.ToArray()), roots, new Dictionary<string, string> { [roots[0].EntryPrefix] = staging }, true, TestContext.CancellationToken);

        TreeSnapshot.AssertSame(source, staging);
        Assert.AreEqual(longTarget, new FileInfo(Path.Combine(staging, "long-link")).LinkTarget);
        Assert.AreEqual("unicode", File.ReadAllText(Path.Combine(staging, "zertifikat-ä-証明書.pem")));
        var ids = UnixFileSystem.GetStatus(Path.Combine(staging, "big-ids"));
        Assert.AreEqual(3_000_000_000u, ids.UserId);
        Assert.AreEqual(2_500_000u, ids.GroupId);

        // SharpZipLib's own reader understands the PAX path records too.
        var names = HandMadeArchive.List(archive.ToArray()).Select(e => e.Name).ToList();
        CollectionAssert.Contains(names, roots[0].EntryPrefix + "/" + longDirectory + "/" + Path.GetFileName(longFile));
    }

    /// <summary>The DTR-like tree; returns the random blob's bytes.</summary>
    private static byte[] BuildDtrTree(string root)
    {
        Directory.CreateDirectory(Path.Combine(root, "conf"));
        File.WriteAllText(Path.Combine(root, "conf/app.yml"), "listen: 443\n");
        TestPosix.Chown(Path.Combine(root, "conf/app.yml"), ServiceUid, ServiceGid);
        TestPosix.SetMode(Path.Combine(root, "conf/app.yml"), 0b110_100_000);
        File.WriteAllText(Path.Combine(root, "conf/ca.pem"), "-----BEGIN CERTIFICATE-----\n");
        TestPosix.SetMode(Path.Combine(root, "conf"), 0b111_101_000);

        Directory.CreateDirectory(Path.Combine(root, "bin"));
        File.WriteAllText(Path.Combine(root, "bin/run.sh"), "#!/bin/sh\nexit 0\n");
        TestPosix.SetMode(Path.Combine(root, "bin/run.sh"), 0b111_101_101);
        File.WriteAllBytes(Path.Combine(root, "bin/setuid-tool"), [0x7f, (byte)'E', (byte)'L', (byte)'F']);
        TestPosix.SetMode(Path.Combine(root, "bin/setuid-tool"), 0x800 | 0b111_101_101);

        Directory.CreateDirectory(Path.Combine(root, "shared"));
        var random = new byte[(3 * 1024 * 1024) + 12345];
        new Random(20240501).NextBytes(random);
        File.WriteAllBytes(Path.Combine(root, "shared/blob.bin"), random);
        TestPosix.Chown(Path.Combine(root, "shared/blob.bin"), ServiceUid, ServiceGid);
        TestPosix.SetMode(Path.Combine(root, "shared/blob.bin"), 0b110_000_000);
        TestPosix.Chown(Path.Combine(root, "shared"), ServiceUid, ServiceGid);
        TestPosix.SetMode(Path.Combine(root, "shared"), 0x400 | 0b111_111_101);

        Directory.CreateDirectory(Path.Combine(root, "spool"));
        TestPosix.SetMode(Path.Combine(root, "spool"), 0x200 | 0b111_111_111);
        File.WriteAllText(Path.Combine(root, "empty.txt"), string.Empty);
        Directory.CreateDirectory(Path.Combine(root, "emptydir"));
        File.WriteAllText(Path.Combine(root, ".hidden"), "dot files count too");
        Directory.CreateDirectory(Path.Combine(root, "deep/a/b/c"));
        File.WriteAllText(Path.Combine(root, "deep/a/b/c/leaf.txt"), "leaf");
        TestPosix.MakeHardLink(Path.Combine(root, "deep/a/b/c/leaf.txt"), Path.Combine(root, "deep/leaf-hardlink.txt"));

        Directory.CreateDirectory(Path.Combine(root, "links"));
        File.CreateSymbolicLink(Path.Combine(root, "links/relative"), "../conf/app.yml");
        File.CreateSymbolicLink(Path.Combine(root, "links/absolute"), root + "/conf/ca.pem");
        File.CreateSymbolicLink(Path.Combine(root, "links/owned"), "../empty.txt");
        TestPosix.Chown(Path.Combine(root, "links/owned"), ServiceUid, ServiceGid);

        // A read-only directory with content: the restore must fill it before making it read-only.
        Directory.CreateDirectory(Path.Combine(root, "readonly"));
        File.WriteAllText(Path.Combine(root, "readonly/frozen.txt"), "frozen");

        SetTimes(root);
        TestPosix.SetMode(Path.Combine(root, "readonly"), 0b101_101_101);
        TestPosix.Chown(root, ServiceUid, ServiceGid);
        TestPosix.SetMode(root, 0b111_101_001);
        return random;
    }

    private static void BuildEtcTree(string root)
    {
        File.WriteAllText(Path.Combine(root, "registry.json"), "{\"storage\":\"s3\"}");
        TestPosix.Chown(Path.Combine(root, "registry.json"), ServiceUid, ServiceGid);
        TestPosix.SetMode(Path.Combine(root, "registry.json"), 0b110_000_000);
        Directory.CreateDirectory(Path.Combine(root, "certs"));
        File.WriteAllText(Path.Combine(root, "certs/key.pem"), "-----BEGIN PRIVATE KEY-----\n");
        TestPosix.SetMode(Path.Combine(root, "certs/key.pem"), 0b100_000_000);
        SetTimes(root);
    }

    /// <summary>Fixed mtimes on every file and directory, deepest first so parents keep theirs.</summary>
    private static void SetTimes(string root)
    {
        foreach (var file in Directory.EnumerateFiles(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            if (UnixFileSystem.GetStatus(file).Kind == UnixFileKind.Regular)
            {
                File.SetLastWriteTimeUtc(file, FileTime);
            }
        }

        var directories = Directory.EnumerateDirectories(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
            .Where(d => UnixFileSystem.GetStatus(d).Kind == UnixFileKind.Directory)
            .OrderByDescending(d => d.Length)
            .Append(root);
        foreach (var directory in directories)
        {
            Directory.SetLastWriteTimeUtc(directory, DirectoryTime);
        }
    }

    private static void AssertNode(string root, string relative, UnixFileKind kind, int? permissions, uint uid, uint gid)
    {
        var status = UnixFileSystem.GetStatus(relative.Length == 0 ? root : Path.Combine(root, relative));
        Assert.AreEqual(kind, status.Kind, $"type of '{relative}'");
        if (permissions is { } expected)
        {
            Assert.AreEqual(Convert.ToString(expected, 8), Convert.ToString(status.Permissions, 8), $"mode of '{relative}'");
        }

        Assert.AreEqual(uid, status.UserId, $"uid of '{relative}'");
        Assert.AreEqual(gid, status.GroupId, $"gid of '{relative}'");
    }
}
