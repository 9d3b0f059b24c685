using RegistryDR.Backup;
using RegistryDR.Continuous;
using RegistryDR.Fencing;
using RegistryDR.Retention;
using RegistryDR.Tests.Continuous;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Failover;

/// <summary>
/// Regional failover in continuous mode (<c>Database:Mode=continuous</c>), on two buckets of the
/// tests' Ceph RGW with <see cref="S3ReplicationStandIn"/> copying region 1's base backups and WAL to
/// region 2 late and out of order (the rig of <see cref="TwoRegionFailoverTests"/>, with the
/// continuous nodes of <see cref="ContinuousSite"/>). Region 1 dies with its newest base backup's
/// manifest and the tail of its WAL not replicated; a failover node in region 2 restores to the end
/// of what arrived; region 1 comes back and keeps archiving, and none of it enters region 2's chain.
/// </summary>
[TestClass]
public sealed class TwoRegionContinuousFailoverTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);
    private const string Region1 = "us-east-1";
    private const string Region2 = "us-west-2";

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task Region1DiesWithWalInFlight_Region2RestoresToTheEndOfWhatArrived_Region1sLaterWalNeverEntersItsChain()
    {
        var ct = TestContext.CancellationToken;
        await using var site1 = await ContinuousSite.CreateAsync(s3: true);
        // The same database secret in both regions: region 2 restores region 1's cluster, with its roles.
        await using var site2 = await ContinuousSite.CreateAsync(s3: true, site1.Password);
        var (bucket1, bucket2) = (Bucket(site1), Bucket(site2));
        using var client = site1.S3!.CreateClient();
        var clock = new ManualTimeProvider(Start);
        using var s1 = (RegistryDR.Stores.S3Store)site1.CreateStore();
        using var s2 = (RegistryDR.Stores.S3Store)site2.CreateStore();

        // What will be late: the second base backup's manifest, and every WAL segment from lateFrom on.
        string? lateBase = null;
        ulong? lateFrom = null;
        long segmentSize = 0;
        var timing = new ReplicationTiming
        {
            Seed = 17, BaseLag = TimeSpan.FromSeconds(1), Jitter = TimeSpan.FromMinutes(5),
            LagFor = (key, _) => IsLate(key[(key.IndexOf('/') + 1)..], lateBase, lateFrom, segmentSize) ? TimeSpan.FromHours(10) : null,
        };
        var replication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(bucket1, bucket2), timing, clock, cancellationToken: ct);

        // ---- Region 1: a node holding generation 1 archives WAL; two base backups, pushes between them and after.
        var a = await site1.StartNodeAsync("a");
        Assert.AreEqual(1, (await new GenerationLedger(s1, clock).TakeAndRecordAsync(a.Options.Agent.StateFile, "first-boot", "i-r1", null, ct, Region1)).Number);
        var backups = new BaseBackupService(a.Options, s1, TestNode.Logger<BaseBackupService>(), TimeProvider.System);
        var base1 = await backups.RunAsync(cancellationToken: ct);
        segmentSize = base1.Server.WalSegmentSize;
        await InsertAsync(a, 1, 10, "a");
        await a.SwitchAndWaitArchivedAsync();
        var base2 = await backups.RunAsync(cancellationToken: ct);
        lateBase = base2.BackupId;
        await InsertAsync(a, 11, 20, "a");
        await a.SwitchAndWaitArchivedAsync();
        var arrived = await DatabaseSnapshot.CaptureAsync(a.ConnectionString());
        var lastArrived = await a.ScalarAsync<string>("SELECT last_archived_wal FROM pg_stat_archiver", "postgres");
        WalFileName.TryParse(lastArrived, out var lastArrivedFile);
        lateFrom = lastArrivedFile!.SegmentNumber(segmentSize) + 1;
        await InsertAsync(a, 21, 30, "a");
        await a.SwitchAndWaitArchivedAsync();
        var region1AtDeath = await KilledNodeTests.ReadPushesAsync(a);

        // Replication runs for an hour (out of order within its jitter), then region 1 dies with what is in flight.
        await replication.ScanAsync(ct);
        clock.Advance(TimeSpan.FromHours(1));
        await replication.DeliverDueAsync(ct);
        var lost = replication.DropInFlight().Select(p => p.Key[(p.Key.IndexOf('/') + 1)..]).Order(StringComparer.Ordinal).ToList();
        var walInStore1 = await new ContinuousCatalog(s1).ListWalAsync(ct);
        CollectionAssert.AreEqual(
            walInStore1.Where(w => w.File.Kind != WalFileKind.History && w.File.SegmentNumber(segmentSize) >= lateFrom).Select(w => w.Key)
                .Append(ContinuousLayout.ManifestKey(base2.BackupId)).Order(StringComparer.Ordinal).ToList(),
            lost, "the second base backup's manifest and the WAL after the last segment that arrived are lost");
        Assert.IsTrue(lost.Count >= 2, $"WAL was in flight: {string.Join(", ", lost)}");

        // ---- Region 2: what a restore to latest will use — the newest complete base backup and the WAL chain without a gap.
        var b = await site2.StartNodeAsync("b", empty: true);
        b.Options.Agent.Role = RegistryDR.Configuration.AgentRole.Failover;
        var dry = await new ContinuousRestoreService(b.Options, s2, TestNode.Logger<ContinuousRestoreService>(), TimeProvider.System)
            .PlanAsync(new PointInTimeRequest(RecoveryTarget.Latest, DryRun: true, TakeGeneration: false), ct);
        Assert.AreEqual((base1.BackupId, lastArrived), (dry.Plan.Base.BackupId, dry.Plan.LastSegment!.File.Name));
        var chain = dry.Plan.Segments.Select(w => w.File.SegmentNumber(segmentSize)).ToList();
        CollectionAssert.AreEqual(Enumerable.Range((int)chain[0], chain.Count).Select(n => (ulong)n).ToList(), chain, "no gap in the chain used");

        // The failover node's bootstrap restore: a takeover (epoch 1) recording the base backup it starts from.
        var skipped = new List<string>();
        var (status, restoredBase, generation) = await ContinuousBootstrap.RestoreAsync(b.Options, s2, TestNode.Logger<ContinuousRestoreService>(), TimeProvider.System,
            null, null, "i-r2", skipped, ct, Region2);
        Assert.IsNull(arrived.FirstDifference(await DatabaseSnapshot.CaptureAsync(b.ConnectionString())), "region 2 has exactly what region 1 had when its last replicated segment was archived");
        var restoredRows = await KilledNodeTests.ReadPushesAsync(b);
        var loss = region1AtDeath[^1].CommittedAt - restoredRows[^1].CommittedAt;
        TestContext.WriteLine($"Continuous failover: region 2 restored {restoredRows.Count} of region 1's {region1AtDeath.Count} pushes from {base1.BackupId} " +
                              $"to {lastArrived}; {lost.Count} object(s) still in flight were lost; commits lost: the last {loss.TotalSeconds:F1} s of region 1's; load average {File.ReadAllText("/proc/loadavg").Trim()}.");

        Assert.AreEqual((RegistryDR.Agent.NodeStatus.Restored, base1.BackupId), (status, restoredBase));
        Assert.AreEqual((1_000_001L, "takeover", Region2, base1.BackupId), (generation.Number, generation.Reason, generation.Region, generation.RestoredFrom));
        Assert.AreEqual(1_000_001L, RegistryDR.Agent.NodeStateFile.Read(b.Options.Agent.StateFile)!.Generation);

        // Region 2 serves and archives on its own timeline.
        await InsertAsync(b, 101, 110, "b");
        await b.SwitchAndWaitArchivedAsync();
        var region2State = await DatabaseSnapshot.CaptureAsync(b.ConnectionString());

        // ---- Region 1 comes back: its node still holds generation 1 in its own store, archives more and takes a base backup; all of it replicates.
        var back = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(bucket1, bucket2), timing with { LagFor = null }, clock, cancellationToken: ct);
        var walBefore = (await new ContinuousCatalog(s1).ListWalAsync(ct)).Select(w => w.Key).ToHashSet();
        await InsertAsync(a, 31, 40, "zombie");
        await a.SwitchAndWaitArchivedAsync();
        var base3 = await backups.RunAsync(cancellationToken: ct);
        Assert.AreEqual(1L, base3.Generation);
        await InsertAsync(a, 41, 45, "zombie");
        await a.SwitchAndWaitArchivedAsync();
        var region1Later = (await new ContinuousCatalog(s1).ListWalAsync(ct)).Where(w => !walBefore.Contains(w.Key)).Select(w => w.Key).ToList();
        await back.DrainAsync(ct);
        var inStore2 = (await new ContinuousCatalog(s2).ListWalAsync(ct)).Select(w => w.Key).ToHashSet();
        Assert.IsTrue(region1Later.Count > 0 && region1Later.All(inStore2.Contains), "region 1's later WAL replicated into region 2's store");

        // Region 2's chain to latest: its own timeline, none of region 1's later WAL, ending at region 2's newest segment.
        var c = await site2.StartNodeAsync("c", empty: true);
        var latest = await new ContinuousRestoreService(c.Options, s2, TestNode.Logger<ContinuousRestoreService>(), TimeProvider.System)
            .RestoreAsync(new PointInTimeRequest(RecoveryTarget.Latest), cancellationToken: ct);
        CollectionAssert.AreEqual(Array.Empty<string>(), latest.Plan.Segments.Select(w => w.Key).Intersect(region1Later).ToList());
        Assert.AreEqual(2u, latest.Plan.TargetTimeline);
        Assert.IsNull(region2State.FirstDifference(await DatabaseSnapshot.CaptureAsync(c.ConnectionString())), "the restore is region 2's state exactly");
        Assert.AreEqual(0L, await c.ScalarAsync<long>("SELECT count(*) FROM pushes WHERE node = 'zombie'"));

        // Retention in region 2 counts region 1's late base backup as FENCED, and keeps the chain region 2 restores from.
        var plan = await ContinuousRetention.PlanAsync(s2, new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 }, TimeProvider.System, ct);
        CollectionAssert.AreEqual(new[]
        {
            (base3.BackupId, RetentionAction.Keep, "FENCED, kept 1 day(s) for inspection"),
            (base2.BackupId, RetentionAction.Keep, "incomplete, younger than grace"),
            (base1.BackupId, RetentionAction.Keep, "newest 1; only complete set"),
        }, plan.BaseBackups.Sets.Select(d => (d.BackupId, d.Action, string.Join("; ", d.Reasons))).ToList());
        Assert.AreEqual(base1.BackupId, plan.Wal.KeptBecauseOf);
    }

    private static string Bucket(ContinuousSite site) => new Uri(site.StoreUrl).Host;

    /// <summary>A key (without the store's prefix) region 1 loses in flight: <paramref name="lateBase"/>'s manifest, or WAL from segment <paramref name="lateFrom"/> on.</summary>
    private static bool IsLate(string key, string? lateBase, ulong? lateFrom, long segmentSize) =>
        (lateBase is not null && key == ContinuousLayout.ManifestKey(lateBase)) ||
        (lateFrom is { } from && ContinuousLayout.TryParseWalKey(key, out var name, out _) && name!.Kind != WalFileKind.History && name.SegmentNumber(segmentSize) >= from);

    private static async Task InsertAsync(ContinuousNode node, int from, int to, string who)
    {
        for (var i = from; i <= to; i++)
            await node.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES ({i}, '{who}', '{PushLoad.Payload(i)}')");
    }
}
