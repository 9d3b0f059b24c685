using RegistryDR.Agent;
using RegistryDR.Backup;
using RegistryDR.Fencing;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fencing;

/// <summary>Only the node holding the newest generation writes backups; an old node that comes back stops and says why.</summary>
[TestClass]
public sealed class FencingTests
{
    private static async Task<IReadOnlyList<long>> TakeConcurrentlyAsync(IBackupStore store, int nodes)
    {
        var ledger = new GenerationLedger(store, TimeProvider.System);
        var taken = await Task.WhenAll(Enumerable.Range(0, nodes).Select(i => Task.Run(() => ledger.TakeNextAsync("restore", $"i-{i}", null, CancellationToken.None))));
        return taken.Select(g => g.Number).Order().ToList();
    }

    [TestMethod]
    public async Task RacingNodes_NeverShareAGeneration_FileStore()
    {
        using var dirScope = new TempDirectory("rdr-fence-");
        var dir = dirScope.Path;
        CollectionAssert.AreEqual(Enumerable.Range(1, 12).Select(i => (long)i).ToList(), (await TakeConcurrentlyAsync(new FileSystemStore(dir), 12)).ToList());
    }

    [TestMethod]
    public async Task RacingNodes_NeverShareAGeneration_S3ConditionalWrites()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-fence-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        var options = new RegistryDR.Configuration.StoreOptions { Url = $"s3://{bucket}/site" };
        options.ConfigureFor(s3);
        using var store = (S3Store)BackupStoreFactory.Create(options, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey));
        Assert.IsTrue(((IBackupStore)store).CreateIsAtomic);
        CollectionAssert.AreEqual(Enumerable.Range(1, 8).Select(i => (long)i).ToList(), (await TakeConcurrentlyAsync(store, 8)).ToList());
    }

    [TestMethod]
    public async Task ANodeThatLostItsGeneration_StopsWriting_NamingTheNewNode_AndWritesNothing()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var store = node.CreateStore();
        var backups = new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System);
        // A restore by hand takes generation 1 and records it for this node.
        await backups.RunAsync();
        var restored = await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)); // no Registry:StopCommand, a live database
        Assert.AreEqual(1, restored.Generation!.Number);
        Assert.AreEqual(1, NodeStateFile.Read(node.Options.Agent.StateFile)!.Generation);
        await backups.RunAsync(); // still the writer

        // Another node takes over (it restored elsewhere, during a partition).
        await new GenerationLedger(store, TimeProvider.System).TakeNextAsync("restore", "i-newnode", null, CancellationToken.None);
        var before = (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Count;
        var ex = await Assert.ThrowsExactlyAsync<BackupFailedException>(() => backups.RunAsync());
        StringAssert.Contains(ex.Message, "a newer node took over this store (generation 2 was taken by");
        StringAssert.Contains(ex.Message, "i-newnode");
        StringAssert.Contains(ex.Message, "this node holds generation 1 and stops writing backups");
        Assert.AreEqual(before, (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Count, "a fenced node writes nothing");
    }

    [TestMethod]
    public async Task ANodeWithoutAGeneration_IsFencedOnceAnotherNodeTookOne()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var store = node.CreateStore();
        var backups = new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System);
        await backups.RunAsync(); // no fencing in use yet: a node set up by hand may write
        await new GenerationLedger(store, TimeProvider.System).TakeNextAsync("first-boot", "i-other", null, CancellationToken.None);
        var ex = await Assert.ThrowsExactlyAsync<BackupFailedException>(() => backups.RunAsync());
        StringAssert.Contains(ex.Message, "this node holds no generation");
    }

    [TestMethod]
    public async Task ARestoreRolledBackAfterTheSwap_KeepsTheGenerationItTook_AndTheNodeBacksUpAgain()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDirScope.Path, repositories: 5);
        var store = node.CreateStore();
        var backups = new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System);
        await backups.RunAsync();
        // The registry never answers: the restore swaps, waits, gives up and puts everything back.
        node.Options.Registry.HealthUrl = $"http://127.0.0.1:{RegistryDR.Tests.Backup.BackupFailureTests.FreePort()}/health";
        node.Options.Registry.HealthTimeout = TimeSpan.FromSeconds(1);
        var failed = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() =>
            new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)));
        StringAssert.Contains(failed.NodeState, "was put back as it was");
        StringAssert.EndsWith(failed.NodeState, "; this node keeps fencing generation 1 (taken before the swap), so its backups go on.");

        Assert.AreEqual(1L, (await new GenerationLedger(store, TimeProvider.System).CurrentAsync(CancellationToken.None))!.Number);
        var state = NodeStateFile.Read(node.Options.Agent.StateFile)!;
        Assert.AreEqual(1L, state.Generation);
        Assert.AreEqual(NodeStatus.Manual, state.Status, "no restore happened on this node");
        Assert.IsNull(state.PendingGeneration);
        var after = await backups.RunAsync(); // not refused as if another node had taken over
        Assert.IsTrue((await new BackupCatalog(store).ListAsync(CancellationToken.None)).Any(s => s.BackupId == after.BackupId && s.IsComplete));
    }

    /// <summary>The node state as a crash would leave it part-way through taking generation 2 (GenerationLedger.TakeAndRecordAsync).</summary>
    private static async Task<(TestNode Node, IBackupStore Store, BackupService Backups)> NodeTakingGenerationTwoAsync(TempDirectory storeDir, string? storeClaim)
    {
        var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 5);
        var store = node.CreateStore();
        var ledger = new GenerationLedger(store, TimeProvider.System);
        var first = await ledger.TakeAndRecordAsync(node.Options.Agent.StateFile, "restore", "i-this", null, CancellationToken.None);
        Assert.AreEqual(1, first.Number);
        const string claim = "0123456789abcdef0123456789abcdef";
        NodeStateFile.Write(node.Options.Agent.StateFile, NodeStateFile.Read(node.Options.Agent.StateFile)! with { PendingGeneration = 2, PendingClaim = claim });
        if (storeClaim is not null)
        {
            var two = new Generation(2, storeClaim == claim ? Environment.MachineName : "other-host", storeClaim == claim ? "i-this" : "i-other", "restore", null, DateTimeOffset.UtcNow) { Claim = storeClaim };
            Assert.IsTrue(await store.TryCreateAsync("generations/0000000002.json",
                System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(two, new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web)), CancellationToken.None));
        }
        return (node, store, new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System));
    }

    [TestMethod]
    public async Task TakingAGeneration_KilledBetweenItsSteps_TheStoreSaysWhetherTheNodeHoldsIt()
    {
        // Killed after recording the claim, before creating generation 2: the node still holds 1, the store's newest.
        using (var storeDir = new TempDirectory("rdr-store-"))
        {
            var (node, _, backups) = await NodeTakingGenerationTwoAsync(storeDir, storeClaim: null);
            await using var n = node;
            await backups.RunAsync();
        }
        // Killed after creating generation 2, before recording it: the store's copy carries this node's claim, so it holds 2.
        using (var storeDir = new TempDirectory("rdr-store-"))
        {
            var (node, _, backups) = await NodeTakingGenerationTwoAsync(storeDir, storeClaim: "0123456789abcdef0123456789abcdef");
            await using var n = node;
            await backups.RunAsync();
        }
        // Another node created generation 2 first: the claim is not this node's, and it is fenced off.
        using (var storeDir = new TempDirectory("rdr-store-"))
        {
            var (node, _, backups) = await NodeTakingGenerationTwoAsync(storeDir, storeClaim: "ffffffffffffffffffffffffffffffff");
            await using var n = node;
            var ex = await Assert.ThrowsExactlyAsync<BackupFailedException>(() => backups.RunAsync());
            StringAssert.Contains(ex.Message, "a newer node took over this store (generation 2 was taken by other-host (i-other)");
            StringAssert.Contains(ex.Message, "this node holds generation 1 and stops writing backups");
        }
    }
}
