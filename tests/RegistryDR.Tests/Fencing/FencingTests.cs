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
}
