using System.Text;
using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;
using RegistryDR.Tests.Archive;

namespace RegistryDR.Tests.Fuzz;

/// <summary>
/// Seeded fuzzing of the config archive reader. Valid archives (from <see cref="ConfigArchiveWriter"/>
/// and hand-built with SharpZipLib, GNU long names included) are mutated at the tar level and
/// re-gzipped; each result must be accepted safely or refused with
/// <see cref="UnsafeArchiveException"/> / <see cref="InvalidDataException"/>, the only exceptions
/// the reader documents. See <see cref="ArchiveFuzzHarness"/> for every check made per case.
/// </summary>
[TestClass]
public sealed class ConfigArchiveFuzzTests
{
    private const int WriterSeed = 0x5eed_0001;
    private const int HandBuiltSeed = 0x5eed_0002;
    private const int GzipSeed = 0x5eed_0003;

    private static readonly DateTime FixedTime = new(2024, 5, 6, 7, 8, 9, DateTimeKind.Utc);

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task MutatedWriterArchivesAreAcceptedSafelyOrRefused()
    {
        using var tree = new TempDirectory();
        var roots = BuildTree(tree);
        var archive = new MemoryStream();
        await ConfigArchiveWriter.WriteAsync(roots, [], archive, warn: null, TestContext.CancellationToken);

        await FuzzTarAsync(WriterSeed, 600, HandMadeArchive.Decompress(archive.ToArray()), roots);
    }

    [TestMethod]
    public async Task MutatedHandBuiltArchivesAreAcceptedSafelyOrRefused()
    {
        var archive = HandMadeArchive.Build(tar =>
        {
            tar.RootDirectory();
            tar.Directory("conf");
            tar.File($"{HandMadeArchive.Prefix}/conf/app.yml", "listen: 443\n");
            tar.File($"{HandMadeArchive.Prefix}/conf/{new string('l', 130)}.yml", "long GNU name\n");
            tar.Symlink($"{HandMadeArchive.Prefix}/current", "conf");
            tar.Symlink($"{HandMadeArchive.Prefix}/conf/{new string('k', 110)}", "app.yml");
            tar.Pax(("path", $"{HandMadeArchive.Prefix}/conf/pax-named.txt"), ("mtime", "1700000000.5"));
            tar.File($"{HandMadeArchive.Prefix}/conf/stand-in", new string('p', 700));
            tar.Special($"{HandMadeArchive.Prefix}/conf/hard-link", TarHeader.LF_LINK, linkName: $"{HandMadeArchive.Prefix}/conf/app.yml");
            tar.Pax(("SCHILY.xattr.user.note", "v"), ("SCHILY.acl.access", "user::rw-\nuser:101:r--\ngroup::r--\nmask::r--\nother::---\n"));
            tar.File($"{HandMadeArchive.Prefix}/conf/with-attributes", "x");
            tar.Pax(("SCHILY.acl.default", "user::rwx\ngroup::r-x\ngroup:4242:r-x\nmask::r-x\nother::---\n"));
            tar.Directory("empty");
        });

        await FuzzTarAsync(HandBuiltSeed, 1400, HandMadeArchive.Decompress(archive), [HandMadeArchive.Root]);
    }

    [TestMethod]
    public async Task DamagedGzipLayersAreRefusedAsInvalidData()
    {
        using var tree = new TempDirectory();
        var roots = BuildTree(tree);
        var output = new MemoryStream();
        await ConfigArchiveWriter.WriteAsync(roots, [], output, warn: null, TestContext.CancellationToken);
        var archive = output.ToArray();

        using var harness = new ArchiveFuzzHarness();
        var baseSeed = Fuzz.BaseSeed(GzipSeed);
        foreach (var caseNumber in Fuzz.Cases(200))
        {
            var random = new Random(Fuzz.CaseSeed(baseSeed, caseNumber));
            var damaged = (byte[])archive.Clone();
            string what;
            switch (random.Next(4))
            {
                case 0:
                    var position = random.Next(damaged.Length);
                    damaged[position] ^= (byte)(1 + random.Next(255));
                    what = $"flipped byte {position}";
                    break;
                case 1:
                    var cut = random.Next(damaged.Length);
                    damaged = damaged[..cut];
                    what = $"truncated to {cut}";
                    break;
                case 2:
                    var extra = new byte[1 + random.Next(64)];
                    random.NextBytes(extra);
                    damaged = [.. damaged, .. extra];
                    what = $"{extra.Length} bytes appended";
                    break;
                default:
                    var start = random.Next(damaged.Length);
                    var length = Math.Min(1 + random.Next(32), damaged.Length - start);
                    random.NextBytes(damaged.AsSpan(start, length));
                    what = $"{length} random bytes at {start}";
                    break;
            }

            var where = $"{Fuzz.Where(baseSeed, caseNumber)} ({what})";
            await RunCaseAsync(harness, damaged, roots, "gzip", baseSeed, caseNumber, where);
        }

        TestContext.WriteLine($"gzip damage, {Fuzz.Cases(200).Count()} cases: {harness.Summary()} ({harness.Timings()})");
        harness.Failures.AssertNone();
    }

    /// <summary>
    /// Not random: all 256 type flags, each on an otherwise valid member followed by a valid
    /// file. Only regular files ('0' and NUL), symbolic links ('2') and directories ('5') may be
    /// extracted; the extension records ('x', 'L', 'K') only apply to the next member.
    /// </summary>
    [TestMethod]
    public async Task EveryTypeFlagIsAcceptedOnlyForFilesLinksAndDirectories()
    {
        using var harness = new ArchiveFuzzHarness();
        var accepted = new List<byte>();
        for (var flag = 0; flag < 256; flag++)
        {
            var tar = RawTar.Join(
            [
                RawTar.Chunk(RawTar.Header(HandMadeArchive.Prefix + "/", TarHeader.LF_DIR), []),
                RawTar.Chunk(RawTar.Header($"{HandMadeArchive.Prefix}/typed", (byte)flag, linkName: "sibling"), []),
                RawTar.Chunk(RawTar.Header($"{HandMadeArchive.Prefix}/sibling", TarHeader.LF_NORMAL, 2), "ok"u8),
            ]);
            var before = harness.Outcomes.GetValueOrDefault("accepted");
            await RunCaseAsync(harness, ArchiveFuzzHarness.Gzip(tar), [HandMadeArchive.Root], "typeflag", 0, flag, $"[type flag 0x{flag:x2}]");
            if (harness.Outcomes.GetValueOrDefault("accepted") > before)
            {
                accepted.Add((byte)flag);
            }
        }

        harness.Failures.AssertNone();
        TestContext.WriteLine($"256 type flags: {harness.Summary()}");

        // 'x' with no records and 'K' (a link name the following file ignores) leave a valid archive.
        CollectionAssert.AreEquivalent(
            new[] { (byte)0, TarHeader.LF_NORMAL, TarHeader.LF_SYMLINK, TarHeader.LF_DIR, TarHeader.LF_XHDR, TarHeader.LF_GNU_LONGLINK },
            accepted,
            $"Accepted type flags: {string.Join(", ", accepted.Select(f => $"0x{f:x2}"))}");
    }

    private async Task FuzzTarAsync(int defaultSeed, int cases, byte[] validTar, IReadOnlyList<ArchiveRoot> roots)
    {
        using var harness = new ArchiveFuzzHarness();

        // The unmutated template must pass, or every case below tests nothing.
        await harness.RunAsync(ArchiveFuzzHarness.Gzip(validTar), roots, "(the unmutated template)", TestContext.CancellationToken);
        Assert.AreEqual("accepted 1", harness.Summary(), "The unmutated template must be accepted.");

        var names = ExistingNames(validTar);
        TestContext.WriteLine($"template: {validTar.Length} tar bytes, {names.Count} entries");
        var baseSeed = Fuzz.BaseSeed(defaultSeed);
        var ran = 0;
        var started = DateTime.UtcNow;
        var cpu = Environment.CpuUsage.TotalTime;
        foreach (var caseNumber in Fuzz.Cases(cases))
        {
            var random = new Random(Fuzz.CaseSeed(baseSeed, caseNumber));
            var mutator = new TarMutator(random, new HostileTargets(roots, names, harness.SentinelPath));
            var tar = mutator.Mutate(validTar);
            var archive = ArchiveFuzzHarness.Gzip(tar);
            var where = $"{Fuzz.Where(baseSeed, caseNumber)}; mutations: {string.Join("; ", mutator.Log)}";
            await RunCaseAsync(harness, archive, roots, "tar", baseSeed, caseNumber, where);
            ran++;
        }

        TestContext.WriteLine($"{ran} cases from seed {baseSeed} in {(DateTime.UtcNow - started).TotalSeconds:F1}s ({(Environment.CpuUsage.TotalTime - cpu).TotalSeconds:F1}s CPU): {harness.Summary()} ({harness.Timings()})");
        harness.Failures.AssertNone();
        if (Fuzz.OnlyCase is null)
        {
            // Mutations that are always refused, or never, would mean the generator is not reaching the reader's logic.
            foreach (var kind in new[] { "accepted", nameof(UnsafeArchiveException), nameof(InvalidDataException) })
            {
                Assert.IsGreaterThanOrEqualTo(ran / 50, harness.Outcomes.GetValueOrDefault(kind), $"Too few '{kind}' outcomes: {harness.Summary()}");
            }
        }
    }

    private async Task RunCaseAsync(ArchiveFuzzHarness harness, byte[] archive, IReadOnlyList<ArchiveRoot> roots, string kind, int baseSeed, int caseNumber, string where)
    {
        try
        {
            await harness.RunAsync(archive, roots, where, TestContext.CancellationToken);
        }
        catch (AssertFailedException ex)
        {
            var kept = Fuzz.Keep(kind, baseSeed, caseNumber, archive);
            harness.Failures.Add(new AssertFailedException($"{ex.Message}\nThe archive is kept at {kept}.", ex));
        }
    }

    /// <summary>Entry names as the reader sees them, so mutations can collide with and nest below them.</summary>
    private static List<string> ExistingNames(byte[] tar)
    {
        var reader = new TarEntryReader(new MemoryStream(tar));
        var names = new List<string>();
        while (reader.ReadNext() is { } member)
        {
            names.Add(member.Name);
        }

        return names;
    }

    /// <summary>
    /// Two roots with everything the writer produces: nested directories, empty and multi-block
    /// files, relative and absolute links, a name needing PAX, non-ASCII, a name that is not
    /// UTF-8, hard links (within a root and across the two), a user xattr, a file capability, an
    /// access and a default ACL, nanosecond mtimes. Times are fixed so the template is
    /// byte-for-byte stable apart from the temp path.
    /// </summary>
    private static ArchiveRoot[] BuildTree(TempDirectory tree)
    {
        var cfg = tree.CreateDirectory("cfg");
        var etc = tree.CreateDirectory("etc");
        Directory.CreateDirectory(Path.Combine(cfg, "certs"));
        Directory.CreateDirectory(Path.Combine(cfg, "links"));
        Directory.CreateDirectory(Path.Combine(cfg, "deep/a/b"));
        Directory.CreateDirectory(Path.Combine(etc, "sub"));
        File.WriteAllText(Path.Combine(cfg, "config.yml"), "version: 0.1\nstorage: s3\n");
        File.WriteAllText(Path.Combine(cfg, "certs/ca.pem"), "-----BEGIN CERTIFICATE-----\n");
        File.WriteAllText(Path.Combine(cfg, "certs/key.pem"), "secret");
        UnixFileSystem.SetPermissions(Path.Combine(cfg, "certs/key.pem"), 0b110_000_000);
        File.WriteAllText(Path.Combine(cfg, "empty.txt"), string.Empty);
        File.WriteAllBytes(Path.Combine(cfg, "big.bin"), Enumerable.Range(0, 3000).Select(i => (byte)(i * 7)).ToArray());
        File.WriteAllText(Path.Combine(cfg, new string('n', 150) + ".conf"), "long name");
        File.WriteAllText(Path.Combine(cfg, "ünïcödé.txt"), "non-ASCII");
        File.WriteAllText(Path.Combine(cfg, "deep/a/b/file"), "deep");
        File.CreateSymbolicLink(Path.Combine(cfg, "links/relative"), "../config.yml");
        File.CreateSymbolicLink(Path.Combine(cfg, "links/absolute"), cfg + "/certs/ca.pem");
        File.CreateSymbolicLink(Path.Combine(cfg, "links/directory"), "../certs");
        File.WriteAllText(Path.Combine(etc, "registry.env"), "REGISTRY_HTTP_ADDR=:5000\n");
        File.WriteAllText(Path.Combine(etc, "sub/x"), Encoding.UTF8.GetString(new byte[600]));

        var seconds = new DateTimeOffset(FixedTime).ToUnixTimeSeconds();
        Fidelity.Shell.Run($$"""
            cd {{Fidelity.Shell.Quote(cfg)}}
            printf 'latin-1' > $'caf\xe9.conf'
            ln certs/ca.pem deep/a/ca-hard.pem
            ln config.yml {{Fidelity.Shell.Quote(etc)}}/config-hard.yml
            setfattr -n user.rotated-by -v cert-manager certs/key.pem
            setfattr -n security.capability -v 0x0100000200040000000000000000000000000000 big.bin
            setfacl -m u:101:r certs/key.pem
            setfacl -d -m g:4242:rx certs
            find {{Fidelity.Shell.Quote(tree.Path)}} -exec touch -h -d @{{seconds}}.123456789 {} +
            """);

        return [ArchiveRoot.For(cfg), ArchiveRoot.For(etc)];
    }
}
