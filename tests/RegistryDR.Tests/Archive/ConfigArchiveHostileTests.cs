using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;
using static RegistryDR.Tests.Archive.HandMadeArchive;

namespace RegistryDR.Tests.Archive;

/// <summary>
/// Archives built by hand to attack the reader. Each must be refused by both ValidateAsync and
/// ExtractAsync, naming the offending entry, with nothing written outside the staging directory:
/// a sentinel directory next to it is the usual aim of the attack and must stay empty.
/// </summary>
[TestClass]
public sealed class ConfigArchiveHostileTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow("../sentinel/pwned")]
    [DataRow("var/local/dtr/../sentinel/pwned")]
    [DataRow("var/local/dtr/conf/../../sentinel/pwned")]
    public async Task DotDotEntriesAreRefused(string name)
    {
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File(name);
        });

        await AssertRefusedAsync(scene, archive, name, "would land outside its target directory");
    }

    [TestMethod]
    public async Task AbsoluteEntriesAreRefused()
    {
        using var scene = new Scene();
        var name = scene.Sentinel + "/pwned";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File(name);
        });

        await AssertRefusedAsync(scene, archive, name, "absolute path");
    }

    [TestMethod]
    [DataRow("etc/passwd")]
    [DataRow("var/local/dtr-evil/file")]
    [DataRow("var/local")]
    public async Task EntriesOutsideEveryRootAreRefused(string name)
    {
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File(name);
        });

        await AssertRefusedAsync(scene, archive, name, "outside every archived root");
    }

    [TestMethod]
    [DataRow("var/local/dtr/./conf")]
    [DataRow("var/local/dtr//conf")]
    public async Task NonCanonicalNamesAreRefused(string name)
    {
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File(name);
        });

        await AssertRefusedAsync(scene, archive, name, "empty or '.' segment");
    }

    [TestMethod]
    public async Task NamesWithNulAreRefused()
    {
        using var scene = new Scene();

        // Over 100 bytes, so SharpZipLib writes a GNU long-name record that carries the NUL intact.
        var name = $"{Prefix}/{new string('n', 120)}\0/../../../sentinel/pwned";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File(name);
        });

        await AssertRefusedAsync(scene, archive, name, "NUL");
    }

    [TestMethod]
    public async Task PaxPathCannotSmuggleATraversal()
    {
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Pax(("path", "var/local/dtr/../sentinel/pwned"));
            tar.File($"{Prefix}/innocent");
        });

        await AssertRefusedAsync(scene, archive, "var/local/dtr/../sentinel/pwned", "would land outside its target directory");
        Assert.IsFalse(File.Exists(Path.Combine(scene.Target, "innocent")));
    }

    [TestMethod]
    public async Task SymlinkWithARelativeTargetClimbingOutIsRefused()
    {
        using var scene = new Scene();
        var link = $"{Prefix}/conf/escape";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Directory("conf");
            tar.Symlink(link, "../../etc");
            tar.File(link + "/passwd");
        });

        await AssertRefusedAsync(scene, archive, link, "climbs out of '/var/local/dtr'");
        Assert.IsFalse(Path.Exists(Path.Combine(scene.Target, "conf/escape")));
    }

    [TestMethod]
    public async Task SymlinkWithAnAbsoluteTargetOutsideTheRootIsRefused()
    {
        using var scene = new Scene();
        var link = $"{Prefix}/etc-link";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Symlink(link, "/etc");
        });

        await AssertRefusedAsync(scene, archive, link, "lies outside '/var/local/dtr'");
        Assert.IsFalse(Path.Exists(Path.Combine(scene.Target, "etc-link")));
    }

    [TestMethod]
    public async Task SymlinkToTheOutsideFollowedByAFileThroughItWritesNothingThere()
    {
        using var scene = new Scene();
        var link = $"{Prefix}/link";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Symlink(link, scene.Sentinel);
            tar.File(link + "/evil", "owned");
        });

        await AssertRefusedAsync(scene, archive, link, "lies outside");
        Assert.IsFalse(File.Exists(Path.Combine(scene.Sentinel, "evil")));
    }

    [TestMethod]
    public async Task AFileWrittenThroughAnAcceptedSymlinkIsRefused()
    {
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Directory("inner");
            tar.Symlink($"{Prefix}/link", "inner");
            tar.File($"{Prefix}/link/evil");
        });

        await AssertRefusedAsync(scene, archive, $"{Prefix}/link/evil", "written through the symbolic link 'var/local/dtr/link'");
        Assert.IsFalse(File.Exists(Path.Combine(scene.Target, "inner/evil")));
    }

    [TestMethod]
    public async Task DotDotAfterAnotherLinkIsRefused()
    {
        // "self -> ." is harmless, but "up -> self/.." would resolve to the root's parent on disk
        // even though it looks like the root itself when read lexically.
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Symlink($"{Prefix}/self", ".");
            tar.Symlink($"{Prefix}/up", "self/..");
        });

        await AssertRefusedAsync(scene, archive, $"{Prefix}/up", "'..' after a normal segment");
    }

    [TestMethod]
    public async Task AFileBelowAFileIsRefused()
    {
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File($"{Prefix}/plain");
            tar.File($"{Prefix}/plain/child");
        });

        await AssertRefusedAsync(scene, archive, $"{Prefix}/plain/child", "is a regular file, not a directory");
    }

    /// <summary>
    /// A hard link may only name a regular file this archive extracted before it. Anything else
    /// would give the restored tree a second name for a file outside it (link(2) to /etc/shadow,
    /// then a config write through that name), or fail half-way.
    /// </summary>
    [TestMethod]
    [DataRow("etc/shadow", "lies outside every archived root")]
    [DataRow("/etc/shadow", "is an absolute path")]
    [DataRow("var/local/dtr/../../../etc/shadow", "would land outside its target directory")]
    [DataRow("var/local/dtr/conf", "is a directory")]
    [DataRow("var/local/dtr", "is a directory")]
    [DataRow("var/local/dtr/link", "is a symbolic link, not a regular file")]
    [DataRow("var/local/dtr/dirlink/file", "lies through the symbolic link 'var/local/dtr/dirlink'")]
    [DataRow("var/local/dtr/later", "is not a file extracted before it")]
    [DataRow("var/local/dtr/missing", "is not a file extracted before it")]
    [DataRow("var/local/dtr/evil", "is not a file extracted before it")]
    [DataRow("", "has an empty name")]
    [DataRow("var/local/dtr/conf/app.yml/", "only valid for a directory")]
    public async Task UnsafeHardLinksAreRefusedNamingTheEntry(string target, string reason)
    {
        using var scene = new Scene();
        var name = $"{Prefix}/evil";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Directory("conf");
            tar.File($"{Prefix}/conf/app.yml");
            tar.Symlink($"{Prefix}/link", "conf/app.yml");
            tar.Symlink($"{Prefix}/dirlink", "conf");
            tar.Special(name, TarHeader.LF_LINK, linkName: target);
            tar.File($"{Prefix}/later");
        });

        await AssertRefusedAsync(scene, archive, name, reason);
    }

    [TestMethod]
    public async Task AHardLinkCarryingDataOrAttributesIsRefused()
    {
        using var scene = new Scene();
        var name = $"{Prefix}/second";
        var withData = Build(tar =>
        {
            tar.RootDirectory();
            tar.File($"{Prefix}/first");
            tar.Put(Header(name, TarHeader.LF_LINK, size: 4, linkName: $"{Prefix}/first"), "data"u8.ToArray());
        });
        await AssertRefusedAsync(scene, withData, name, "a hard link entry must not carry data");

        using var second = new Scene();
        var withXattr = Build(tar =>
        {
            tar.RootDirectory();
            tar.File($"{Prefix}/first");
            tar.Pax(("SCHILY.xattr.user.x", "1"));
            tar.Special(name, TarHeader.LF_LINK, linkName: $"{Prefix}/first");
        });
        await AssertRefusedAsync(second, withXattr, name, "must not carry extended attributes or ACLs");
    }

    [TestMethod]
    public async Task ASafeHardLinkBecomesASecondNameOfTheExtractedFile()
    {
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Directory("conf");
            tar.File($"{Prefix}/conf/app.yml", "listen: 443\n");
            tar.Special($"{Prefix}/other/app-link.yml", TarHeader.LF_LINK, linkName: $"{Prefix}/conf/app.yml");
            tar.Special($"{Prefix}/third", TarHeader.LF_LINK, linkName: $"{Prefix}/other/app-link.yml");
        });

        var validated = await ConfigArchiveReader.ValidateAsync(new MemoryStream(archive), [Root], TestContext.CancellationToken);
        var stats = await ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), [Root], scene.Targets, restoreOwnership: true, TestContext.CancellationToken);

        Assert.AreEqual(validated, stats);
        Assert.AreEqual(1, stats.Files);
        Assert.AreEqual(2, stats.HardLinks);
        var first = UnixFileSystem.GetStatus(Path.Combine(scene.Target, "conf/app.yml"));
        var second = UnixFileSystem.GetStatus(Path.Combine(scene.Target, "other/app-link.yml"));
        var third = UnixFileSystem.GetStatus(Path.Combine(scene.Target, "third"));
        Assert.AreEqual(3u, first.LinkCount);
        Assert.AreEqual(first.Inode, second.Inode);
        Assert.AreEqual(first.Inode, third.Inode);
        Assert.AreEqual("listen: 443\n", File.ReadAllText(Path.Combine(scene.Target, "third")));
        scene.AssertNothingWrittenOutsideTarget();
    }

    [TestMethod]
    public void TheExtractorRefusesAHardLinkWhoseTargetIsNotARegularFileOnDisk()
    {
        // Second line of defence: the policy said the target is a file this archive extracted;
        // if the disk disagrees (a symbolic link to the sentinel put there), nothing is linked.
        using var scene = new Scene();
        var extractor = new StagingExtractor([Root], scene.Targets, restoreOwnership: true);
        File.WriteAllText(Path.Combine(scene.Sentinel, "secret"), "s");
        File.CreateSymbolicLink(Path.Combine(scene.Target, "file"), Path.Combine(scene.Sentinel, "secret"));

        var link = Admitted("evil", TarHeader.LF_LINK, $"{Prefix}/file") with { LinkTarget = (Root, "file") };
        var error = Assert.ThrowsExactly<UnsafeArchiveException>(
            () => extractor.Extract(link, new TarEntryReader(Stream.Null), TestContext.CancellationToken));

        Assert.Contains("is not a regular file extracted before it", error.Message);
        Assert.IsFalse(File.Exists(Path.Combine(scene.Target, "evil")));
        Assert.AreEqual(1u, UnixFileSystem.GetStatus(Path.Combine(scene.Sentinel, "secret")).LinkCount);
    }

    /// <summary>
    /// Attributes the kernel would reject, or that our writer never produces, are refused when the
    /// archive is validated, so a restore never fails half-way on them.
    /// </summary>
    [TestMethod]
    [DataRow('0', "SCHILY.xattr.system.posix_acl_access", "\u0002\u0000\u0000\u0000", "ACLs are stored as SCHILY.acl.access")]
    [DataRow('0', "SCHILY.xattr.os2.name", "x", "is not in one of Linux's namespaces")]
    [DataRow('0', "SCHILY.xattr.user.", "x", "is not in one of Linux's namespaces")]
    [DataRow('2', "SCHILY.xattr.user.note", "x", "does not allow user.* attributes on a symbolic link")]
    [DataRow('0', "SCHILY.xattr.security.capability", "\u0001\u0000\u0000\u0001", "version 2 or 3 capability set on a regular file")]
    [DataRow('5', "SCHILY.xattr.security.capability", "\u0001\u0000\u0000\u0002\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000", "on a regular file")]
    [DataRow('0', "SCHILY.acl.access", "user::rw-\nuser:101:r--\ngroup::r--\nother::---\n", "must have one mask entry when it names users or groups")]
    [DataRow('0', "SCHILY.acl.access", "user::rw-\ngroup::r--\nother::---\nother::r--\n", "exactly one other")]
    [DataRow('0', "SCHILY.acl.access", "user::rw-\nuser:postgres:r--\ngroup::r--\nmask::r--\nother::---\n", "does not name a numeric uid or gid")]
    [DataRow('0', "SCHILY.acl.access", "user::rw-\nuser:4294967295:r--\ngroup::r--\nmask::r--\nother::---\n", "does not name a numeric uid or gid")]
    [DataRow('0', "SCHILY.acl.access", "user::rwt\ngroup::r--\nother::---\n", "permissions other than 'rwx'")]
    [DataRow('0', "SCHILY.acl.default", "user::rwx\ngroup::r-x\nother::---\n", "only a directory can have a default ACL")]
    [DataRow('2', "SCHILY.acl.access", "user::rwx\ngroup::r-x\nother::---\n", "a symbolic link cannot have an ACL")]
    public async Task AttributesTheKernelWouldRejectAreRefused(char type, string key, string value, string reason)
    {
        using var scene = new Scene();
        var name = $"{Prefix}/entry";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Pax((key, value));
            switch ((byte)type)
            {
                case TarHeader.LF_SYMLINK:
                    tar.Symlink(name, "elsewhere");
                    break;
                case TarHeader.LF_DIR:
                    tar.Put(Header(name + "/", TarHeader.LF_DIR, mode: 0b111_101_101));
                    break;
                default:
                    tar.File(name);
                    break;
            }
        });

        await AssertRefusedAsync(scene, archive, (byte)type == TarHeader.LF_DIR ? name + "/" : name, reason);
    }

    [TestMethod]
    [DataRow(TarHeader.LF_CHR, "character devices are not supported")]
    [DataRow(TarHeader.LF_BLK, "block devices are not supported")]
    [DataRow(TarHeader.LF_FIFO, "FIFOs are not supported")]
    [DataRow(TarHeader.LF_CONTIG, "entry type '7' is not supported")]
    [DataRow(TarHeader.LF_GHDR, "entry type 'g' is not supported")]
    public async Task SpecialEntryTypesAreRefused(byte typeFlag, string reason)
    {
        using var scene = new Scene();
        var name = $"{Prefix}/special";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.Special(name, typeFlag);
        });

        await AssertRefusedAsync(scene, archive, name, reason);
        Assert.IsFalse(Path.Exists(Path.Combine(scene.Target, "special")));
    }

    [TestMethod]
    public async Task DuplicateEntriesAreRefused()
    {
        using var scene = new Scene();
        var name = $"{Prefix}/config.yml";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File(name, "first");
            tar.File(name, "second");
        });

        await AssertRefusedAsync(scene, archive, name, "appears more than once");
        Assert.AreEqual("first", File.ReadAllText(Path.Combine(scene.Target, "config.yml")), "The first copy must not have been overwritten.");
    }

    [TestMethod]
    public async Task ADirectoryReplacingAnEarlierFileIsRefusedAsADuplicate()
    {
        using var scene = new Scene();
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File($"{Prefix}/thing");
            tar.Directory("thing");
        });

        await AssertRefusedAsync(scene, archive, $"{Prefix}/thing/", "appears more than once");
    }

    [TestMethod]
    public async Task HugeDeclaredSizesAreRefusedBeforeReadingData()
    {
        using var scene = new Scene();
        var name = $"{Prefix}/huge.bin";

        // The header claims 1 TiB; the archive ends a little after it, as a hostile one can.
        // (SharpZipLib flushes a block only when the next one is written, hence the extra data.)
        var archive = Build(
            tar =>
            {
                tar.RootDirectory();
                tar.PutNextEntry(new TarEntry(Header(name, TarHeader.LF_NORMAL, size: 1L << 40)));
                tar.Write(new byte[1024], 0, 1024);
            },
            finishTar: false);

        await AssertRefusedAsync(scene, archive, name, "more than the per-entry limit of 17179869184 bytes");
    }

    [TestMethod]
    public async Task TheSizeLimitIsConfigurable()
    {
        using var scene = new Scene();
        var name = $"{Prefix}/big.bin";
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File(name, new string('x', 2000));
        });

        var error = await Assert.ThrowsExactlyAsync<UnsafeArchiveException>(
            () => ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), [Root], scene.Targets, true, maxEntrySize: 1000, TestContext.CancellationToken));
        Assert.Contains($"'{name}'", error.Message);
        Assert.Contains("limit of 1000 bytes", error.Message);

        var accepted = await ConfigArchiveReader.ValidateAsync(new MemoryStream(archive), [Root], maxEntrySize: 2000, TestContext.CancellationToken);
        Assert.AreEqual(2000, accepted.Bytes);
    }

    [TestMethod]
    public async Task NegativeDeclaredSizesAreRefused()
    {
        using var scene = new Scene();
        var name = $"{Prefix}/negative.bin";
        var negativeBase256 = Enumerable.Repeat((byte)0xff, 12).ToArray();
        var root = new byte[512];
        Header(Prefix + "/", TarHeader.LF_DIR).WriteHeader(root, System.Text.Encoding.UTF8);
        var archive = BuildRaw(root, RawHeaderBlock(Header(name, TarHeader.LF_NORMAL), negativeBase256));

        await AssertRefusedAsync(scene, archive, name, "negative size");
    }

    [TestMethod]
    public async Task ARootThatIsNotADirectoryIsRefused()
    {
        using var scene = new Scene();
        var archive = Build(tar => tar.File(Prefix));

        await AssertRefusedAsync(scene, archive, Prefix, "must be a directory");
    }

    [TestMethod]
    public async Task ExtractionNeedsAnEmptyStagingDirectory()
    {
        using var scene = new Scene();
        File.WriteAllText(Path.Combine(scene.Target, "leftover"), "x");
        var archive = Build(tar => tar.RootDirectory());

        var error = await Assert.ThrowsExactlyAsync<ArgumentException>(
            () => ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), [Root], scene.Targets, true, TestContext.CancellationToken));
        Assert.Contains("must be empty", error.Message);
    }

    [TestMethod]
    public async Task EachRootNeedsItsOwnStagingDirectory()
    {
        using var scene = new Scene();
        var roots = new[] { Root, ArchiveRoot.For("/usr/local/etc/dtr") };
        var targets = new Dictionary<string, string> { [Prefix] = scene.Target, ["usr/local/etc/dtr"] = scene.Target + "/" };
        var archive = Build(tar => tar.RootDirectory());

        var error = await Assert.ThrowsExactlyAsync<ArgumentException>(
            () => ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), roots, targets, true, TestContext.CancellationToken));
        Assert.Contains("overlap", error.Message);
    }

    [TestMethod]
    public void TheExtractorItselfRefusesToWriteThroughASymlinkOnDisk()
    {
        // Second line of defence: even if the archive-level rules missed something, or the staging
        // directory changed underneath, the extractor checks the real filesystem before writing.
        using var scene = new Scene();
        var extractor = new StagingExtractor([Root], scene.Targets, restoreOwnership: true);
        File.CreateSymbolicLink(Path.Combine(scene.Target, "link"), scene.Sentinel);

        var error = Assert.ThrowsExactly<UnsafeArchiveException>(
            () => extractor.Extract(Admitted("link/evil", TarHeader.LF_NORMAL), new TarEntryReader(Stream.Null), TestContext.CancellationToken));

        Assert.AreEqual($"{Prefix}/link/evil", error.EntryName);
        Assert.Contains("symbolic link", error.Message);
        Assert.IsEmpty(Directory.EnumerateFileSystemEntries(scene.Sentinel));
    }

    [TestMethod]
    public void TheExtractorNeverFollowsAnExistingLinkAtTheFinalPath()
    {
        using var scene = new Scene();
        var extractor = new StagingExtractor([Root], scene.Targets, restoreOwnership: true);
        File.CreateSymbolicLink(Path.Combine(scene.Target, "config.yml"), Path.Combine(scene.Sentinel, "config.yml"));

        Assert.Throws<IOException>(
            () => extractor.Extract(Admitted("config.yml", TarHeader.LF_NORMAL), new TarEntryReader(Stream.Null), TestContext.CancellationToken));
        Assert.Throws<IOException>(
            () => extractor.Extract(Admitted("config.yml", TarHeader.LF_SYMLINK, "elsewhere"), new TarEntryReader(Stream.Null), TestContext.CancellationToken));
        Assert.Throws<UnsafeArchiveException>(
            () => extractor.Extract(Admitted("config.yml", TarHeader.LF_DIR), new TarEntryReader(Stream.Null), TestContext.CancellationToken));

        Assert.IsEmpty(Directory.EnumerateFileSystemEntries(scene.Sentinel), "The dangling link's target must not have been created.");
    }

    private static AdmittedMember Admitted(string relative, byte typeFlag, string linkName = "")
    {
        var member = new TarMember($"{Prefix}/{relative}", typeFlag, 0b110_100_100, 0, 0, 0, 1_700_000_000, 0, linkName);
        var kind = typeFlag switch
        {
            TarHeader.LF_DIR => MemberKind.Directory,
            TarHeader.LF_SYMLINK => MemberKind.Symlink,
            TarHeader.LF_LINK => MemberKind.HardLink,
            _ => MemberKind.File,
        };
        return new AdmittedMember(member, kind, Root, relative);
    }

    private async Task AssertRefusedAsync(Scene scene, byte[] archive, string entryName, string reason)
    {
        var validation = await Assert.ThrowsExactlyAsync<UnsafeArchiveException>(
            () => ConfigArchiveReader.ValidateAsync(new MemoryStream(archive), [Root], TestContext.CancellationToken));
        AssertNamesEntry(validation, entryName, reason);

        var extraction = await Assert.ThrowsExactlyAsync<UnsafeArchiveException>(
            () => ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), [Root], scene.Targets, restoreOwnership: true, TestContext.CancellationToken));
        AssertNamesEntry(extraction, entryName, reason);

        scene.AssertNothingWrittenOutsideTarget();
    }

    private static void AssertNamesEntry(UnsafeArchiveException error, string entryName, string reason)
    {
        Assert.AreEqual(entryName, error.EntryName);
        Assert.StartsWith($"Archive entry '{entryName.Replace("\0", "\\0", StringComparison.Ordinal)}' is refused: ", error.Message);
        Assert.Contains(reason, error.Message);
    }

    /// <summary>temp/target is the staging directory; temp/sentinel next to it must stay empty.</summary>
    private sealed class Scene : IDisposable
    {
        private readonly TempDirectory _temp = new();

        public Scene()
        {
            Target = _temp.CreateDirectory("target");
            Sentinel = _temp.CreateDirectory("sentinel");
        }

        public string Target { get; }

        public string Sentinel { get; }

        public Dictionary<string, string> Targets => new() { [Prefix] = Target };

        public void AssertNothingWrittenOutsideTarget()
        {
            Assert.IsEmpty(Directory.EnumerateFileSystemEntries(Sentinel), "Something was written into the sentinel directory.");
            var siblings = Directory.EnumerateFileSystemEntries(_temp.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
            CollectionAssert.AreEqual(new[] { "sentinel", "target" }, siblings, "Something was written next to the target directory.");
        }

        public void Dispose() => _temp.Dispose();
    }
}
