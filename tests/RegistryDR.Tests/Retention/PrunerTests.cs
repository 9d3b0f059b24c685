using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Retention;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using static RegistryDR.Tests.Retention.RetentionTestSupport;

namespace RegistryDR.Tests.Retention;

/// <summary>The pruner against a real <see cref="FileSystemStore"/> holding sets written by hand.</summary>
[TestClass]
public sealed class PrunerTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);
    private string _dir = "";
    private FileSystemStore _store = null!;

    [TestInitialize]
    public void Init()
    {
        _dir = Directory.CreateTempSubdirectory("rdr-prune-").FullName;
        _store = new FileSystemStore(_dir);
    }

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    /// <summary>One complete set a day for 30 days, plus a running set, a failed set inside the grace and two abandoned ones.</summary>
    private async Task<(List<string> complete, string running, string recentFailure, List<string> abandoned)> ThirtyDaysAsync()
    {
        var complete = new List<string>();
        for (var day = 29; day >= 0; day--)
            complete.Add(await WriteSetAsync(_store, Now.AddDays(-day).AddHours(-1)));
        var running = await WriteSetAsync(_store, Now.AddMinutes(-5), complete: false);
        var recentFailure = await WriteSetAsync(_store, Now.AddHours(-20), complete: false);
        var abandoned = new List<string> { await WriteSetAsync(_store, Now.AddHours(-30), complete: false), await WriteSetAsync(_store, Now.AddDays(-20), complete: false) };
        return (complete, running, recentFailure, abandoned);
    }

    private static Pruner Pruner(IBackupStore store, RetentionOptions options, ILogger<Pruner>? logger = null) =>
        new(store, options, new ManualTimeProvider(Now), logger ?? new ListLogger<Pruner>());

    private static RetentionOptions Small => new() { KeepLast = 3, KeepDailyDays = 5, KeepWeeklyWeeks = 3 };

    [TestMethod]
    public async Task DryRun_DeletesNothing()
    {
        await ThirtyDaysAsync();
        var before = await KeysAsync(_store);

        var plan = await Pruner(_store, Small).PruneAsync(dryRun: true, CancellationToken.None);

        Assert.IsGreaterThan(20, plan.DeleteCount);
        CollectionAssert.AreEqual(before, await KeysAsync(_store));
    }

    [TestMethod]
    public async Task RealRun_DeletesExactlyThePlannedSets_ManifestFirst_AndLogsEachOne()
    {
        var (complete, running, recentFailure, abandoned) = await ThirtyDaysAsync();
        var dryPlan = await Pruner(_store, Small).PruneAsync(dryRun: true, CancellationToken.None);
        var keysBefore = await KeysAsync(_store);
        var recording = new InstrumentedStore(_store);
        var logger = new ListLogger<Pruner>();

        var plan = await Pruner(recording, Small, logger).PruneAsync(dryRun: false, CancellationToken.None);

        Assert.AreEqual(dryPlan.Render(), plan.Render(), "a dry run shows exactly what a real run does");
        var kept = plan.Ids(RetentionAction.Keep);
        var deleted = plan.Ids(RetentionAction.Delete);
        // Newest 3, daily for 5 days (2 more), the Sundays ending the two previous weeks (8th and 15th: 2 more).
        Assert.HasCount(7 + 2, kept);
        CollectionAssert.IsSubsetOf(new[] { running, recentFailure, complete[^1] }, kept);
        CollectionAssert.IsSubsetOf(abandoned, deleted);

        var remaining = await KeysAsync(_store);
        CollectionAssert.AreEqual(keysBefore.Where(k => kept.Any(id => k.StartsWith(BackupLayout.SetPrefix(id), StringComparison.Ordinal))).ToList(), remaining,
            "every object of every kept set is still there, and nothing else");
        foreach (var id in deleted)
            Assert.IsFalse(Directory.Exists(Path.Combine(_dir, "backups", id)), $"{id} left a directory behind");
        CollectionAssert.AreEquivalent(kept, (await new BackupCatalog(_store).ListAsync(CancellationToken.None)).Select(s => s.BackupId).ToList());

        foreach (var id in deleted.Where(complete.Contains))
            Assert.AreEqual(BackupLayout.ManifestKey(id), recording.Deleted.First(k => k.StartsWith(BackupLayout.SetPrefix(id), StringComparison.Ordinal)), $"{id}: the manifest must go first");

        var lines = logger.Entries.Where(e => e.Message.StartsWith("Retention deleted backup set", StringComparison.Ordinal)).Select(e => e.Message).ToList();
        Assert.HasCount(deleted.Count, lines);
        Assert.Contains($"Retention deleted backup set {abandoned[0]}: incomplete, older than grace", lines);
        Assert.Contains($"Retention deleted backup set {complete[0]}: older than every rule", lines);
        Assert.Contains($"Retention on {_store.Description}: kept 9 set(s), deleted {deleted.Count}, failed to delete 0", logger.Entries.Select(e => e.Message).ToList());
    }

    [TestMethod]
    public async Task NewestVerifiedSet_SurvivesKeepLastOne_EvenThoughItIsNotTheNewest()
    {
        var ids = new List<string>();
        for (var day = 5; day >= 0; day--)
            ids.Add(await WriteSetAsync(_store, Now.AddDays(-day).AddHours(-1)));
        var time = new ManualTimeProvider(Now);
        await VerificationRecord.WriteAsync(_store, ids[1], "verify", time, CancellationToken.None);   // older verified: not protected
        await VerificationRecord.WriteAsync(_store, ids[3], "drill", time, CancellationToken.None);    // newest verified
        var options = new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 };

        var plan = await Pruner(_store, options).PruneAsync(dryRun: false, CancellationToken.None);

        CollectionAssert.AreEquivalent(new[] { ids[5], ids[3] }, plan.Ids(RetentionAction.Keep));
        var left = await new BackupCatalog(_store).ListAsync(CancellationToken.None);
        CollectionAssert.AreEqual(new[] { ids[5], ids[3] }, left.Select(s => s.BackupId).ToList());
        Assert.IsTrue(left.All(s => s.IsComplete));
        CollectionAssert.AreEqual(new[] { ids[3] }, (await VerificationRecord.ReadVerifiedIdsAsync(_store, CancellationToken.None)).ToList(),
            "the older set's record went with it");

        // Pruning again changes nothing.
        var again = await Pruner(_store, options).PruneAsync(dryRun: false, CancellationToken.None);
        Assert.AreEqual(0, again.DeleteCount);
    }

    [TestMethod]
    public async Task ARecordWithoutAManifest_IsAnIncompleteSet_DeletedAfterTheGraceWithIt()
    {
        var good = await WriteSetAsync(_store, Now.AddDays(-3));
        var time = new ManualTimeProvider(Now);
        var oldOrphan = BackupLayout.NewBackupId(Now.AddDays(-2));
        var newOrphan = BackupLayout.NewBackupId(Now.AddHours(-2));
        await VerificationRecord.WriteAsync(_store, oldOrphan, "verify", time, CancellationToken.None);
        await VerificationRecord.WriteAsync(_store, newOrphan, "verify", time, CancellationToken.None);

        var plan = await Pruner(_store, new RetentionOptions { KeepLast = 1 }).PruneAsync(dryRun: false, CancellationToken.None);

        CollectionAssert.AreEqual(new[] { oldOrphan }, plan.Ids(RetentionAction.Delete));
        CollectionAssert.AreEqual(new[] { "newest 1", "daily 2026-11-19", "weekly 2026-W47", "only complete set" },
            plan.Sets.Single(s => s.BackupId == good).Reasons.ToArray());
        Assert.IsEmpty(await KeysAsync(_store, BackupLayout.SetPrefix(oldOrphan)));
        Assert.HasCount(1, await KeysAsync(_store, BackupLayout.SetPrefix(newOrphan)));
    }

    [TestMethod]
    public async Task AFailedDelete_IsReported_AndTheOtherSetsStillGo()
    {
        var ids = new List<string>();
        for (var day = 4; day >= 0; day--)
            ids.Add(await WriteSetAsync(_store, Now.AddDays(-day).AddHours(-1)));
        var stuck = ids[1];
        var stuckDump = BackupLayout.ArtifactKey(stuck, BackupLayout.DatabaseArtifact);
        var failing = new InstrumentedStore(_store, key => key == stuckDump);
        var options = new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 };
        var logger = new ListLogger<Pruner>();

        var error = await Assert.ThrowsExactlyAsync<PruneFailedException>(() => Pruner(failing, options, logger).PruneAsync(dryRun: false, CancellationToken.None));

        CollectionAssert.AreEqual(new[] { stuck }, error.FailedBackupIds.ToList());
        StringAssert.Contains(error.Message, $"could not delete 1 of 4 backup set(s) in {_store.Description}: {stuck} (");
        StringAssert.Contains(error.Message, stuckDump);
        Assert.AreEqual(4, error.Plan.DeleteCount);
        Assert.IsTrue(logger.Entries.Any(e => e.Level == LogLevel.Error && e.Message.Contains(stuck, StringComparison.Ordinal)));

        // The manifest went first, so what is left can never be restored, and it is not listed as complete.
        var left = await new BackupCatalog(_store).ListAsync(CancellationToken.None);
        CollectionAssert.AreEqual(new[] { ids[4], stuck }, left.Select(s => s.BackupId).ToList());
        Assert.AreEqual(BackupSetState.Incomplete, left[1].State);

        // Once the store lets go, the next prune removes the remains (they are days past the grace).
        var plan = await Pruner(_store, options).PruneAsync(dryRun: false, CancellationToken.None);
        CollectionAssert.AreEqual(new[] { "incomplete, older than grace" }, plan.Sets.Single(s => s.BackupId == stuck).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { ids[4] }, (await new BackupCatalog(_store).ListAsync(CancellationToken.None)).Select(s => s.BackupId).ToList());
    }

    [TestMethod]
    public async Task AManifestThatCannotBeDeleted_LeavesTheSetWhole()
    {
        var older = await WriteSetAsync(_store, Now.AddDays(-2));
        var newer = await WriteSetAsync(_store, Now.AddDays(-1));
        var failing = new InstrumentedStore(_store, key => key == BackupLayout.ManifestKey(older));

        await Assert.ThrowsExactlyAsync<PruneFailedException>(() =>
            Pruner(failing, new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 }).PruneAsync(dryRun: false, CancellationToken.None));

        var left = await new BackupCatalog(_store).ListAsync(CancellationToken.None);
        CollectionAssert.AreEqual(new[] { newer, older }, left.Select(s => s.BackupId).ToList());
        Assert.IsTrue(left.All(s => s.IsComplete && s.Objects == 4));
    }
    [TestMethod]
    public async Task FencedSetsNewerThanTheRegionsOwn_NeitherTakeTheKeepRulesPlaces_NorPushTheRestorableNewestOut()
    {
        var ct = CancellationToken.None;
        var time = new ManualTimeProvider(Now);
        var ledger = new RegistryDR.Fencing.GenerationLedger(_store, time);
        var (state1, state2) = (Path.Combine(_dir, "..", Path.GetFileName(_dir) + "-node1.json"), Path.Combine(_dir, "..", Path.GetFileName(_dir) + "-node2.json"));
        try
        {
            // Region 1 backs up; region 2 takes over from that set and backs up once; region 1's
            // node comes back (generation 2 in epoch 0) and writes two sets newer than region 2's.
            Assert.AreEqual(1, (await ledger.TakeAndRecordAsync(state1, "first-boot", "i-r1", null, ct, "us-east-1")).Number);
            var before = await Backup.SyntheticSets.WriteAsync(_store, Now.AddDays(-3), generation: 1);
            Assert.AreEqual(1_000_001, (await ledger.TakeAndRecordAsync(state2, "takeover", "i-r2", before, ct, "us-west-2", takeOver: true)).Number);
            var region2 = await Backup.SyntheticSets.WriteAsync(_store, Now.AddDays(-2), generation: 1_000_001);
            var oldFenced = await Backup.SyntheticSets.WriteAsync(_store, Now.AddHours(-25), generation: 1);
            var newFenced = await Backup.SyntheticSets.WriteAsync(_store, Now.AddHours(-1), generation: 1);

            var plan = await Pruner(_store, new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 }).PruneAsync(dryRun: false, ct);

            CollectionAssert.AreEqual(
                new[]
                {
                    (newFenced, RetentionAction.Keep, "FENCED, kept 1 day(s) for inspection"),
                    (oldFenced, RetentionAction.Delete, "FENCED, older than 1 day(s)"),
                    (region2, RetentionAction.Keep, "newest 1"),
                    (before, RetentionAction.Delete, "older than every rule"),
                },
                plan.Sets.Select(d => (d.BackupId, d.Action, string.Join("; ", d.Reasons))).ToList());
            var left = await new RestorableSets(_store).ListAsync(ct);
            CollectionAssert.AreEqual(new[] { $"{newFenced} (FENCED)", $"{region2} (complete)" }, left.Select(j => $"{j.BackupId} ({j.Label})").ToList());
            Assert.AreEqual(region2, (await new RestorableSets(_store).SelectNewestAsync(ct)).Newest!.BackupId);
        }
        finally
        {
            File.Delete(state1);
            File.Delete(state2);
        }
    }

    [TestMethod]
    public async Task CorruptSets_NeitherTakeTheKeepRulesPlaces_NorPushTheRestorableNewestOut()
    {
        // Rules out retention that counts a set a read-back found rotten as one of the newest N:
        // with KeepLast 1 it would keep the rotten newest and delete the only good set.
        var ct = CancellationToken.None;
        var time = new ManualTimeProvider(Now);
        var good = await Backup.SyntheticSets.WriteAsync(_store, Now.AddDays(-2));
        var oldRotten = await Backup.SyntheticSets.WriteAsync(_store, Now.AddHours(-25));
        var newRotten = await Backup.SyntheticSets.WriteAsync(_store, Now.AddHours(-1));
        foreach (var id in new[] { oldRotten, newRotten })
            await CorruptionRecord.TryWriteAsync(_store, id, "verify", "artifact 'database' is corrupt: test", time, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, ct);

        var plan = await Pruner(_store, new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 }).PruneAsync(dryRun: false, ct);

        CollectionAssert.AreEqual(
            new[]
            {
                (newRotten, RetentionAction.Keep, "CORRUPT, kept 1 day(s) for inspection"),
                (oldRotten, RetentionAction.Delete, "CORRUPT, older than 1 day(s)"),
                (good, RetentionAction.Keep, "newest 1; only complete set"),
            },
            plan.Sets.Select(d => (d.BackupId, d.Action, string.Join("; ", d.Reasons))).ToList());
        Assert.AreEqual(good, (await new RestorableSets(_store).SelectNewestAsync(ct)).Newest!.BackupId);
    }

    /// <summary>A store where, while one set is being deleted, another writer adds an object and a temporary to it.</summary>
    private sealed class WrittenDuringDeleteStore(FileSystemStore inner, string root, string backupId) : ForwardingStore(inner)
    {
        public override async Task DeleteAsync(string key, CancellationToken cancellationToken)
        {
            await Inner.DeleteAsync(key, cancellationToken);
            if (key == BackupLayout.ArtifactKey(backupId, BackupLayout.DatabaseArtifact))
                await Inner.PutAsync(BackupLayout.SetPrefix(backupId) + "late.json", new MemoryStream("{}"u8.ToArray()), cancellationToken);
        }

        public override async Task DeleteTemporaryAsync(StoreTemporary temporary, CancellationToken cancellationToken)
        {
            await Inner.DeleteTemporaryAsync(temporary, cancellationToken);
            File.WriteAllBytes(Path.Combine(root, "backups", backupId, "late2.json.partial-0123"), new byte[7]);
        }
    }

    [TestMethod]
    public async Task ASetWrittenToWhileItIsDeleted_IsReportedWithWhatWasLeft()
    {
        // Rules out a pruner that counts a set deleted without listing it again: two objects arrived during the delete.
        var older = await WriteSetAsync(_store, Now.AddDays(-2));
        var newer = await WriteSetAsync(_store, Now.AddDays(-1));
        File.WriteAllBytes(Path.Combine(_dir, "backups", older, "config.tar.gz.partial-abcd"), new byte[3]);
        var store = new WrittenDuringDeleteStore(_store, _dir, older);

        var error = await Assert.ThrowsExactlyAsync<PruneFailedException>(() =>
            Pruner(store, new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 }).PruneAsync(dryRun: false, CancellationToken.None));

        CollectionAssert.AreEqual(new[] { older }, error.FailedBackupIds.ToList());
        var inner = (IOException)((AggregateException)error.InnerException!).InnerExceptions.Single();
        Assert.AreEqual($"2 object(s) were still under backups/{older}/ after deleting it (written while it was being deleted?).", inner.Message);
        CollectionAssert.AreEqual(new[] { $"backups/{older}/late.json", $"backups/{newer}/" },
            (await KeysAsync(_store)).Select(k => k.StartsWith($"backups/{newer}/", StringComparison.Ordinal) ? $"backups/{newer}/" : k).Distinct().ToList());
    }
}
