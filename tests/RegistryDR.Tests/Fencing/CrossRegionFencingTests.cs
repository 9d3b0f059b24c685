using RegistryDR.Agent;
using RegistryDR.Backup;
using RegistryDR.Fencing;
using RegistryDR.Stores;
using RegistryDR.Tests.Backup;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Fencing;

/// <summary>
/// Once region 2 has taken over a replica store, nothing region 1 writes later, directly or through
/// S3 replication (late and out of order), makes region 2's node stop backing up or makes a stale
/// set the newest there.
/// </summary>
[TestClass]
public sealed class CrossRegionFencingTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task Region1WritesAfterTheTakeover_ArriveLateAndOutOfOrder_Region2KeepsWritingAndItsNewestSet()
    {
        var ct = TestContext.CancellationToken;
        var s3 = await TestEnvironment.S3Async();
        var id = Guid.NewGuid().ToString("N")[..10];
        var (bucket1, bucket2) = ($"regdr-xr1-{id}", $"regdr-xr2-{id}");
        await s3.CreateBucketAsync(bucket1);
        await s3.CreateBucketAsync(bucket2);
        using var client = s3.CreateClient();
        var time = new ManualTimeProvider(Start);
        // Lags of 1 s to 10 min drawn per object: the generation objects and sets arrive in a shuffled order.
        var replication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(bucket1, bucket2),
            new ReplicationTiming { Seed = 7, BaseLag = TimeSpan.FromSeconds(1), Jitter = TimeSpan.FromMinutes(10) }, time);
        using var store1 = Open(s3, bucket1);
        using var store2 = Open(s3, bucket2);
        using var dir = new TempDirectory("rdr-xregion-");
        var (state1, state2) = (Path.Combine(dir.Path, "node1.json"), Path.Combine(dir.Path, "node2.json"));
        var (ledger1, ledger2) = (new GenerationLedger(store1, time), new GenerationLedger(store2, time));

        // Region 1 runs: it first-boots, backs up, and that set replicates.
        Assert.AreEqual(1, (await ledger1.TakeAndRecordAsync(state1, "first-boot", "i-r1", null, ct, "us-east-1")).Number);
        var before = await SyntheticSets.WriteAsync(store1, Start, generation: 1);
        await replication.ScanAsync(ct);
        await replication.DrainAsync(ct);

        // Region 1 goes dark; region 2 restores that set and takes over: a new epoch above all it saw.
        var takeover = await ledger2.TakeAndRecordAsync(state2, "takeover", "i-r2", before, ct, "us-west-2", takeOver: true);
        Assert.AreEqual(1_000_001, takeover.Number);
        Assert.AreEqual(1_000_001, NodeStateFile.Read(state2)!.Generation);
        var region2Set = await SyntheticSets.WriteAsync(store2, Start.AddHours(2), generation: 1_000_001);

        // Region 1 comes back: its node restores twice (generations 2 and 3 in its own epoch) and
        // keeps backing up, one set older and two newer than region 2's; all of it replicates late.
        Assert.AreEqual(2, (await ledger1.TakeAndRecordAsync(state1, "restore", "i-r1", before, ct, "us-east-1")).Number);
        Assert.AreEqual(3, (await ledger1.TakeAndRecordAsync(state1, "restore", "i-r1b", before, ct, "us-east-1")).Number);
        var stale = new List<string>
        {
            await SyntheticSets.WriteAsync(store1, Start.AddHours(1), generation: 2),
            await SyntheticSets.WriteAsync(store1, Start.AddHours(3), generation: 3),
            await SyntheticSets.WriteAsync(store1, Start.AddHours(4), generation: 3),
        };
        var written = new[] { "generations/0000000002.json", "generations/0000000003.json" }
            .Concat(stale.SelectMany(s => new[] { BackupLayout.DatabaseArtifact, BackupLayout.GlobalsArtifact, BackupLayout.ConfigArtifact }.Select(a => BackupLayout.ArtifactKey(s, a)).Append(BackupLayout.ManifestKey(s))))
            .Select(k => "site/" + k).ToList();
        Assert.AreEqual(written.Count, await replication.ScanAsync(ct));
        var order = new List<string>();
        var stepsChecked = 0;
        while (replication.InFlight.Count > 0)
        {
            time.Advance(TimeSpan.FromSeconds(45));
            var delivered = await replication.DeliverDueAsync(ct);
            order.AddRange(delivered.Select(e => e.Key));
            if (delivered.Count == 0) continue;
            // After every delivery: region 2's node may still write, and its own set is the newest restorable.
            Assert.AreEqual(1_000_001, (await ledger2.CurrentAsync(ct))!.Number);
            Assert.IsNull(await ledger2.WhyWritingIsRefusedAsync(await ledger2.HeldAsync(NodeStateFile.Read(state2), ct), ct));
            Assert.AreEqual(region2Set, (await new RestorableSets(store2).SelectNewestAsync(ct)).Newest?.BackupId);
            stepsChecked++;
        }
        Assert.IsTrue(stepsChecked >= 3, $"replication delivered in {stepsChecked} steps");
        CollectionAssert.AreEquivalent(written, order);
        CollectionAssert.AreNotEqual(written, order, "the seed delivers out of order");

        // Everything has arrived: restore latest (and the agent, which judges the same way) takes region 2's set.
        var selection = await new RestorableSets(store2).ResolveLatestAsync(ct);
        Assert.AreEqual(region2Set, selection.Newest!.BackupId);
        var fenced = $"written by {Environment.MachineName} (i-r1b) in region us-east-1 holding generation 3 after {Environment.MachineName} (i-r2) in region us-west-2 took over at generation 1000001 from set {before}";
        CollectionAssert.AreEqual(
            new[] { $"{stale[2]} (FENCED: {fenced})", $"{stale[1]} (FENCED: {fenced})" },
            selection.Skipped.Select(s => s.Describe()).ToList());
        var all = await new RestorableSets(store2).ListAsync(ct);
        CollectionAssert.AreEqual(
            new[] { (stale[2], SetCondition.Fenced), (stale[1], SetCondition.Fenced), (region2Set, SetCondition.Restorable), (stale[0], SetCondition.Fenced), (before, SetCondition.Restorable) },
            all.Select(j => (j.BackupId, j.Condition)).ToList());
        Assert.AreEqual($"{stale[0]} (FENCED: written by {Environment.MachineName} (i-r1) in region us-east-1 holding generation 2 after {Environment.MachineName} (i-r2) in region us-west-2 took over at generation 1000001 from set {before})",
            all[3].Describe());

        // Region 2's node is replaced and takes over again: still above everything region 1 wrote.
        Assert.AreEqual(2_000_001, (await ledger2.TakeAndRecordAsync(state2, "takeover", "i-r2b", region2Set, ct, "us-west-2", takeOver: true)).Number);
        Assert.AreEqual(2, (await ledger2.TakeoversAsync(ct)).Count);

        // Region 1's own store never saw the takeover (replication runs one way): its node still writes there.
        Assert.IsNull(await ledger1.WhyWritingIsRefusedAsync(3, ct));
    }

    [TestMethod]
    public async Task AFailbackRestore_OverAStoreRegion2WroteLast_OpensANewEpoch_WithoutAFailoverRole()
    {
        var ct = TestContext.CancellationToken;
        using var dir = new TempDirectory("rdr-failback-ledger-");
        using var storeScope = new TempDirectory("rdr-failback-store-");
        var store = new FileSystemStore(storeScope.Path);
        var time = new ManualTimeProvider(Start);
        var ledger = new GenerationLedger(store, time);
        var (r1, r1b, r2, unknown) = (Path.Combine(dir.Path, "r1.json"), Path.Combine(dir.Path, "r1b.json"), Path.Combine(dir.Path, "r2.json"), Path.Combine(dir.Path, "unknown.json"));

        // A restore in the region that wrote last stays in its epoch.
        Assert.AreEqual(1, (await ledger.TakeAndRecordAsync(r1, "first-boot", "i-r1", null, ct, "us-east-1")).Number);
        Assert.AreEqual(2, (await ledger.TakeAndRecordAsync(r1, "restore", "i-r1", "A", ct, "us-east-1")).Number);
        // Region 2's takeover (its records copied back into this store for the failback).
        Assert.AreEqual(1_000_001, (await ledger.TakeAndRecordAsync(r2, "takeover", "i-r2", "A", ct, "us-west-2", takeOver: true)).Number);
        Assert.AreEqual(1_000_002, (await ledger.TakeAndRecordAsync(r2, "restore", "i-r2", "B", ct, "us-west-2")).Number);

        // Region 1's node restores region 2's newest set as a plain restore (Agent:Role=primary): a new epoch.
        var failback = await ledger.TakeAndRecordAsync(r1b, "restore", "i-r1b", "C", ct, "us-east-1");
        Assert.AreEqual((2_000_001L, "takeover from region us-west-2 (restore)", "us-east-1", "C", true),
            (failback.Number, failback.Reason, failback.Region, failback.RestoredFrom, failback.IsTakeover));
        Assert.AreEqual(2_000_001, NodeStateFile.Read(r1b)!.Generation);
        // Region 2's node, still holding 1000002, is fenced in this store; so is every later write of its epoch.
        Assert.AreEqual($"a newer node took over this store (generation 2000001 was taken by {Environment.MachineName} (i-r1b) in region us-east-1 at 2026-11-30 12:00:00Z (takeover from region us-west-2 (restore))); this node holds generation 1000002 and stops writing backups",
            await ledger.WhyWritingIsRefusedAsync(1_000_002, ct));
        // The next restore in region 1 is in its own (new) epoch again; a node that knows no region never opens one by itself.
        Assert.AreEqual(2_000_002, (await ledger.TakeAndRecordAsync(r1b, "restore", "i-r1b", "D", ct, "us-east-1")).Number);
        Assert.AreEqual(2_000_003, (await ledger.TakeAndRecordAsync(unknown, "restore", null, "D", ct)).Number);
        CollectionAssert.AreEqual(new long[] { 1_000_001, 2_000_001 }, (await ledger.TakeoversAsync(ct)).Select(t => t.Number).ToList());
    }

    private static S3Store Open(CephS3Server s3, string bucket)
    {
        var options = new RegistryDR.Configuration.StoreOptions { Url = $"s3://{bucket}/site" };
        options.ConfigureFor(s3);
        return (S3Store)BackupStoreFactory.Create(options, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey));
    }
}
