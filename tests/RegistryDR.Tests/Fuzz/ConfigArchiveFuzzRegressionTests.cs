using System.Text;
using ICSharpCode.SharpZipLib.GZip;
using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;
using RegistryDR.Tests.Archive;

namespace RegistryDR.Tests.Fuzz;

/// <summary>
/// One test per bug the archive fuzz tests found, each with the smallest input that showed it.
/// Every archive here must be refused by ValidateAsync and ExtractAsync alike, with a documented
/// exception, and with nothing written outside the staging directory.
/// </summary>
[TestClass]
public sealed class ConfigArchiveFuzzRegressionTests
{
    private static readonly string Prefix = HandMadeArchive.Prefix;

    public TestContext TestContext { get; set; } = null!;

    /// <summary>
    /// A PAX record whose length is near int.MaxValue, after a valid record: "position + length"
    /// overflowed, passed the bounds check and indexed outside the record array.
    /// </summary>
    [TestMethod]
    public async Task PaxRecordLengthOverflowIsInvalidDataNotIndexOutOfRange()
    {
        var pax = Encoding.ASCII.GetBytes("10 a=bcde\n2147483647 path=x\n");
        var archive = Gzip(RawTar.Join(
        [
            RawTar.Chunk(RawTar.Header(Prefix + "/", TarHeader.LF_DIR), []),
            RawTar.Chunk(RawTar.Header("././@PaxHeader", TarHeader.LF_XHDR, pax.Length), pax),
            RawTar.Chunk(RawTar.Header(Prefix + "/file", TarHeader.LF_NORMAL, 1), "x"u8),
        ]));

        var error = await AssertRefusedAsync<InvalidDataException>(archive);
        Assert.Contains("malformed PAX", error.Message);
    }

    /// <summary>
    /// SharpZipLib's inflater throws IndexOutOfRangeException (not SharpZipBaseException) for some
    /// damaged dynamic Huffman tables. Every single-bit flip in the start of the deflate data of a
    /// fixed archive must come out as InvalidDataException; the test also proves that at least one
    /// of them is the IndexOutOfRangeException case, so it keeps covering the bug.
    /// </summary>
    [TestMethod]
    public async Task DamagedDeflateDataIsInvalidDataNotIndexOutOfRange()
    {
        var text = string.Join('\n', Enumerable.Range(0, 200).Select(i => $"line {i}: registry storage s3 bucket {i * 37 % 101}"));
        var archive = HandMadeArchive.Build(tar =>
        {
            tar.RootDirectory();
            tar.File($"{Prefix}/config.yml", text);
        });

        var sawIndexOutOfRange = 0;
        for (var position = 10; position < 10 + 48; position++)
        {
            for (var bit = 0; bit < 8; bit++)
            {
                var damaged = (byte[])archive.Clone();
                damaged[position] ^= (byte)(1 << bit);
                try
                {
                    await ConfigArchiveReader.ValidateAsync(new MemoryStream(damaged), [HandMadeArchive.Root], TestContext.CancellationToken);
                }
                catch (InvalidDataException ex)
                {
                    if (ex.InnerException is IndexOutOfRangeException)
                    {
                        sawIndexOutOfRange++;
                    }
                }
                catch (UnsafeArchiveException)
                {
                    // A flip can also decode to a different but well-formed name; that is fine.
                }
                catch (Exception ex)
                {
                    Assert.Fail($"Flipping bit {bit} of byte {position} gave {ex.GetType().FullName}: {ex.Message}");
                }
            }
        }

        Assert.IsGreaterThan(0, sawIndexOutOfRange, "No flip reached SharpZipLib's IndexOutOfRangeException any more; pick another input so this test still covers it.");
    }

    /// <summary>A 256-byte name component: validation accepted it, extraction failed with IOException (ENAMETOOLONG).</summary>
    [TestMethod]
    public async Task OverlongNameSegmentIsRefusedByValidationAndExtraction()
    {
        var name = $"{Prefix}/{new string('é', 128)}";
        var archive = HandMadeArchive.Build(tar =>
        {
            tar.RootDirectory();
            tar.File(name);
        });

        var error = await AssertRefusedAsync<UnsafeArchiveException>(archive);
        Assert.AreEqual(name, error.EntryName);
        Assert.Contains("longer than Linux allows", error.Message);
    }

    /// <summary>The same limits, right at the edge: 255 bytes per segment is a legal name.</summary>
    [TestMethod]
    public async Task NameSegmentOfExactly255BytesIsStillExtracted()
    {
        var segment = new string('é', 127) + "x";
        var archive = HandMadeArchive.Build(tar =>
        {
            tar.RootDirectory();
            tar.File($"{Prefix}/{segment}", "ok");
        });

        using var scene = new StagingScene();
        await ConfigArchiveReader.ValidateAsync(new MemoryStream(archive), [HandMadeArchive.Root], TestContext.CancellationToken);
        await ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), [HandMadeArchive.Root], scene.Targets, Environment.IsPrivilegedProcess, TestContext.CancellationToken);
        Assert.AreEqual("ok", File.ReadAllText(Path.Combine(scene.Target, segment)));
    }

    /// <summary>A 4,096-byte link target: validation accepted it, symlink(2) failed with ENAMETOOLONG.</summary>
    [TestMethod]
    public async Task OverlongSymlinkTargetIsRefusedByValidationAndExtraction()
    {
        var target = string.Join('/', Enumerable.Repeat("a", 2048)); // 4,095 bytes
        var tooLong = target + "b";
        var link = $"{Prefix}/link";

        var refused = HandMadeArchive.Build(tar =>
        {
            tar.RootDirectory();
            tar.Pax(("linkpath", tooLong));
            tar.Symlink(link, "stand-in");
        });
        var error = await AssertRefusedAsync<UnsafeArchiveException>(refused);
        Assert.AreEqual(link, error.EntryName);
        Assert.Contains("longer than the 4095 bytes", error.Message);

        var accepted = HandMadeArchive.Build(tar =>
        {
            tar.RootDirectory();
            tar.Pax(("linkpath", target));
            tar.Symlink(link, "stand-in");
        });
        using var scene = new StagingScene();
        await ConfigArchiveReader.ExtractAsync(new MemoryStream(accepted), [HandMadeArchive.Root], scene.Targets, Environment.IsPrivilegedProcess, TestContext.CancellationToken);
        Assert.AreEqual(target, new FileInfo(Path.Combine(scene.Target, "link")).LinkTarget);
    }

    /// <summary>
    /// Each PAX record was bounded to 1 MiB, but consecutive extended headers before one entry
    /// were all kept: a few hundred KB of gzip (distinct keys, repetitive values) made the reader
    /// hold tens of megabytes, and more headers meant more memory without limit.
    /// </summary>
    [TestMethod]
    public async Task ExtendedHeadersBeforeOneEntryShareOneMemoryBound()
    {
        const int Headers = 24;
        var chunks = new List<byte[]> { RawTar.Chunk(RawTar.Header(Prefix + "/", TarHeader.LF_DIR), []) };
        for (var i = 0; i < Headers; i++)
        {
            var record = RawTar.PaxRecord($"comment.{i}", new string('v', (1 << 20) - 64));
            chunks.Add(RawTar.Chunk(RawTar.Header("././@PaxHeader", TarHeader.LF_XHDR, record.Length), record));
        }

        chunks.Add(RawTar.Chunk(RawTar.Header(Prefix + "/file", TarHeader.LF_NORMAL, 1), "x"u8));
        var archive = Gzip(RawTar.Join(chunks));
        Assert.IsLessThan(1 << 20, archive.Length, "The attack is meant to be small on the wire.");

        // Measured on this thread with the reader's own loop; the public calls run on the pool.
        var before = GC.GetAllocatedBytesForCurrentThread();
        var refusal = Assert.ThrowsExactly<UnsafeArchiveException>(() =>
        {
            using var gzip = new GZipInputStream(new MemoryStream(archive));
            var reader = new TarEntryReader(gzip);
            while (reader.ReadNext() is not null)
            {
            }
        });
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains("extended headers", refusal.Message);
        Assert.IsLessThan(16L << 20, allocated, $"Reading {Headers} MiB of extended headers allocated {allocated} bytes.");

        await AssertRefusedAsync<UnsafeArchiveException>(archive);
    }

    /// <summary>
    /// Only the entry name was made printable: a link target quoted in the reason (here a hard
    /// link's) reached the message, and so the logs, with raw newlines and NULs.
    /// </summary>
    [TestMethod]
    public async Task RefusalReasonsQuotingTheArchiveArePrintable()
    {
        var archive = HandMadeArchive.Build(tar =>
        {
            tar.RootDirectory();
            tar.Pax(("linkpath", "x\n2024-01-01 INFO restore finished\0"));
            tar.Special($"{Prefix}/hard", TarHeader.LF_LINK, linkName: "stand-in");
        });

        var error = await AssertRefusedAsync<UnsafeArchiveException>(archive);
        Assert.Contains("its hard link target 'x\\x0a2024-01-01 INFO restore finished\\0' is refused", error.Message);
        Assert.IsFalse(error.Message.Any(char.IsControl), error.Message);
    }

    /// <summary>The truncation messages quoted the entry name raw.</summary>
    [TestMethod]
    public async Task TruncationMessagesQuoteEntryNamesPrintably()
    {
        var name = $"{Prefix}/line\nbreak";
        var tar = RawTar.Join(
        [
            RawTar.Chunk(RawTar.Header(Prefix + "/", TarHeader.LF_DIR), []),
            RawTar.Chunk(RawTar.Header(name, TarHeader.LF_NORMAL, 2000), new byte[2000]),
        ]);

        var error = await AssertRefusedAsync<InvalidDataException>(Gzip(tar[..(RawTar.Block * 3)]));
        Assert.Contains("truncated inside entry 'var/local/dtr/line\\x0abreak'", error.Message);
    }

    private async Task<T> AssertRefusedAsync<T>(byte[] archive)
        where T : Exception
    {
        var validation = await Assert.ThrowsExactlyAsync<T>(
            () => ConfigArchiveReader.ValidateAsync(new MemoryStream(archive), [HandMadeArchive.Root], TestContext.CancellationToken));

        using var scene = new StagingScene();
        var extraction = await Assert.ThrowsExactlyAsync<T>(
            () => ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), [HandMadeArchive.Root], scene.Targets, Environment.IsPrivilegedProcess, TestContext.CancellationToken));
        Assert.AreEqual(validation.Message, extraction.Message);
        scene.AssertNothingOutside();
        return validation;
    }

    private static byte[] Gzip(byte[] tar) => ArchiveFuzzHarness.Gzip(tar);

    /// <summary>temp/target is the staging directory; temp/sentinel beside it must stay empty.</summary>
    private sealed class StagingScene : IDisposable
    {
        private readonly TempDirectory _temp = new();

        public StagingScene()
        {
            Target = _temp.CreateDirectory("target");
            Sentinel = _temp.CreateDirectory("sentinel");
        }

        public string Target { get; }

        public string Sentinel { get; }

        public Dictionary<string, string> Targets => new() { [Prefix] = Target };

        public void AssertNothingOutside()
        {
            Assert.IsFalse(Directory.EnumerateFileSystemEntries(Sentinel).Any(), "Something was written into the sentinel directory.");
            CollectionAssert.AreEqual(new[] { "sentinel", "target" }, Directory.EnumerateFileSystemEntries(_temp.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList());
        }

        public void Dispose() => _temp.Dispose();
    }
}
