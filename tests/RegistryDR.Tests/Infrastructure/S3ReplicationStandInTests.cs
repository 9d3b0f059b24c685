using System.Text;
using Amazon.S3;
using Amazon.S3.Model;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// The S3 replication stand-in on two buckets of the Ceph server behaves as the Amazon S3 User
/// Guide says replication does (see <see cref="S3ReplicationStandIn"/>), so a failover test built on
/// it is about RegistryDR and not about the harness.
/// </summary>
[TestClass]
public sealed class S3ReplicationStandInTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    public TestContext TestContext { get; set; } = null!;

    private static async Task<(IAmazonS3 Client, string Source, string Destination)> BucketsAsync()
    {
        var s3 = await TestEnvironment.S3Async();
        var id = Guid.NewGuid().ToString("N")[..10];
        var (source, destination) = ($"regdr-repl-src-{id}", $"regdr-repl-dst-{id}");
        await s3.CreateBucketAsync(source);
        await s3.CreateBucketAsync(destination);
        return (s3.CreateClient(), source, destination);
    }

    private static Task PutAsync(IAmazonS3 client, string bucket, string key, string content) =>
        client.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = key, ContentBody = content });

    private static async Task<string?> ReadAsync(IAmazonS3 client, string bucket, string key)
    {
        try
        {
            using var response = await client.GetObjectAsync(bucket, key);
            using var reader = new StreamReader(response.ResponseStream, Encoding.UTF8);
            return await reader.ReadToEndAsync();
        }
        catch (AmazonS3Exception ex) when (ex.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    private static async Task<List<string>> KeysAsync(IAmazonS3 client, string bucket) =>
        [.. ((await client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = bucket })).S3Objects?.Select(o => o.Key) ?? []).Order(StringComparer.Ordinal)];

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task OnlyNewVersionsReplicate_EachAfterItsLagBySize_RtcCapsIt()
    {
        var (client, source, destination) = await BucketsAsync();
        using var _ = client;
        await PutAsync(client, source, "before-the-rule.txt", "existing objects need Batch Replication");
        var time = new ManualTimeProvider(Start);
        var timing = new ReplicationTiming { BaseLag = TimeSpan.FromSeconds(10), BytesPerSecond = 1000, Jitter = TimeSpan.Zero };
        var replication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(source, destination), timing, time);

        await PutAsync(client, source, "small.txt", new string('s', 100));
        await PutAsync(client, source, "large.bin", new string('l', 20_000));
        Assert.AreEqual(2, await replication.ScanAsync());
        Assert.AreEqual(0, await replication.ScanAsync(), "a version is queued once");
        CollectionAssert.AreEqual(
            new[] { ("small.txt", Start + TimeSpan.FromSeconds(10.1)), ("large.bin", Start + TimeSpan.FromSeconds(30)) },
            replication.InFlight.Select(p => (p.Key, p.DueAt)).ToList());

        time.Advance(TimeSpan.FromSeconds(15));
        var first = await replication.DeliverDueAsync();
        CollectionAssert.AreEqual(new[] { "small.txt" }, first.Select(e => e.Key).ToList());
        CollectionAssert.AreEqual(new[] { "small.txt" }, await KeysAsync(client, destination), "the large object is still on its way");
        time.Advance(TimeSpan.FromSeconds(15));
        Assert.AreEqual("large.bin", (await replication.DeliverDueAsync()).Single().Key);
        CollectionAssert.AreEqual(new[] { "large.bin", "small.txt" }, await KeysAsync(client, destination), "never the object that existed before the rule");
        Assert.AreEqual(new string('l', 20_000), await ReadAsync(client, destination, "large.bin"));

        // Without RTC an hour-long lag is an hour; with it, 15 minutes at most.
        foreach (var (rtc, expected) in new[] { (false, TimeSpan.FromHours(1) + TimeSpan.FromSeconds(0.001)), (true, TimeSpan.FromMinutes(15)) })
        {
            var slow = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(source, destination),
                timing with { BaseLag = TimeSpan.FromHours(1), ReplicationTimeControl = rtc }, time);
            await PutAsync(client, source, $"slow-{rtc}.txt", "x");
            await slow.ScanAsync();
            Assert.AreEqual(time.GetUtcNow() + expected, slow.InFlight.Single(p => p.Key == $"slow-{rtc}.txt").DueAt, $"RTC {rtc}");
        }
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task TheOrderIsRandomButTheSameForASeed()
    {
        var keys = Enumerable.Range(0, 8).Select(i => $"set/{i}.json").ToList();
        async Task<List<string>> OrderAsync(int seed)
        {
            var (client, source, destination) = await BucketsAsync();
            using var _ = client;
            var time = new ManualTimeProvider(Start);
            var replication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(source, destination), new ReplicationTiming { Seed = seed }, time);
            foreach (var key in keys) await PutAsync(client, source, key, key);
            await replication.ScanAsync();
            time.Advance(TimeSpan.FromHours(1));
            var delivered = (await replication.DeliverDueAsync()).Select(e => e.Key).ToList();
            CollectionAssert.AreEquivalent(keys, delivered);
            return delivered;
        }

        var first = await OrderAsync(seed: 7);
        var again = await OrderAsync(seed: 7);
        var other = await OrderAsync(seed: 8);

        CollectionAssert.AreEqual(first, again, "the same seed gives the same order");
        CollectionAssert.AreNotEqual(first, other, "another seed gives another order");
        CollectionAssert.AreNotEqual(keys, first, "not the order the objects were written in");
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task DeletesBecomeDeleteMarkers_VersionDeletesDoNot_AndALostVersionFails()
    {
        var (client, source, destination) = await BucketsAsync();
        using var _ = client;
        var replication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(source, destination), new ReplicationTiming(), new ManualTimeProvider(Start));
        foreach (var key in new[] { "a.txt", "b.txt" }) await PutAsync(client, source, key, key);
        await replication.DrainAsync();

        await client.DeleteObjectAsync(source, "a.txt");
        var bVersion = (await client.ListVersionsAsync(new ListVersionsRequest { BucketName = source, Prefix = "b.txt" })).Versions.Single().VersionId;
        await client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = source, Key = "b.txt", VersionId = bVersion });
        await PutAsync(client, source, "c.txt", "gone before it was copied");
        await replication.ScanAsync();
        var cVersion = replication.InFlight.Single(p => p.Key == "c.txt").SourceVersionId;
        await client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = source, Key = "c.txt", VersionId = cVersion });
        var events = await replication.DrainAsync();

        // a.txt: hidden behind a delete marker in the replica, its version still there (undeletable).
        Assert.IsNull(await ReadAsync(client, destination, "a.txt"));
        var aVersions = (await client.ListVersionsAsync(new ListVersionsRequest { BucketName = destination, Prefix = "a.txt" })).Versions;
        CollectionAssert.AreEqual(new[] { (true, true), (false, false) }, aVersions.Select(v => (v.IsDeleteMarker == true, v.IsLatest == true)).ToList());
        // b.txt: a delete of one version is not replicated.
        Assert.AreEqual("b.txt", await ReadAsync(client, destination, "b.txt"));
        // c.txt: reported as failed, never in the replica.
        Assert.IsNull(await ReadAsync(client, destination, "c.txt"));
        CollectionAssert.AreEquivalent(
            new[] { ("a.txt", true, ReplicationOutcome.Completed, (string?)null), ("c.txt", false, ReplicationOutcome.Failed, "the source version was deleted before it was replicated") },
            events.Select(e => (e.Key, e.IsDeleteMarker, e.Outcome, e.Reason)).ToList());

        // A rule without delete marker replication leaves the replica's object visible.
        var keep = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(source, destination, DeleteMarkerReplication: false), new ReplicationTiming(), new ManualTimeProvider(Start));
        await PutAsync(client, source, "d.txt", "d");
        await keep.DrainAsync();
        await client.DeleteObjectAsync(source, "d.txt");
        var notReplicated = (await keep.DrainAsync()).Single();
        Assert.AreEqual(("d.txt", ReplicationOutcome.Failed, "the rule does not replicate delete markers"), (notReplicated.Key, notReplicated.Outcome, notReplicated.Reason));
        Assert.AreEqual("d", await ReadAsync(client, destination, "d.txt"));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task PauseHoldsDeliveries_ReplicasAreNotReplicatedBack_AndADeadRegionLosesWhatWasInFlight()
    {
        var (client, a, b) = await BucketsAsync();
        using var _ = client;
        var time = new ManualTimeProvider(Start);
        var ledger = new ReplicaLedger();
        var forward = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(a, b), new ReplicationTiming(), time, ledger);
        var back = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(b, a), new ReplicationTiming(), time, ledger);

        await PutAsync(client, a, "x.txt", "from a");
        await forward.ScanAsync();
        forward.Pause();
        time.Advance(TimeSpan.FromHours(1));
        Assert.IsEmpty(await forward.DeliverDueAsync(), "paused: nothing is delivered");
        Assert.IsNull(await ReadAsync(client, b, "x.txt"));
        forward.Resume();
        Assert.AreEqual("x.txt", (await forward.DeliverDueAsync()).Single().Key);
        Assert.AreEqual("from a", await ReadAsync(client, b, "x.txt"));

        // The reverse rule sees the replica in b and leaves it; an object written in b itself goes to a.
        await PutAsync(client, b, "y.txt", "from b");
        Assert.AreEqual(1, await back.ScanAsync());
        Assert.AreEqual("y.txt", back.InFlight.Single().Key);
        await back.DrainAsync();
        Assert.AreEqual(0, await forward.ScanAsync(), "the replica of y.txt in a is not sent back to b");

        // Region a dies with z.txt noticed but not copied.
        await PutAsync(client, a, "z.txt", "lost");
        await forward.ScanAsync();
        var dropped = forward.DropInFlight();
        CollectionAssert.AreEqual(new[] { "z.txt" }, dropped.Select(p => p.Key).ToList());
        Assert.IsNull(await ReadAsync(client, b, "z.txt"));
        await Assert.ThrowsAsync<InvalidOperationException>(() => forward.ScanAsync());
        await Assert.ThrowsAsync<InvalidOperationException>(() => forward.DeliverDueAsync());
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task ItRunsOnItsOwn_Asynchronously()
    {
        var (client, source, destination) = await BucketsAsync();
        using var _ = client;
        var replication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(source, destination),
            new ReplicationTiming { BaseLag = TimeSpan.Zero, Jitter = TimeSpan.FromMilliseconds(200) });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.CancellationToken);
        var running = replication.RunAsync(TimeSpan.FromMilliseconds(50), stop.Token);
        foreach (var key in new[] { "1", "2", "3" }) await PutAsync(client, source, key, key);

        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        while (replication.Events.Count < 3)
        {
            Assert.IsFalse(limit.IsCancellationRequested, $"only {replication.Events.Count} of 3 replicated within 2 minutes");
            Assert.IsFalse(running.IsCompleted, $"the loop ended: {running.Exception}");
            await Task.Delay(50, TestContext.CancellationToken);
        }
        await stop.CancelAsync();
        await running;
        CollectionAssert.AreEqual(new[] { "1", "2", "3" }, await KeysAsync(client, destination));
    }
}
