using RegistryDR.Continuous;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// A base backup whose manifest is in the store but whose artifacts are not all there yet (S3
/// replication copies objects late and in any order; a copy by hand stopped part-way) is passed
/// over, saying why, as RestorableSets does for a logical set: a restore to latest starts from the
/// older base backup and replays the WAL through the newer one's time, instead of choosing the
/// newer one and failing on its missing archive.
/// </summary>
[TestClass]
public sealed class PartlyReplicatedBaseBackupTests
{
    [TestMethod]
    public async Task ABaseBackupWithAMissingArtifact_IsPassedOver_AndLatestStillReachesTheEndOfTheWal()
    {
        await using var site = await ContinuousSite.CreateAsync(s3: false);
        var a = await site.StartNodeAsync("a");
        var store = site.CreateStore();
        var older = await new BaseBackupService(a.Options, store, TestNode.Logger<BaseBackupService>(), TimeProvider.System).RunAsync();
        await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES (1, 'a', '{PushLoad.Payload(1)}')");
        var newer = await new BaseBackupService(a.Options, store, TestNode.Logger<BaseBackupService>(), TimeProvider.System).RunAsync();
        await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES (2, 'a', '{PushLoad.Payload(2)}')");
        await a.SwitchAndWaitArchivedAsync();
        var expected = await DatabaseSnapshot.CaptureAsync(a.ConnectionString());
        // The newer base backup's pg_basebackup archive has not arrived (its manifest and config archive have).
        File.Delete(Path.Combine(site.StoreDirectory!, ContinuousLayout.BaseKey(newer.BackupId)));

        var b = await site.StartNodeAsync("b", empty: true);
        var service = new ContinuousRestoreService(b.Options, b.CreateStore(), TestNode.Logger<ContinuousRestoreService>(), TimeProvider.System);
        var dryRun = await service.PlanAsync(new PointInTimeRequest(RecoveryTarget.Latest), CancellationToken.None);
        // Rules out choosing the newest manifest regardless of its artifacts: the plan would start from the newer set.
        Assert.AreEqual(older.BackupId, dryRun.Plan.Base.BackupId);
        Assert.AreEqual($"Base backup {newer.BackupId} is passed over: 1 of its 2 artifacts are missing or not whole yet: {ContinuousLayout.BaseKey(newer.BackupId)} is not in the store",
            dryRun.Steps[0]);

        var result = await service.RestoreAsync(new PointInTimeRequest(RecoveryTarget.Latest));
        Assert.AreEqual(older.BackupId, result.Plan.Base.BackupId);
        Assert.IsNull(expected.FirstDifference(await DatabaseSnapshot.CaptureAsync(b.ConnectionString())), "latest replays through the newer base backup's time to the end of the WAL");
    }
}
