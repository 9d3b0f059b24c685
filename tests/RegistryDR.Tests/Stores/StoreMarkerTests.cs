using Amazon.S3.Model;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Stores;

/// <summary>The store marker on the real S3 server (Ceph RGW): a wrong bucket or prefix is S3's unmounted file system.</summary>
[TestClass]
public sealed class StoreMarkerTests
{
    private static async Task<(StoreOptions options, Amazon.Runtime.BasicAWSCredentials credentials, CephS3Server s3, string bucket)> BucketAsync()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-marker-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        var options = new StoreOptions { Url = $"s3://{bucket}/registry" };
        options.ConfigureFor(s3);
        return (options, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey), s3, bucket);
    }

    private static async Task<List<string>> KeysAsync(IBackupStore store)
    {
        var keys = new List<string>();
        await foreach (var item in store.ListAsync("", CancellationToken.None)) keys.Add(item.Key);
        keys.Sort(StringComparer.Ordinal);
        return keys;
    }

    [TestMethod]
    public async Task AnUnmarkedPrefix_IsRefused_NamingTheBucketAndPrefixToCheck_AndNothingIsWritten()
    {
        var (options, credentials, _, bucket) = await BucketAsync();
        using var raw = (S3Store)BackupStoreFactory.Create(options, credentials);
        using var opened = (IDisposable)BackupStoreFactory.Open(options, credentials);
        var store = (IBackupStore)opened;
        var expected = $"Store:Url s3://{bucket}/registry has no registry-dr-store.json: it was never initialised, or it is not the store you meant. " +
            $"Does Store:Url name the right bucket and prefix? (`aws s3 ls s3://{bucket}/registry/`) If this is a new store, run `registry-dr init-store` once.";
        var list = await Assert.ThrowsExactlyAsync<StoreNotInitializedException>(async () => await new BackupCatalog(store).ListAsync(CancellationToken.None));
        Assert.AreEqual(expected, list.Message);
        var put = await Assert.ThrowsExactlyAsync<StoreNotInitializedException>(() => store.PutAsync("backups/x/roles.sql", new MemoryStream([1]), CancellationToken.None));
        Assert.AreEqual(expected, put.Message);
        Assert.IsEmpty(await KeysAsync(raw));
    }

    [TestMethod]
    public async Task AMarkedPrefix_Works_TheMarkerIsWrittenOnce_AndTheWriteProbeLeavesNothing()
    {
        var (options, credentials, _, _) = await BucketAsync();
        using var raw = (S3Store)BackupStoreFactory.Create(options, credentials);
        var time = new ManualTimeProvider(new DateTimeOffset(2026, 5, 6, 7, 8, 9, TimeSpan.Zero));
        var (first, written) = await StoreMarker.WriteAsync(raw, "init-store", time, CancellationToken.None);
        Assert.IsTrue(written);
        time.Advance(TimeSpan.FromHours(1));
        var (second, writtenAgain) = await StoreMarker.WriteAsync(raw, "first boot", time, CancellationToken.None);
        Assert.IsFalse(writtenAgain, "created only if absent");
        Assert.AreEqual(first, second);
        Assert.AreEqual(new StoreMarker.Contents(1, new DateTimeOffset(2026, 5, 6, 7, 8, 9, TimeSpan.Zero), Environment.MachineName, "init-store"), await StoreMarker.ReadAsync(raw, CancellationToken.None));

        using var opened = (IDisposable)BackupStoreFactory.Open(options, credentials);
        var store = (IBackupStore)opened;
        await store.PutAsync("backups/20260506T070809Z-abcdef/roles.sql", new MemoryStream("-- roles"u8.ToArray()), CancellationToken.None);
        await store.CheckAccessAsync(CancellationToken.None);
        CollectionAssert.AreEqual(new[] { "backups/20260506T070809Z-abcdef/roles.sql" }, await KeysAsync(store), "the marker is not listed through the opened store");
        CollectionAssert.AreEqual(new[] { "backups/20260506T070809Z-abcdef/roles.sql", StoreMarker.Key }, await KeysAsync(raw), "the probe object is removed");
    }

    [TestMethod]
    public async Task APrefixWithBackupsButNoMarker_IsAdopted()
    {
        var (options, credentials, _, _) = await BucketAsync();
        using var raw = (S3Store)BackupStoreFactory.Create(options, credentials);
        await raw.PutAsync("generations/0000000001.json", new MemoryStream("{}"u8.ToArray()), CancellationToken.None);
        var logger = new RegistryDR.Tests.Retention.ListLogger<StoreMarkerTests>();
        using var opened = (IDisposable)BackupStoreFactory.Open(options, credentials, logger: logger);
        Assert.IsEmpty(await new BackupCatalog((IBackupStore)opened).ListAsync(CancellationToken.None));
        Assert.AreEqual("adopted", (await StoreMarker.ReadAsync(raw, CancellationToken.None))!.CreatedBy);
        StringAssert.Contains(string.Join("\n", logger.Entries.Select(e => e.Message)), $"has backups but no {StoreMarker.Key} (it was made before RegistryDR wrote one): writing it now");
    }

    [TestMethod]
    public async Task AStoreThatRefusesWrites_FailsTheWriteProbe_NamingStoreUrl()
    {
        var (options, credentials, s3, bucket) = await BucketAsync();
        using var raw = (S3Store)BackupStoreFactory.Create(options, credentials);
        await StoreMarker.WriteAsync(raw, "init-store", TimeProvider.System, CancellationToken.None);
        using var client = s3.CreateClient();
        await client.PutBucketPolicyAsync(new PutBucketPolicyRequest
        {
            BucketName = bucket,
            Policy = $$"""{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::{{bucket}}/*"}]}""",
        });
        options.RetryBudget = TimeSpan.Zero;
        using var opened = (IDisposable)BackupStoreFactory.Open(options, credentials);
        var failure = await Assert.ThrowsExactlyAsync<StoreUnavailableException>(() => ((IBackupStore)opened).CheckAccessAsync(CancellationToken.None));
        StringAssert.Contains(failure.Message, $"s3://{bucket}/registry");
        StringAssert.Contains(failure.Message, "AccessDenied");
    }
}
