using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Backup;

/// <summary>The manifest's fingerprint, taken in pg_dump's own snapshot, is what a restore is checked against.</summary>
[TestClass]
public sealed class IntegrityTests
{
    private static async Task ExecAsync(TestNode node, string sql)
    {
        await using var c = new Npgsql.NpgsqlConnection(node.ConnectionString);
        await c.OpenAsync();
        await using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        await cmd.ExecuteNonQueryAsync();
    }

    [TestMethod]
    public async Task Fingerprint_RecordsEveryTablesRows_AsDumped()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var snapshot = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        var manifest = await new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        Assert.IsNotNull(manifest.Fingerprint);
        foreach (var table in RegistrySchema.Tables)
            Assert.AreEqual((long)snapshot.RowCount(table), manifest.Fingerprint.RowCounts["public." + table], table);
        Assert.IsEmpty(manifest.Warnings);
    }

    [TestMethod]
    public async Task RestoredRowsThatDoNotMatchTheFingerprint_AreRefused_BeforeTheNodeIsTouched()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var store = node.CreateStore();
        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        // A manifest whose counts disagree with its dump: what a dump missing rows would look like.
        var counts = manifest.Fingerprint!.RowCounts.ToDictionary();
        counts["public.tags"] += 1;
        var tampered = manifest with { Fingerprint = new BackupManifest.FingerprintInfo { RowCounts = counts } };
        File.WriteAllBytes(Path.Combine(storeDir, BackupLayout.ManifestKey(manifest.BackupId)), tampered.ToJson());
        var before = await RegistrySchema.SnapshotAsync(node.ConnectionString);

        var ex = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() =>
            new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)));
        Assert.IsInstanceOfType<ArtifactCorruptException>(ex.InnerException);
        StringAssert.Contains(ex.Message, "table public.tags has");
        StringAssert.Contains(ex.NodeState, "was not touched");
        Assert.IsNull(before.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)));
    }

    [TestMethod]
    public async Task ADumpFarSmallerThanThePrevious_OrAnEmptyDatabase_IsFlagged()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var service = new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System);
        var first = await service.RunAsync();
        Assert.IsEmpty(first.Warnings);

        await ExecAsync(node, "TRUNCATE events, manifest_layers, layers, tags, manifests CASCADE");
        var shrunk = await service.RunAsync();
        Assert.HasCount(1, shrunk.Warnings);
        StringAssert.Contains(shrunk.Warnings[0], $"of the previous set {first.BackupId}");
        StringAssert.Contains(shrunk.Warnings[0], "rows went from");

        await ExecAsync(node, "DO $$DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP EXECUTE 'TRUNCATE ' || quote_ident(t) || ' CASCADE'; END LOOP; END$$");
        var empty = await service.RunAsync();
        Assert.IsTrue(empty.Warnings.Contains("the database's tables hold no rows"), string.Join("; ", empty.Warnings));
    }
}
