using RegistryDR.Backup;
using RegistryDR.Continuous;
using RegistryDR.Retention;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// Retention of the continuous archive never deletes WAL a kept base backup needs, nor the last
/// restorable chain: planner properties over random archives, and a real prune on both stores
/// after which the oldest kept base backup still restores (drill) to the end of the archive.
/// </summary>
[TestClass]
public sealed class ContinuousRetentionTests
{
    private const long SegmentSize = 16 << 20;
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);

    internal static BaseBackupManifest Manifest(string id, ulong startSegment, ulong endSegment, uint timeline = 1, DateTimeOffset? completed = null)
    {
        BackupLayout.TryParseTime(id, out var started);
        return new BaseBackupManifest
        {
            FormatVersion = 1,
            BackupId = id,
            StartedAt = started,
            CompletedAt = completed ?? started.AddMinutes(1),
            Host = "node",
            RegistryDrVersion = "0.1.0",
            Server = new BaseBackupManifest.ServerInfo
            {
                ServerVersion = "15.18",
                PgBaseBackupVersion = "15.18",
                SystemIdentifier = "7714064530962748048",
                WalSegmentSize = SegmentSize,
                Timeline = timeline,
                StartLsn = new Lsn(startSegment * SegmentSize + 0x28).ToString(),
                EndLsn = new Lsn(endSegment * SegmentSize + 0x100).ToString(),
                EndTimeline = timeline,
                DataDirectory = "/var/lib/pgsql/data",
                Files = 1000,
            },
            ConfigDirectories = [new BackupManifest.ConfigDirectory { Path = "/etc/registry", EntryPrefix = "etc/registry" }],
            Artifacts =
            [
                new BackupManifest.Artifact { Name = "base", Key = ContinuousLayout.BaseKey(id), Size = 100, Sha256 = new string('a', 64) },
                new BackupManifest.Artifact { Name = "config", Key = ContinuousLayout.ConfigKey(id), Size = 10, Sha256 = new string('b', 64) },
            ],
        };
    }

    internal static WalObject Segment(uint timeline, ulong segment, DateTimeOffset? at = null, string? sha = null)
    {
        var name = WalFileName.SegmentName(timeline, segment, SegmentSize);
        WalFileName.TryParse(name, out var parsed);
        var hash = sha ?? Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(name)));
        return new WalObject(parsed!, hash, ContinuousLayout.WalKey(name, hash), 1000, at ?? Now);
    }

    private static string Id(DateTimeOffset t) => BackupLayout.NewBackupId(t);

    [TestMethod]
    public void RandomArchives_NeverLoseWalAKeptBaseNeeds_NorTheNewestVerifiedChain()
    {
        var random = new Random(1717);
        for (var round = 0; round < 400; round++)
        {
            var count = random.Next(1, 12);
            var manifests = new Dictionary<string, BaseBackupManifest>();
            var sets = new List<BackupSetInfo>();
            ulong segment = (ulong)random.Next(1, 5);
            for (var i = 0; i < count; i++)
            {
                var time = Now.AddHours(-random.Next(0, 24 * 40)).AddMinutes(-i);
                var id = Id(time);
                if (manifests.ContainsKey(id)) continue;
                var start = (ulong)random.Next(1, 200);
                manifests[id] = Manifest(id, start, start + (ulong)random.Next(0, 2));
                sets.Add(new BackupSetInfo(id, time, 100, 3, random.Next(6) == 0 ? BackupSetState.Incomplete : BackupSetState.Complete));
                segment = Math.Max(segment, start + 2);
            }
            var wal = Enumerable.Range(0, (int)segment + 30).Select(s => Segment(1, (ulong)s)).ToList();
            var verified = sets.Where(_ => random.Next(4) == 0).Select(s => s.BackupId).ToHashSet();
            var options = new RetentionOptions { KeepLast = random.Next(1, 4), KeepDailyDays = random.Next(0, 5), KeepWeeklyWeeks = random.Next(0, 3) };
            var completeManifests = sets.Where(s => s.IsComplete).ToDictionary(s => s.BackupId, s => manifests[s.BackupId]);

            var plan = ContinuousRetention.Plan(sets, completeManifests, verified, wal, Now, options);

            var deleted = plan.Wal.Delete.Select(w => w.Key).ToHashSet();
            var kept = plan.BaseBackups.Sets.Where(s => s.Action == RetentionAction.Keep && s.State == BackupSetState.Complete).Select(s => completeManifests[s.BackupId]).ToList();
            foreach (var m in kept)
                foreach (var w in wal.Where(w => w.File.SegmentNumber(SegmentSize) >= m.Start.Segment(SegmentSize)))
                    Assert.IsFalse(deleted.Contains(w.Key), $"round {round}: {w.File.Name} is needed by kept base backup {m.BackupId} (starts at {m.Start})");
            var complete = sets.Where(s => s.IsComplete).OrderByDescending(s => s.BackupId, StringComparer.Ordinal).ToList();
            var mustKeep = complete.FirstOrDefault(s => verified.Contains(s.BackupId)) ?? complete.FirstOrDefault();
            if (mustKeep is not null)
                Assert.AreEqual(RetentionAction.Keep, plan.BaseBackups.Sets.Single(s => s.BackupId == mustKeep.BackupId).Action, $"round {round}: the last restorable chain's base {mustKeep.BackupId}");
            else
                Assert.AreEqual(0, plan.Wal.Delete.Count, $"round {round}: no base backup kept, so no WAL is known to be unneeded");
        }
    }

    [TestMethod]
    public void WalBelowTheOldestKeptBase_IsDeleted_HistoryFilesNever()
    {
        var old = Manifest(Id(Now.AddDays(-3)), 2, 2);
        var mid = Manifest(Id(Now.AddDays(-2)), 10, 10);
        var newest = Manifest(Id(Now.AddDays(-1)), 20, 21);
        var sets = new[] { old, mid, newest }.Select(m => new BackupSetInfo(m.BackupId, m.StartedAt, 100, 3, BackupSetState.Complete)).ToList();
        WalFileName.TryParse("00000002.history", out var history);
        var wal = Enumerable.Range(0, 30).Select(s => Segment(1, (ulong)s)).Append(new WalObject(history!, new string('c', 64), ContinuousLayout.WalKey("00000002.history", new string('c', 64)), 40, Now)).ToList();
        var plan = ContinuousRetention.Plan(sets, new[] { old, mid, newest }.ToDictionary(m => m.BackupId), new HashSet<string>(), wal, Now,
            new RetentionOptions { KeepLast = 2, KeepDailyDays = 0, KeepWeeklyWeeks = 0 });
        CollectionAssert.AreEqual(new[] { RetentionAction.Keep, RetentionAction.Keep, RetentionAction.Delete }, plan.BaseBackups.Sets.Select(s => s.Action).ToList());
        Assert.AreEqual(WalFileName.SegmentName(1, 10, SegmentSize), plan.Wal.KeepFrom);
        Assert.AreEqual(mid.BackupId, plan.Wal.KeptBecauseOf);
        CollectionAssert.AreEqual(Enumerable.Range(0, 10).Select(s => WalFileName.SegmentName(1, (ulong)s, SegmentSize)).ToList(), plan.Wal.Delete.Select(w => w.File.Name).ToList());
        Assert.AreEqual(21, plan.Wal.Keep);
    }

    private static BackupSetInfo Info(BaseBackupManifest m) => new(m.BackupId, m.StartedAt, 100, 3, BackupSetState.Complete);

    private static IReadOnlyList<(string, RetentionAction, string)> Decisions(ContinuousRetentionPlan plan) =>
        plan.BaseBackups.Sets.Select(d => (d.BackupId, d.Action, string.Join("; ", d.Reasons))).ToList();

    /// <summary>
    /// Region 2 took over from <c>before</c> (timeline 1) and backs up on timeline 2; region 1's old
    /// node came back and wrote two base backups after the takeover, the newest of all. They count
    /// for no keep rule and keep no WAL: both restorable base backups of region 2 stay, and so does
    /// the WAL from the older one's start.
    /// </summary>
    [TestMethod]
    public void FencedBaseBackups_TakeNoKeepRulesPlace_AndKeepNoWal()
    {
        var before = Manifest(Id(Now.AddDays(-3)), 2, 2);
        var r1 = Manifest(Id(Now.AddDays(-2)), 10, 10, timeline: 2);
        var oldFenced = Manifest(Id(Now.AddHours(-25)), 15, 15);
        var r2 = Manifest(Id(Now.AddHours(-20)), 20, 21, timeline: 2);
        // Region 1's WAL positions are its own: this one starts below region 2's oldest kept base backup.
        var newFenced = Manifest(Id(Now.AddHours(-1)), 8, 8);
        var all = new[] { before, r1, oldFenced, r2, newFenced };
        var wal = Enumerable.Range(0, 31).Select(s => Segment(1, (ulong)s)).Concat(Enumerable.Range(9, 20).Select(s => Segment(2, (ulong)s))).ToList();
        var unrestorable = new Dictionary<string, string> { [oldFenced.BackupId] = "FENCED", [newFenced.BackupId] = "FENCED" };

        var plan = ContinuousRetention.Plan(all.Select(Info).ToList(), all.ToDictionary(m => m.BackupId), new HashSet<string>(), wal, Now,
            new RetentionOptions { KeepLast = 2, KeepDailyDays = 0, KeepWeeklyWeeks = 0 }, unrestorable);

        CollectionAssert.AreEqual(new[]
        {
            (newFenced.BackupId, RetentionAction.Keep, "FENCED, kept 1 day(s) for inspection"),
            (r2.BackupId, RetentionAction.Keep, "newest 2"),
            (oldFenced.BackupId, RetentionAction.Delete, "FENCED, older than 1 day(s)"),
            (r1.BackupId, RetentionAction.Keep, "newest 2"),
            (before.BackupId, RetentionAction.Delete, "older than every rule"),
        }, Decisions(plan).ToList());
        Assert.AreEqual(WalFileName.SegmentName(2, 10, SegmentSize), plan.Wal.KeepFrom);
        Assert.AreEqual(r1.BackupId, plan.Wal.KeptBecauseOf);
        CollectionAssert.AreEqual(
            Enumerable.Range(0, 10).Select(s => WalFileName.SegmentName(1, (ulong)s, SegmentSize)).Append(WalFileName.SegmentName(2, 9, SegmentSize)).Order(StringComparer.Ordinal).ToList(),
            plan.Wal.Delete.Select(w => w.File.Name).Order(StringComparer.Ordinal).ToList());
        Assert.AreEqual(wal.Count - 11, plan.Wal.Keep);
    }

    /// <summary>
    /// The newest base backup is corrupt and the only verified one; the fenced one before it is
    /// newer than the one restorable base backup. Neither is "the newest verified" nor "the newest
    /// complete": the restorable one is kept, and the WAL from its start, though KeepLast is 1.
    /// </summary>
    [TestMethod]
    public void ACorruptVerifiedNewest_AndAFencedOne_AreNeverTheSetAlwaysKept()
    {
        var good = Manifest(Id(Now.AddDays(-4)), 5, 5, timeline: 2);
        var fenced = Manifest(Id(Now.AddDays(-3)), 8, 8);
        var corrupt = Manifest(Id(Now.AddDays(-2)), 12, 12, timeline: 2);
        var all = new[] { good, fenced, corrupt };
        var wal = Enumerable.Range(0, 9).Select(s => Segment(1, (ulong)s)).Concat(Enumerable.Range(4, 10).Select(s => Segment(2, (ulong)s))).ToList();

        var plan = ContinuousRetention.Plan(all.Select(Info).ToList(), all.ToDictionary(m => m.BackupId), new HashSet<string> { corrupt.BackupId, fenced.BackupId }, wal, Now,
            new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 },
            new Dictionary<string, string> { [fenced.BackupId] = "FENCED", [corrupt.BackupId] = "CORRUPT" });

        CollectionAssert.AreEqual(new[]
        {
            (corrupt.BackupId, RetentionAction.Delete, "CORRUPT, older than 1 day(s)"),
            (fenced.BackupId, RetentionAction.Delete, "FENCED, older than 1 day(s)"),
            (good.BackupId, RetentionAction.Keep, "newest 1; only complete set"),
        }, Decisions(plan).ToList());
        Assert.AreEqual(WalFileName.SegmentName(2, 5, SegmentSize), plan.Wal.KeepFrom);
        CollectionAssert.AreEqual(new[] { 0, 1, 2, 3, 4 }.Select(s => WalFileName.SegmentName(1, (ulong)s, SegmentSize)).Append(WalFileName.SegmentName(2, 4, SegmentSize)).ToList(),
            plan.Wal.Delete.Select(w => w.File.Name).ToList());
    }

    /// <summary>
    /// The prune judges base backups from the store as it judges logical sets: the takeover in the
    /// ledger and the generation each manifest records make region 1's late base backup FENCED,
    /// <c>continuous/base/&lt;id&gt;/corrupt.json</c> makes one CORRUPT; the restorable one and its WAL stay.
    /// </summary>
    [TestMethod]
    public async Task Prune_JudgesFencedAndCorruptBaseBackupsFromTheStore_AndKeepsTheRestorableChain()
    {
        var ct = CancellationToken.None;
        var dir = Directory.CreateTempSubdirectory("rdr-cont-retention-").FullName;
        var (state1, state2) = (dir + "-node1.json", dir + "-node2.json");
        try
        {
            var store = new RegistryDR.Stores.FileSystemStore(dir);
            var time = new ManualTimeProvider(Now);
            var ledger = new RegistryDR.Fencing.GenerationLedger(store, time);
            Assert.AreEqual(1, (await ledger.TakeAndRecordAsync(state1, "first-boot", "i-r1", null, ct, "us-east-1")).Number);
            var before = Manifest(Id(Now.AddDays(-3)), 2, 2) with { Generation = 1 };
            Assert.AreEqual(1_000_001, (await ledger.TakeAndRecordAsync(state2, "takeover", "i-r2", before.BackupId, ct, "us-west-2", takeOver: true)).Number);
            var region2 = Manifest(Id(Now.AddDays(-2)), 10, 10, timeline: 2) with { Generation = 1_000_001 };
            var corrupt = Manifest(Id(Now.AddDays(-1).AddHours(-1)), 14, 14, timeline: 2) with { Generation = 1_000_001 };
            var fenced = Manifest(Id(Now.AddHours(-2)), 20, 20) with { Generation = 1 };
            foreach (var m in new[] { before, region2, corrupt, fenced })
            {
                await store.PutAsync(ContinuousLayout.BaseKey(m.BackupId), new MemoryStream(new byte[100]), ct);
                await store.PutAsync(ContinuousLayout.ManifestKey(m.BackupId), new MemoryStream(m.ToJson()), ct);
            }
            await store.PutAsync(ContinuousLayout.VerifiedKey(fenced.BackupId), new MemoryStream("{}"u8.ToArray()), ct);
            await store.PutAsync(ContinuousLayout.BasePrefix(corrupt.BackupId) + CorruptionRecord.FileName, new MemoryStream("{}"u8.ToArray()), ct);
            var wal = Enumerable.Range(0, 21).Select(s => Segment(1, (ulong)s)).Concat(Enumerable.Range(9, 8).Select(s => Segment(2, (ulong)s))).ToList();
            foreach (var w in wal) await store.PutAsync(w.Key, new MemoryStream([1]), ct);

            var plan = (await new Pruner(store, new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 }, time, TestNode.Logger<Pruner>())
                .PruneAsync(dryRun: false, ct)).Continuous!;

            CollectionAssert.AreEqual(new[]
            {
                (fenced.BackupId, RetentionAction.Keep, "FENCED, kept 1 day(s) for inspection"),
                (corrupt.BackupId, RetentionAction.Delete, "CORRUPT, older than 1 day(s)"),
                (region2.BackupId, RetentionAction.Keep, "newest 1"),
                (before.BackupId, RetentionAction.Delete, "older than every rule"),
            }, Decisions(plan).ToList());
            var catalog = new ContinuousCatalog(store);
            CollectionAssert.AreEqual(new[] { fenced.BackupId, region2.BackupId }, (await catalog.ListBaseBackupsAsync(ct)).Select(s => s.BackupId).ToList());
            CollectionAssert.AreEqual(wal.Where(w => w.File.SegmentNumber(SegmentSize) >= 10).Select(w => w.File.Name).Order(StringComparer.Ordinal).ToList(),
                (await catalog.ListWalAsync(ct)).Select(w => w.File.Name).Order(StringComparer.Ordinal).ToList(),
                "the WAL from the start of region 2's base backup, on both timelines, and nothing older");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            File.Delete(state1);
            File.Delete(state2);
        }
    }

    [TestMethod]
    [DataRow(false, DisplayName = "file store")]
    [DataRow(true, DisplayName = "Ceph S3")]
    public async Task Prune_DeletesOnlyWalBelowTheOldestKeptBase_AndThatBaseStillRestoresToTheEnd(bool s3)
    {
        await using var site = await ContinuousSite.CreateAsync(s3);
        var a = await site.StartNodeAsync("a");
        var store = site.CreateStore();
        var backups = new BaseBackupService(a.Options, store, TestNode.Logger<BaseBackupService>(), TimeProvider.System);
        var first = await backups.RunAsync();
        await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES (1, 'a', '{PushLoad.Payload(1)}')");
        await a.SwitchAndWaitArchivedAsync();
        var second = await backups.RunAsync();
        await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES (2, 'a', '{PushLoad.Payload(2)}')");
        await a.SwitchAndWaitArchivedAsync();
        var third = await backups.RunAsync();
        await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES (3, 'a', '{PushLoad.Payload(3)}')");
        await a.SwitchAndWaitArchivedAsync();
        var catalog = new ContinuousCatalog(store);
        var before = await catalog.ListWalAsync(default);

        var options = new RetentionOptions { KeepLast = 2, KeepDailyDays = 0, KeepWeeklyWeeks = 0 };
        var plan = await new Pruner(store, options, TimeProvider.System, TestNode.Logger<Pruner>()).PruneAsync(dryRun: false, default);

        Assert.AreEqual(RetentionAction.Delete, plan.Continuous!.BaseBackups.Sets.Single(s => s.BackupId == first.BackupId).Action);
        CollectionAssert.AreEqual(new[] { third.BackupId, second.BackupId },
            (await catalog.ListBaseBackupsAsync(default)).Select(s => s.BackupId).ToList(), "the two newest base backups remain, complete");
        var size = second.Server.WalSegmentSize;
        var from = second.Start.Segment(size);
        var after = await catalog.ListWalAsync(default);
        CollectionAssert.AreEqual(before.Where(w => w.File.SegmentNumber(size) >= from).Select(w => w.Key).ToList(), after.Select(w => w.Key).ToList(),
            $"exactly the WAL from {WalFileName.SegmentName(second.Server.Timeline, from, size)} on is kept");
        Assert.IsTrue(before.Count > after.Count, "something was deleted");

        // The oldest kept chain is whole: a drill from it replays to the end of the archive.
        var drill = await new ContinuousDrill(a.Options, store, TestNode.Logger<ContinuousDrill>(), TimeProvider.System).RunAsync(second.BackupId);
        Assert.IsTrue(drill.Succeeded, drill.Failure);
        Assert.AreEqual(second.BackupId, drill.BackupId);
        await using var connection = new Npgsql.NpgsqlConnection(a.ConnectionString());
        await connection.OpenAsync();
        var expected = await RegistryDR.Postgres.DatabaseFingerprint.CountAsync(connection, null, default);
        Assert.AreEqual(expected.TotalRows, drill.Rows, "the drill replayed to the end: every row of the live database, the third push included");
        Assert.AreEqual(expected.RowCounts.Count, drill.Tables);
    }
}
