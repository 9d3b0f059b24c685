using RegistryDR.Continuous;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// A node that was replaced but keeps running (a partition, an instance that did not die) and keeps
/// writing: its archive attempts are refused and counted, and nothing of it reaches the chain of
/// the node that took over — neither that node's restore to latest nor a later point-in-time
/// restore in its era. File store and Ceph S3.
/// </summary>
[TestClass]
public sealed class ZombieNodeTests
{
    [TestMethod]
    [DataRow(false, DisplayName = "file store")]
    [DataRow(true, DisplayName = "Ceph S3")]
    public async Task AZombieThatKeepsArchiving_IsRefusedAndCounted_AndTheNewChainIgnoresIt(bool s3)
    {
        await using var site = await ContinuousSite.CreateAsync(s3);
        var a = await site.StartNodeAsync("a");
        var store = site.CreateStore();
        await new BaseBackupService(a.Options, store, TestNode.Logger<BaseBackupService>(), TimeProvider.System).RunAsync();
        await InsertAsync(a, 1, 20, "a");
        await a.SwitchAndWaitArchivedAsync();

        // Node b replaces a; a does not die.
        var b = await site.StartNodeAsync("b", empty: true);
        var takeover = await new ContinuousRestoreService(b.Options, b.CreateStore(), TestNode.Logger<ContinuousRestoreService>(), TimeProvider.System)
            .RestoreAsync(new PointInTimeRequest(RecoveryTarget.Latest));
        Assert.AreEqual(1, takeover.Generation!.Number);
        Assert.AreEqual(20L, await b.ScalarAsync<long>("SELECT count(*) FROM pushes"));

        // The zombie goes on taking pushes and switching WAL: every attempt to archive is refused
        // (the archiver retries the oldest file it has not archived, so the first of the zombie's).
        var lastRead = takeover.Plan.LastSegment!.File;
        var failedBefore = await a.ScalarAsync<long>("SELECT failed_count FROM pg_stat_archiver", "postgres");
        await InsertAsync(a, 21, 30, "zombie");
        var zombieSegment = await a.ScalarAsync<string>("SELECT pg_walfile_name(pg_switch_wal())", "postgres");
        await KilledNodeTests.WaitUntilAsync(async () => await a.ScalarAsync<long>("SELECT failed_count FROM pg_stat_archiver", "postgres") > failedBefore,
            TimeSpan.FromMinutes(3), "the zombie's first refused archive attempt");
        var refused = await a.ScalarAsync<string>("SELECT last_failed_wal FROM pg_stat_archiver", "postgres");
        Assert.IsTrue(string.CompareOrdinal(refused, lastRead.Name) > 0 && string.CompareOrdinal(refused, zombieSegment) <= 0,
            $"the refused file {refused} is WAL the zombie wrote after b read up to {lastRead.Name}");
        StringAssert.Contains(File.ReadAllText(a.Cluster.LogFile), $"Refused to archive {refused}: a node took over this store (generation 1 was taken by");

        // Node b works on; a moment in its era is recorded with the database as it was.
        await InsertAsync(b, 21, 35, "b");
        var snapshot = await DatabaseSnapshot.CaptureAsync(b.ConnectionString());
        var moment = new DateTimeOffset(await b.ScalarAsync<DateTime>("SELECT clock_timestamp()"), TimeSpan.Zero);
        await InsertAsync(b, 36, 40, "b");
        await b.SwitchAndWaitArchivedAsync();
        await InsertAsync(a, 31, 40, "zombie"); // and the zombie still writes
        await a.ExecuteAsync("SELECT pg_switch_wal()", "postgres");
        var zombieFailures = await a.ScalarAsync<long>("SELECT failed_count FROM pg_stat_archiver", "postgres");
        Assert.IsTrue(zombieFailures > failedBefore, $"every attempt of the zombie is counted (pg_stat_archiver.failed_count {zombieFailures})");
        foreach (var name in new[] { refused, zombieSegment })
            Assert.AreEqual(0, (await new ContinuousCatalog(store).FindWalAsync(name, default)).Count, $"the zombie's {name} is not in the store");

        // b's chain restores to latest without a trace of the zombie...
        var c = await site.StartNodeAsync("c", empty: true);
        var service = new ContinuousRestoreService(c.Options, c.CreateStore(), TestNode.Logger<ContinuousRestoreService>(), TimeProvider.System);
        var latest = await service.RestoreAsync(new PointInTimeRequest(RecoveryTarget.Latest));
        Assert.AreEqual(3u, latest.Recovered!.Timeline, "b's timeline 2, then c's own");
        var rows = await KilledNodeTests.ReadPushesAsync(c);
        CollectionAssert.AreEqual(Enumerable.Range(1, 40).Select(i => (long)i).ToList(), rows.Select(r => r.Id).ToList());
        Assert.AreEqual(0, await c.ScalarAsync<long>("SELECT count(*) FROM pushes WHERE node = 'zombie'"));
        Assert.AreEqual(20, await c.ScalarAsync<long>("SELECT count(*) FROM pushes WHERE node = 'b'"));

        // ...and to the moment in b's era exactly (on the same node, now a live one).
        await service.RestoreAsync(new PointInTimeRequest(new RecoveryTarget(moment)));
        Assert.IsNull(snapshot.FirstDifference(await DatabaseSnapshot.CaptureAsync(c.ConnectionString())), "the restore to b's recorded moment equals b's snapshot at it");
    }

    private static async Task InsertAsync(ContinuousNode node, int from, int to, string who)
    {
        for (var i = from; i <= to; i++)
            await node.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES ({i}, '{who}', '{PushLoad.Payload(i)}')");
    }
}
