using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Backup;

/// <summary>
/// The split tables' block ranges are zstd by default and gzip in older sets (or by choice): each
/// range records its codec in the manifest, sets without the record still restore, and verify and
/// restore refuse a damaged range of either codec even when the manifest's size and SHA-256 were
/// made to match the damage (the codec's own checks, or binary COPY's trailer, must catch it).
/// </summary>
[TestClass]
public sealed class RangeCompressionTests
{
    private const string BackupId = Fuzz.ManifestFuzzTests.BackupId;

    private static async Task<TestNode> CreateSplittingNodeAsync(string storeDir, RangeCompressionCodec codec)
    {
        var node = await TestNode.CreateAsync("file://" + storeDir);
        // Every table of 8 kB or more is split, in ranges of 4 pages.
        node.Options.Database.SplitTablesFromMiB = 8.0 / 1024;
        node.Options.Database.RangeMiB = 32.0 / 1024;
        node.Options.Database.RangeCompression = codec;
        return node;
    }

    [TestMethod]
    public async Task ZstdIsTheDefault_EveryRangeRecordsIt_AndTheSetRestoresExactly()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        node.Options.Database.SplitTablesFromMiB = 8.0 / 1024;
        node.Options.Database.RangeMiB = 32.0 / 1024;
        var store = node.CreateStore();
        var before = await RegistrySchema.SnapshotAsync(node.ConnectionString);

        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();

        var ranges = manifest.Artifacts.Where(a => BackupLayout.IsTableDataArtifact(a.Name)).ToList();
        Assert.IsGreaterThan(3, ranges.Count);
        foreach (var range in ranges)
        {
            Assert.AreEqual("zstd", range.Compression, range.Name);
            Assert.AreEqual(BackupLayout.SetPrefix(manifest.BackupId) + "data/" + range.Name["data-".Length..] + ".copy.zst", range.Key);
            // RFC 8878 frame magic, and the frame header's content-checksum flag (bit 2 of the descriptor).
            var bytes = await File.ReadAllBytesAsync(Path.Combine(storeDir.Path, range.Key));
            CollectionAssert.AreEqual(new byte[] { 0x28, 0xb5, 0x2f, 0xfd }, bytes[..4], range.Name);
            Assert.AreEqual(0x04, bytes[4] & 0x04, $"{range.Name} has no content checksum");
        }
        var json = JsonNode.Parse(await File.ReadAllBytesAsync(Path.Combine(storeDir.Path, BackupLayout.ManifestKey(manifest.BackupId))))!;
        Assert.AreEqual(4, (int)json["formatVersion"]!);
        Assert.IsNull(json["artifacts"]!.AsArray().Single(a => (string?)a!["name"] == "database")!["compression"], "only ranges record a codec");

        var report = await new BackupVerifier(store, node.Options.Database, TestNode.Logger<BackupVerifier>()).VerifyAsync(manifest);
        foreach (var check in report.Artifacts.Where(a => BackupLayout.IsTableDataArtifact(a.Name)))
            StringAssert.EndsWith(check.Detail, " bytes (zstd)", check.Name);

        await node.WipeAsync();
        await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest"));
        Assert.IsNull(before.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)), "database after restore differs");
    }

    /// <summary>A set written before ranges recorded their codec (format 3, ".copy.gz", no "compression") restores with zstd configured.</summary>
    [TestMethod]
    public async Task ASetWhoseRangesRecordNoCodec_IsReadAsGzip_AndRestoresExactly()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await CreateSplittingNodeAsync(storeDir.Path, RangeCompressionCodec.Gzip);
        var store = node.CreateStore();
        var before = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        var written = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        Assert.IsTrue(written.Artifacts.Where(a => BackupLayout.IsTableDataArtifact(a.Name)).All(a => a.Compression == "gzip" && a.Key.EndsWith(".copy.gz", StringComparison.Ordinal)));

        // What registry-dr wrote before format 4: the same set, without the codec.
        var manifestPath = Path.Combine(storeDir.Path, BackupLayout.ManifestKey(written.BackupId));
        var json = JsonNode.Parse(await File.ReadAllBytesAsync(manifestPath))!.AsObject();
        json["formatVersion"] = 3;
        foreach (var artifact in json["artifacts"]!.AsArray()) artifact!.AsObject().Remove("compression");
        await File.WriteAllTextAsync(manifestPath, json.ToJsonString());
        node.Options.Database.RangeCompression = RangeCompressionCodec.Zstd;

        var old = await new BackupCatalog(store).ReadManifestAsync(written.BackupId, CancellationToken.None);
        Assert.AreEqual(3, old.FormatVersion);
        Assert.IsTrue(old.Artifacts.All(a => a.Compression is null));
        var report = await new BackupVerifier(store, node.Options.Database, TestNode.Logger<BackupVerifier>()).VerifyAsync(old);
        Assert.IsTrue(report.Artifacts.Where(a => BackupLayout.IsTableDataArtifact(a.Name)).All(a => a.Detail.EndsWith(" bytes (gzip)", StringComparison.Ordinal)));

        await node.WipeAsync();
        await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest(written.BackupId));
        Assert.IsNull(before.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)), "database after restore differs");
    }

    /// <summary>
    /// The range's bytes are damaged and the manifest rewritten to match them (size and SHA-256),
    /// so only the codec (zstd's frame end and content checksum, gzip's CRC-32) or the binary COPY
    /// trailer can tell. .NET's gzip reader does not notice a cut stream: the trailer check does.
    /// </summary>
    [TestMethod]
    [DataRow(RangeCompressionCodec.Zstd, "flip", "is not valid zstd")]
    [DataRow(RangeCompressionCodec.Zstd, "cut", "is not valid zstd")]
    [DataRow(RangeCompressionCodec.Gzip, "flip", "is not valid gzip")]
    [DataRow(RangeCompressionCodec.Gzip, "cut", "does not hold a whole binary COPY stream")]
    public async Task ADamagedRangeWhoseManifestMatchesTheDamage_IsRefusedByVerifyAndRestore(RangeCompressionCodec codec, string damage, string expected)
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await CreateSplittingNodeAsync(storeDir.Path, codec);
        var store = node.CreateStore();
        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var range = manifest.Artifacts.Where(a => BackupLayout.IsTableDataArtifact(a.Name)).MaxBy(a => a.Size)!;
        var path = Path.Combine(storeDir.Path, range.Key);
        var bytes = await File.ReadAllBytesAsync(path);
        if (damage == "flip") bytes[bytes.Length / 2] ^= 0x10;
        else bytes = bytes[..(bytes.Length / 2)];
        await File.WriteAllBytesAsync(path, bytes);
        var matching = range with { Size = bytes.Length, Sha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)) };
        var tampered = manifest with { Artifacts = manifest.Artifacts.Select(a => a.Name == range.Name ? matching : a).ToList() };
        await File.WriteAllBytesAsync(Path.Combine(storeDir.Path, BackupLayout.ManifestKey(manifest.BackupId)), tampered.ToJson());

        var verify = await Assert.ThrowsExactlyAsync<ArtifactCorruptException>(() =>
            new BackupVerifier(store, node.Options.Database, TestNode.Logger<BackupVerifier>()).VerifyAsync(tampered));
        Assert.AreEqual(range.Name, verify.Artifact);
        StringAssert.Contains(verify.Message, $"artifact '{range.Name}' is corrupt: {range.Key} {expected}");

        await ExecAsync(node, "INSERT INTO tags (repository_id, manifest_id, name, pushed_at) SELECT repository_id, id, 'after-the-backup', now() FROM manifests LIMIT 1");
        var live = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        var failed = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() =>
            new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest(manifest.BackupId, TerminateSessions: true)));
        StringAssert.Contains(failed.NodeState, "was not touched");
        Assert.IsNull(live.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)), "the failed restore changed the live database");
    }

    [TestMethod]
    [DataRow("data-0000-00000", "lz4")]
    [DataRow("data-0000-00000", "ZSTD")]
    [DataRow("data-0000-00000", "")]
    [DataRow("database", "zstd")]
    [DataRow("config", "gzip")]
    public void ACodecThisRegistryDrCannotRead_OrOnAnArtifactItDoesNotCompress_IsRefused(string artifact, string compression)
    {
        var manifest = JsonNode.Parse(Fuzz.ManifestFuzzTests.ValidManifest)!.AsObject();
        manifest["artifacts"]!.AsArray().Single(a => (string?)a!["name"] == artifact)!["compression"] = compression;
        var error = Assert.ThrowsExactly<InvalidManifestException>(() => BackupManifest.Parse(Encoding.UTF8.GetBytes(manifest.ToJsonString()), BackupId));
        Assert.AreEqual($"The manifest of backup {BackupId} is refused: artifact '{artifact}' says it is compressed with '{compression}': only table-data artifacts record a codec, and this registry-dr reads 'zstd' and 'gzip'.", error.Message);
    }

    [TestMethod]
    public void ARangeRecordsItsCodec_AndOneWithoutARecordIsGzip()
    {
        var manifest = BackupManifest.Parse(Encoding.UTF8.GetBytes(Fuzz.ManifestFuzzTests.ValidManifest), BackupId);
        Assert.AreEqual("zstd", manifest.Find("data-0000-00000")!.RangeCompression);
        Assert.IsNull(manifest.Find("data-0000-00001")!.Compression);
        Assert.AreEqual("gzip", manifest.Find("data-0000-00001")!.RangeCompression);
        Assert.AreEqual($"backups/{BackupId}/data/0000-00001.copy.zst", BackupLayout.ArtifactKey(BackupId, "data-0000-00001", ArtifactCompression.Zstd));
        Assert.AreEqual($"backups/{BackupId}/data/0000-00001.copy.gz", BackupLayout.ArtifactKey(BackupId, "data-0000-00001", ArtifactCompression.Gzip));
    }

    private static async Task ExecAsync(TestNode node, string sql)
    {
        await using var c = new Npgsql.NpgsqlConnection(node.ConnectionString);
        await c.OpenAsync();
        await using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        await cmd.ExecuteNonQueryAsync();
    }
}
