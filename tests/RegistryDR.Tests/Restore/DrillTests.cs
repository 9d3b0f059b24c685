using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Restore;

/// <summary>A drill rehearses the restore for real and leaves the live node exactly as it was.</summary>
[TestClass]
public sealed class DrillTests
{
    private static async Task<int> CountScratchAsync(TestNode node)
    {
        await using var c = new Npgsql.NpgsqlConnection(node.Cluster.ConnectionString());
        await c.OpenAsync();
        await using var cmd = c.CreateCommand();
        // This node's drill database only: other classes' drills run in parallel on the shared cluster.
        cmd.CommandText = "SELECT count(*) FROM pg_database WHERE datname = $1";
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter { Value = DrillService.DrillDatabaseFor(node.Database) });
        return (int)(long)(await cmd.ExecuteScalarAsync())!;
    }

    [TestMethod]
    public async Task Drill_LoadsAndChecksTheNewestSet_AndCleansUp_LeavingTheLiveNodeUntouched()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var store = node.CreateStore();
        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var live = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        var tree = DirectorySnapshot.Take(node.ConfigDirectories[0]);

        var report = await new DrillService(node.Options, store, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System).RunAsync();

        Assert.IsTrue(report.Succeeded, report.Failure);
        Assert.AreEqual(manifest.BackupId, report.BackupId);
        Assert.AreEqual(manifest.Fingerprint!.RowCounts.Count, report.Tables);
        Assert.AreEqual(manifest.Fingerprint.RowCounts.Values.Sum(), report.Rows);
        Assert.IsGreaterThan(0L, report.ConfigFiles);
        Assert.AreEqual(0, await CountScratchAsync(node), "the scratch database is dropped");
        Assert.IsEmpty(Directory.GetDirectories(node.Options.Restore.StagingDirectory!), "the scratch directory is removed");
        Assert.IsNull(live.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)));
        Assert.IsNull(tree.FirstDifference(DirectorySnapshot.Take(node.ConfigDirectories[0])));
    }

    [TestMethod]
    public async Task Drill_OfACorruptSet_FailsNamingTheArtifact_AndStillCleansUp()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var store = node.CreateStore();
        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var counts = manifest.Fingerprint!.RowCounts.ToDictionary();
        counts["public.events"] -= 1;
        File.WriteAllBytes(Path.Combine(storeDir, BackupLayout.ManifestKey(manifest.BackupId)),
            (manifest with { Fingerprint = new BackupManifest.FingerprintInfo { RowCounts = counts } }).ToJson());

        var report = await new DrillService(node.Options, store, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System).RunAsync();
        Assert.IsFalse(report.Succeeded);
        StringAssert.Contains(report.Failure, "table public.events has");
        Assert.AreEqual(0, await CountScratchAsync(node));
    }

    [TestMethod]
    public async Task ADrillsResult_IsAMetric()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var store = node.CreateStore();
        await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var metrics = new RegistryDR.Monitoring.OperationMetrics(TimeProvider.System);
        var report = await new DrillService(node.Options, store, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System, metrics).RunAsync();
        Assert.IsTrue(report.Succeeded, report.Failure);
        var text = RegistryDR.Monitoring.PrometheusExposition.Render(metrics.Read(), DateTimeOffset.UtcNow, "test");
        StringAssert.Contains(text, "registrydr_drills_total{result=\"success\"} 1");
        StringAssert.Contains(text, "registrydr_drill_last_success_timestamp_seconds ");
        // A passed drill marks the set verified, which retention then protects.
        CollectionAssert.Contains((await RegistryDR.Retention.VerificationRecord.ReadVerifiedIdsAsync(store, CancellationToken.None)).ToList(), report.BackupId);
    }
}
