using RegistryDR.Backup;
using RegistryDR.Continuous;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// The base backup's preflight on a server whose WAL archiving failed: one failed attempt that
/// PostgreSQL's retry then gets through is not refused (a CI run failed a base backup on a single
/// failure at start-up), archiving that is still failing after the grace is. The grace runs on a
/// ManualTimeProvider.
/// </summary>
[TestClass]
public sealed class BaseBackupPreflightTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(3);

    /// <summary>wal-push fails while the store's WAL directory is read-only (also for its owner, the server's user).</summary>
    private static void FailArchiving(ContinuousSite site, bool fail)
    {
        var wal = Path.Combine(site.StoreDirectory!, ContinuousLayout.WalRoot.TrimEnd('/'));
        Directory.CreateDirectory(wal);
        File.SetUnixFileMode(Path.GetDirectoryName(wal)!, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(wal, fail ? (UnixFileMode)0b101_101_101 : (UnixFileMode)0b111_101_101);
    }

    private static async Task WaitUntilFailingAsync(ContinuousNode node)
    {
        var deadline = DateTime.UtcNow + Bound;
        await node.ExecuteAsync("CREATE TABLE IF NOT EXISTS preflight (id int); INSERT INTO preflight VALUES (1)");
        await node.ScalarAsync<string>("SELECT pg_walfile_name(pg_switch_wal())", "postgres");
        while (!await node.ScalarAsync<bool>("SELECT last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time) FROM pg_stat_archiver", "postgres"))
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("archiving did not fail: " + await node.ArchiverAsync());
            await Task.Delay(200);
        }
    }

    [TestMethod]
    public async Task ArchivingStillFailingAfterTheGrace_IsRefusedNamingTheSegment()
    {
        await using var site = await ContinuousSite.CreateAsync(s3: false);
        var node = await site.StartNodeAsync("a");
        FailArchiving(site, fail: true);
        await WaitUntilFailingAsync(node);
        var clock = new ManualTimeProvider(DateTimeOffset.UtcNow);

        var backup = new BaseBackupService(node.Options, site.CreateStore(), TestNode.Logger<BaseBackupService>(), clock).RunAsync();
        // Waits in 5 s steps: just before the grace ends it has not given up.
        for (var waited = TimeSpan.Zero; waited < TimeSpan.FromSeconds(85); waited += TimeSpan.FromSeconds(5))
        {
            await WaitForTimerAsync(clock, backup);
            Assert.IsFalse(backup.IsCompleted, $"refused after {waited} of the {90} s grace: {backup.Exception?.GetBaseException().Message}");
            clock.Advance(TimeSpan.FromSeconds(5));
        }
        await WaitForTimerAsync(clock, backup);
        clock.Advance(TimeSpan.FromSeconds(5));

        var failure = await Assert.ThrowsExactlyAsync<BackupFailedException>(() => backup.WaitAsync(Bound));
        StringAssert.Contains(failure.Message, "WAL archiving is failing (still after 90 s): 0000000100000000000000");
    }

    [TestMethod]
    public async Task AFailureThatTheRetryGetsThrough_IsNotRefused()
    {
        await using var site = await ContinuousSite.CreateAsync(s3: false);
        var node = await site.StartNodeAsync("a");
        FailArchiving(site, fail: true);
        await WaitUntilFailingAsync(node);
        var clock = new ManualTimeProvider(DateTimeOffset.UtcNow);

        var backup = new BaseBackupService(node.Options, site.CreateStore(), TestNode.Logger<BaseBackupService>(), clock).RunAsync();
        await WaitForTimerAsync(clock, backup);
        FailArchiving(site, fail: false);
        // A new segment wakes the archiver now rather than at its next one-minute round.
        await node.ExecuteAsync("INSERT INTO preflight VALUES (2)");
        await node.ScalarAsync<string>("SELECT pg_walfile_name(pg_switch_wal())", "postgres");
        var deadline = DateTime.UtcNow + Bound;
        while (await node.ScalarAsync<bool>("SELECT last_archived_time IS NULL OR last_failed_time > last_archived_time FROM pg_stat_archiver", "postgres"))
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("archiving did not recover: " + await node.ArchiverAsync());
            await Task.Delay(200);
        }
        clock.Advance(TimeSpan.FromSeconds(5));

        var manifest = await backup.WaitAsync(Bound);
        Assert.IsTrue(BackupLayout.IsValidBackupId(manifest.BackupId));
    }

    /// <summary>Until the preflight waits on the clock (or the backup ended, which the caller then asserts on).</summary>
    private static async Task WaitForTimerAsync(ManualTimeProvider clock, Task backup)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (clock.PendingTimers == 0 && !backup.IsCompleted)
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("the preflight never waited");
            await Task.Delay(50);
        }
    }
}
