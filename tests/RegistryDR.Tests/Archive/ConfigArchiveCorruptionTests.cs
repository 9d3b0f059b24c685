using System.Text;
using RegistryDR.Archive;
using static RegistryDR.Tests.Archive.HandMadeArchive;

namespace RegistryDR.Tests.Archive;

/// <summary>
/// Damaged archives must fail loudly with <see cref="InvalidDataException"/>: a restore that
/// quietly succeeds with half the files would be swapped into place and lose configuration.
/// </summary>
[TestClass]
public sealed class ConfigArchiveCorruptionTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow(0.5)]
    [DataRow(0.9)]
    [DataRow(0.1)]
    public async Task TruncatedArchivesAreRejected(double keptFraction)
    {
        var archive = await WriteSampleAsync();
        var truncated = archive[..(int)(archive.Length * keptFraction)];

        await AssertInvalidAsync(truncated);
    }

    [TestMethod]
    public async Task AnArchiveMissingOnlyItsGzipTrailerIsRejected()
    {
        var archive = await WriteSampleAsync();

        // All tar data is intact; only the CRC32 and length trailer are cut off.
        await AssertInvalidAsync(archive[..^8]);
    }

    [TestMethod]
    public async Task FlippedBytesAreRejected()
    {
        var archive = await WriteSampleAsync();
        for (var position = archive.Length / 4; position < archive.Length - 8; position += archive.Length / 4)
        {
            var damaged = (byte[])archive.Clone();
            damaged[position] ^= 0x5a;
            await AssertInvalidAsync(damaged);
        }
    }

    [TestMethod]
    public async Task ATarWithoutEndOfArchiveMarkerIsRejected()
    {
        var tar = Decompress(await WriteSampleAsync());

        // Cut the tar stream right after the last entry's data, before the zero blocks.
        var lastNonZero = Array.FindLastIndex(tar, b => b != 0);
        var endOfData = ((lastNonZero / 512) + 1) * 512;
        var error = await AssertInvalidAsync(Compress(tar[..endOfData]));
        Assert.Contains("end-of-archive", error.Message);
    }

    [TestMethod]
    public async Task GarbageAfterTheEndOfArchiveIsRejected()
    {
        var tar = Decompress(await WriteSampleAsync()).Concat(Encoding.ASCII.GetBytes("trailing junk")).ToArray();

        await AssertInvalidAsync(Compress(tar));
    }

    [TestMethod]
    public async Task ABadHeaderChecksumIsRejected()
    {
        var tar = Decompress(await WriteSampleAsync());
        tar[50] ^= 0x01; // inside the first header's name field

        var error = await AssertInvalidAsync(Compress(tar));
        Assert.Contains("checksum", error.Message);
    }

    [TestMethod]
    public async Task DataThatIsNotGzipIsRejected()
    {
        await AssertInvalidAsync(Encoding.ASCII.GetBytes("this is not a gzip stream at all"));
    }

    [TestMethod]
    public async Task AnEmptyStreamIsRejected()
    {
        await AssertInvalidAsync([]);
    }

    [TestMethod]
    public async Task GzippedGarbageIsRejected()
    {
        var garbage = new byte[8192];
        new Random(99).NextBytes(garbage);

        await AssertInvalidAsync(Compress(garbage));
    }

    [TestMethod]
    public async Task AnArchiveMissingARootIsRejected()
    {
        var archive = Build(tar =>
        {
            tar.RootDirectory();
            tar.File($"{Prefix}/config.yml");
        });
        var roots = new[] { Root, ArchiveRoot.For("/usr/local/etc/dtr") };

        var error = await Assert.ThrowsExactlyAsync<InvalidDataException>(
            () => ConfigArchiveReader.ValidateAsync(new MemoryStream(archive), roots, TestContext.CancellationToken));
        Assert.Contains("/usr/local/etc/dtr", error.Message);
    }

    private async Task<byte[]> WriteSampleAsync()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("var/local/dtr");
        for (var i = 0; i < 20; i++)
        {
            var content = new byte[20_000 + (i * 1000)];
            new Random(i).NextBytes(content);
            File.WriteAllBytes(Path.Combine(source, $"file-{i:D2}.bin"), content);
        }

        // Sample archives use the fixed test root so the reader's root check passes.
        var archive = new MemoryStream();
        await ConfigArchiveWriter.WriteAsync([new ArchiveRoot(source, Prefix)], [], archive, null, TestContext.CancellationToken);
        var bytes = archive.ToArray();

        var valid = await ConfigArchiveReader.ValidateAsync(new MemoryStream(bytes), [Root], TestContext.CancellationToken);
        Assert.AreEqual(20, valid.Files, "The undamaged sample must be valid.");
        return bytes;
    }

    private async Task<InvalidDataException> AssertInvalidAsync(byte[] archive)
    {
        var validation = await Assert.ThrowsExactlyAsync<InvalidDataException>(
            () => ConfigArchiveReader.ValidateAsync(new MemoryStream(archive), [Root], TestContext.CancellationToken));

        using var temp = new TempDirectory();
        var staging = temp.CreateDirectory("staging");
        await Assert.ThrowsExactlyAsync<InvalidDataException>(
            () => ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), [Root], new Dictionary<string, string> { [Prefix] = staging }, true, TestContext.CancellationToken));
        return validation;
    }
}
