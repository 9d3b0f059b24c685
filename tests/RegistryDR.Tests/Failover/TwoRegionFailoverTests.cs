using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Npgsql;
using RegistryDR.Agent;
using RegistryDR.Backup;
using RegistryDR.Fencing;
using RegistryDR.Registry;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Failover;

/// <summary>
/// Failover to region 2 and failback to region 1, end to end, on two "regions" of the tests' Ceph
/// RGW (a backup bucket and an image bucket each, S3ReplicationStandIn copying 1→2 late and out of
/// order): real PostgreSQL nodes, Debian's docker-registry and skopeo, <c>/usr/bin/aws s3 sync</c>
/// for the copy back (docs/runbook.md, "Fail over" and "Fail back").
/// </summary>
/// <remarks>
/// A push is an image pushed with skopeo into the region's registry plus a row in the node's
/// database (<c>events</c>, action <c>push</c>), so the database oracle (<see cref="DatabaseSnapshot"/>)
/// and the registry both say which pushes a region has.
/// </remarks>
[TestClass]
public sealed class TwoRegionFailoverTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);
    private const string Region1 = "us-east-1";
    private const string Region2 = "us-west-2";

    public TestContext TestContext { get; set; } = null!;

    private static string BlobKey(string digest) => $"registry/docker/registry/v2/blobs/sha256/{digest[7..9]}/{digest[7..]}/data";

    [TestMethod]
    [DataRow(false, DisplayName = "S3 replication without RTC")]
    [DataRow(true, DisplayName = "S3 replication with RTC (15 min cap)")]
    [Timeout(900_000, CooperativeCancellation = true)]
    public async Task Region1DiesMidReplication_Region2ServesWhatArrived_Region1sStaleWritesAreFenced_FailbackLosesNoRegion2Push(bool rtc)
    {
        var ct = TestContext.CancellationToken;
        var s3 = await TestEnvironment.S3Async();
        var id = Guid.NewGuid().ToString("N")[..8];
        var (backups1, backups2, images1, images2) = ($"rdr-e2e-b1-{id}", $"rdr-e2e-b2-{id}", $"rdr-e2e-i1-{id}", $"rdr-e2e-i2-{id}");
        foreach (var bucket in new[] { backups1, backups2, images1, images2 }) await s3.CreateBucketAsync(bucket);
        using var client = s3.CreateClient();
        using var rootScope = new TempDirectory("rdr-e2e-");
        var root = rootScope.Path;
        var clock = new ManualTimeProvider(Start);

        // What will be late: the newest set's database dump and one layer of the image pushed after the first set.
        string? lateSet = null;
        var layouts = Path.Combine(root, "images");
        var web = OciImages.CreateImageLayout(Path.Combine(layouts, "web"), "1.0", seed: 41, layers: 2, layerBytes: 3_000);
        var worker = OciImages.CreateImageLayout(Path.Combine(layouts, "worker"), "2.0", seed: 42, layers: 2, layerBytes: 3_000);
        var api = OciImages.CreateImageLayout(Path.Combine(layouts, "api"), "3.0", seed: 43, layers: 2, layerBytes: 3_000);
        var hotfix = OciImages.CreateImageLayout(Path.Combine(layouts, "hotfix"), "4.0", seed: 44, layers: 2, layerBytes: 3_000);
        var lateLayer = OciImages.ImageBlobs(api, OciImages.ManifestDigest(api, "3.0")).Layers[1];
        // Without RTC nothing bounds a lag (10 hours here); with RTC the stand-in caps it at 15 minutes.
        var timing = new ReplicationTiming
        {
            Seed = 15, BaseLag = TimeSpan.FromSeconds(1), Jitter = TimeSpan.FromMinutes(5), ReplicationTimeControl = rtc,
            LagFor = (key, _) => key == BlobKey(lateLayer) || (lateSet is not null && key.StartsWith($"site/{BackupLayout.SetPrefix(lateSet)}database", StringComparison.Ordinal))
                ? TimeSpan.FromHours(10) : null,
        };
        var backupReplication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(backups1, backups2), timing, clock);
        var imageReplication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(images1, images2), timing, clock);

        // ---- Region 1: a node (generation 1), its registry, two pushes, a set; one more push, another set.
        await using var node1 = await TestNode.CreateAsync($"s3://{backups1}/site", o => o.ConfigureFor(s3), repositories: 5);
        await node1.InitializeStoreAsync(s3);
        using var store1 = (S3Store)node1.CreateStore(s3);
        Assert.AreEqual(1, (await new GenerationLedger(store1, clock).TakeAndRecordAsync(node1.Options.Agent.StateFile, "first-boot", "i-r1", null, ct, Region1)).Number);
        var registry1Config = DockerRegistryProcess.WriteConfig(Path.Combine(root, "r1", "config.yml"), DockerRegistryProcess.FreePort(), s3, images1);
        var digests = new Dictionary<string, string>();
        string set1;
        BackupManifest set2Manifest;
        DatabaseSnapshot atSet1, region1Final;
        await using (var registry1 = await StartRegistryAsync(registry1Config, ct))
        {
            digests["apps/web"] = await PushAsync(node1, registry1, web, "1.0", "apps/web", ct);
            digests["apps/worker"] = await PushAsync(node1, registry1, worker, "2.0", "apps/worker", ct);
            set1 = (await Backup(node1, store1, ct)).BackupId;
            atSet1 = await RegistrySchema.SnapshotAsync(node1.ConnectionString);
            await backupReplication.DrainAsync(ct);
            await imageReplication.DrainAsync(ct);

            digests["apps/api"] = await PushAsync(node1, registry1, api, "3.0", "apps/api", ct);
            set2Manifest = await Backup(node1, store1, ct);
            // The set's id is known once it is written; its objects are noticed (their lags drawn) at the next scan.
            lateSet = set2Manifest.BackupId;
            region1Final = await RegistrySchema.SnapshotAsync(node1.ConnectionString);
        }
        var set2 = set2Manifest.BackupId;
        var dumpKey = set2Manifest.Artifacts.Single(a => a.Name == BackupLayout.DatabaseArtifact).Key;

        // Replication runs for an hour, then region 1 dies with what is still in flight.
        await backupReplication.ScanAsync(ct);
        await imageReplication.ScanAsync(ct);
        clock.Advance(TimeSpan.FromHours(1));
        await backupReplication.DeliverDueAsync(ct);
        await imageReplication.DeliverDueAsync(ct);
        var lostBackupObjects = backupReplication.DropInFlight().Select(p => p.Key).ToList();
        var lostImageObjects = imageReplication.DropInFlight().Select(p => p.Key).ToList();
        CollectionAssert.AreEqual(rtc ? Array.Empty<string>() : new[] { "site/" + dumpKey }, lostBackupObjects);
        CollectionAssert.AreEqual(rtc ? Array.Empty<string>() : new[] { BlobKey(lateLayer) }, lostImageObjects);

        // ---- Region 2 takes over: the newest set whose every artifact arrived (same config paths, as two hosts of one stack have).
        await using var node2 = await TestNode.CreateAsync($"s3://{backups2}/site", o => o.ConfigureFor(s3), repositories: 3);
        using var store2 = (S3Store)node2.CreateStore(s3);
        var registry2Config = DockerRegistryProcess.WriteConfig(Path.Combine(root, "r2", "config.yml"), DockerRegistryProcess.FreePort(), s3, images2);
        var rto = Stopwatch.StartNew();
        var failover = await new RestoreService(node2.Options, store2, TestNode.Logger<RestoreService>(), TimeProvider.System)
            .RestoreAsync(new RestoreRequest("latest", TerminateSessions: true) { InstanceId = "i-r2", Region = Region2, TakeOver = true }, cancellationToken: ct);
        var restoredInRegion2 = rtc ? set2 : set1;
        await using var registry2 = await StartRegistryAsync(registry2Config, ct);
        rto.Stop();
        Assert.AreEqual(restoredInRegion2, failover.Plan.BackupId);
        CollectionAssert.AreEqual(
            rtc ? Array.Empty<string>() : new[] { $"{set2} (MISSING 1 ARTIFACT: 1 of its 3 artifacts are missing or not whole yet: {dumpKey} is not in the store)" },
            failover.Plan.Skipped.Select(j => j.Describe()).ToList());
        Assert.AreEqual((1_000_001L, "takeover", Region2, restoredInRegion2), (failover.Generation!.Number, failover.Generation.Reason, failover.Generation.Region, failover.Generation.RestoredFrom));
        var expectedInRegion2 = rtc ? region1Final : atSet1;
        CollectionAssert.AreEqual(Array.Empty<string>(), expectedInRegion2.Differences(await RegistrySchema.SnapshotAsync(node2.ConnectionString)).ToList());
        var region1Pushes = new[] { $"apps/web:1.0@{digests["apps/web"]}", $"apps/worker:2.0@{digests["apps/worker"]}", $"apps/api:3.0@{digests["apps/api"]}" };
        CollectionAssert.AreEqual(rtc ? region1Pushes : region1Pushes[..2], await PushesAsync(node2, ct));

        // Every image whose blobs arrived is served; check-registry names exactly the one whose layer did not.
        foreach (var repository in rtc ? new[] { "apps/web", "apps/worker", "apps/api" } : new[] { "apps/web", "apps/worker" })
            await Skopeo.PullByDigestAsync(registry2.HostPort, repository, digests[repository], Path.Combine(root, "pulled2", repository.Replace('/', '-')), ct);
        var check2 = await CheckAsync(registry2, ct);
        Assert.AreEqual((true, 3, 3), (check2.Complete, check2.Repositories, check2.Tags));
        CollectionAssert.AreEqual(rtc ? Array.Empty<string>() : new[] { $"apps/api: 3.0 needs layer {lateLayer}" }, Problems(check2));
        TestContext.WriteLine($"RTC {(rtc ? "on" : "off")}: region 2 restored {restoredInRegion2}; lost sets: {(rtc ? "none" : set2)}; lost pushes: " +
                              $"{(rtc ? "none" : region1Pushes[2])}; restore start to registry serving: {rto.Elapsed.TotalSeconds:F1} s ({failover.Plan.Bytes} bytes)");

        // Region 2 serves: the lost image is pushed again from its source (the runbook's answer), and a new one; it backs up.
        await PushAsync(node2, registry2, api, "3.0", "apps/api", ct);
        digests["apps/hotfix"] = await PushAsync(node2, registry2, hotfix, "4.0", "apps/hotfix", ct);
        var set3 = (await Backup(node2, store2, ct)).BackupId;
        Assert.IsTrue((await CheckAsync(registry2, ct)).AllResolved, "the lost layer was pushed again");

        // ---- Region 1 comes back: its node still holds generation 1 in its own store and writes a set there, which replicates late.
        var backBackups = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(backups1, backups2), timing with { LagFor = null }, clock);
        var set4 = await Backup(node1, store1, ct);
        Assert.AreEqual(1, set4.Generation);
        await backBackups.DrainAsync(ct);
        var ledger2 = new GenerationLedger(store2, clock);
        Assert.IsNull(await ledger2.WhyWritingIsRefusedAsync(await ledger2.HeldAsync(NodeStateFile.Read(node2.Options.Agent.StateFile), ct), ct));
        Assert.AreEqual(set3, (await new RestorableSets(store2).SelectNewestAsync(ct)).Newest!.BackupId);
        var fencedBy = $"after {Environment.MachineName} (i-r2) in region {Region2} took over at generation 1000001 from set {restoredInRegion2}";
        Assert.AreEqual($"{set4.BackupId} (FENCED: written by {Environment.MachineName} (i-r1) in region {Region1} holding generation 1 {fencedBy})",
            (await new RestorableSets(store2).ListAsync(ct)).Single(j => j.BackupId == set4.BackupId).Describe());
        // Region 2 still backs up; its final backup (the terminating hook's, when its group goes to 0) is its newest set.
        var set5 = (await Backup(node2, store2, ct)).BackupId;
        Assert.AreEqual(set5, (await new RestorableSets(store2).SelectNewestAsync(ct)).Newest!.BackupId);
        var region2Final = await RegistrySchema.SnapshotAsync(node2.ConnectionString);
        var region2Pushes = await PushesAsync(node2, ct);
        CollectionAssert.AreEqual(region1Pushes[..(rtc ? 3 : 2)].Concat([$"apps/api:3.0@{digests["apps/api"]}", $"apps/hotfix:4.0@{digests["apps/hotfix"]}"]).ToList(), region2Pushes);

        // ---- Fail back (docs/runbook.md): region 1's node is stopped, replication 1→2 paused (no stand-in runs), region 2 stopped; copy back.
        var keys = new StandInCredentials(s3.AccessKey, s3.SecretKey);
        foreach (var (from, to) in new[] { ($"s3://{backups2}/site/", $"s3://{backups1}/site/"), ($"s3://{images2}/registry/", $"s3://{images1}/registry/") })
        {
            var sync = await AwsCli.RunAsync(keys, "s3", "sync", from, to, "--endpoint-url", s3.Endpoint, "--region", s3.Region, "--no-progress", "--only-show-errors");
            Assert.AreEqual(0, sync.ExitCode, sync.StandardError);
        }
        var fencedInRegion1 = (await new RestorableSets(store1).ListAsync(ct)).Select(j => (j.BackupId, j.Condition)).ToList();
        CollectionAssert.AreEqual(new[]
            {
                (set5, SetCondition.Restorable), (set4.BackupId, SetCondition.Fenced), (set3, SetCondition.Restorable),
                (set2, rtc ? SetCondition.Restorable : SetCondition.Fenced), (set1, SetCondition.Restorable),
            }, fencedInRegion1);
        // Replication 1→2 resumes before the restore: only what is written from now on replicates.
        var resumed = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(backups1, backups2), timing with { LagFor = null }, clock);

        // Region 1's new node restores region 2's final set as a plain restore (Agent:Role=primary) and takes over with a new epoch.
        node1.Options.Agent.StateFile = Path.Combine(root, "r1b-state", "node-state.json");
        var failback = await new RestoreService(node1.Options, store1, TestNode.Logger<RestoreService>(), TimeProvider.System)
            .RestoreAsync(new RestoreRequest("latest", TerminateSessions: true) { InstanceId = "i-r1b", Region = Region1 }, cancellationToken: ct);
        Assert.AreEqual((set5, 0), (failback.Plan.BackupId, failback.Plan.Skipped.Count));
        Assert.AreEqual((2_000_001L, $"takeover from region {Region2} (restore)", Region1, set5), (failback.Generation!.Number, failback.Generation.Reason, failback.Generation.Region, failback.Generation.RestoredFrom));
        CollectionAssert.AreEqual(Array.Empty<string>(), region2Final.Differences(await RegistrySchema.SnapshotAsync(node1.ConnectionString)).ToList());
        CollectionAssert.AreEqual(region2Pushes, await PushesAsync(node1, ct));
        await using (var registry1 = await StartRegistryAsync(registry1Config, ct))
        {
            foreach (var repository in new[] { "apps/web", "apps/worker", "apps/api", "apps/hotfix" })
                await Skopeo.PullByDigestAsync(registry1.HostPort, repository, digests[repository], Path.Combine(root, "pulled1", repository.Replace('/', '-')), ct);
            var check1 = await CheckAsync(registry1, ct);
            Assert.AreEqual((true, 4, 4, 0), (check1.Complete, check1.Repositories, check1.Tags, check1.Problems.Count));
        }

        // The new generation replicates to region 2's store: a region-2 node started by mistake stops writing there.
        await resumed.DrainAsync(ct);
        StringAssert.StartsWith(await ledger2.WhyWritingIsRefusedAsync(1_000_001, ct),
            $"a newer node took over this store (generation 2000001 was taken by {Environment.MachineName} (i-r1b) in region {Region1}");
        await Assert.ThrowsExactlyAsync<BackupFailedException>(() => Backup(node2, store2, ct));
    }

    private static async Task<BackupManifest> Backup(TestNode node, IBackupStore store, CancellationToken ct) =>
        await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync(cancellationToken: ct);

    /// <summary>A push: the image into the registry with skopeo, and its row in the node's database. Returns the manifest digest.</summary>
    private static async Task<string> PushAsync(TestNode node, DockerRegistryProcess registry, string layout, string tag, string repository, CancellationToken ct)
    {
        var digest = await Skopeo.PushAsync(layout, tag, registry.HostPort, repository, ct);
        await using var connection = new NpgsqlConnection(node.ConnectionString);
        await connection.OpenAsync(ct);
        await using var insert = new NpgsqlCommand("INSERT INTO events (occurred_at, action, payload) VALUES (@at, 'push', @payload::jsonb)", connection);
        insert.Parameters.AddWithValue("at", Start.UtcDateTime);
        insert.Parameters.AddWithValue("payload", $"{{\"repository\": \"{repository}\", \"tag\": \"{tag}\", \"digest\": \"{digest}\"}}");
        await insert.ExecuteNonQueryAsync(ct);
        return digest;
    }

    /// <summary>The pushes a node's database holds, oldest first: "apps/web:1.0@sha256:…".</summary>
    private static async Task<List<string>> PushesAsync(TestNode node, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(node.ConnectionString);
        await connection.OpenAsync(ct);
        await using var query = new NpgsqlCommand(
            "SELECT payload->>'repository', payload->>'tag', payload->>'digest' FROM events WHERE action = 'push' AND payload ? 'digest' ORDER BY id", connection);
        var pushes = new List<string>();
        await using var reader = await query.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) pushes.Add($"{reader.GetString(0)}:{reader.GetString(1)}@{reader.GetString(2)}");
        return pushes;
    }

    private async Task<RegistryCheckReport> CheckAsync(DockerRegistryProcess registry, CancellationToken ct) =>
        await new RegistryChecker(new RegistryCheckOptions { RegistryUrl = new Uri(registry.BaseUrl) },
            LoggerFactory.Create(_ => { }).CreateLogger<RegistryChecker>()).CheckAsync(ct);

    /// <summary>"repository: tag needs kind digest", one per missing blob.</summary>
    private static List<string> Problems(RegistryCheckReport report) =>
        report.Problems.SelectMany(p => p.MissingBlobs.SelectMany(b => b.Tags.Select(t => $"{p.Repository}: {t} needs {b.Kind} {b.Digest}"))).ToList();

    private static async Task<DockerRegistryProcess> StartRegistryAsync(string config, CancellationToken ct)
    {
        var port = int.Parse(System.Text.RegularExpressions.Regex.Match(await File.ReadAllTextAsync(config, ct), @"addr: 127\.0\.0\.1:(\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        return await DockerRegistryProcess.StartAsync(config, port, ct);
    }
}
