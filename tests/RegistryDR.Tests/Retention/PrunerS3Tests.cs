using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Retention;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using static RegistryDR.Tests.Retention.RetentionTestSupport;

namespace RegistryDR.Tests.Retention;

/// <summary>The pruner against the real S3 server (Ceph RGW), under a bucket prefix.</summary>
[TestClass]
public sealed class PrunerS3Tests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);

    [TestMethod]
    public async Task S3Store_DryRunThenPrune_KeepsThePlannedSetsAndTheNewestVerified()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-retention-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        var storeOptions = new StoreOptions { Url = $"s3://{bucket}/p" };
        storeOptions.ConfigureFor(s3);
        using var store = (S3Store)BackupStoreFactory.Create(storeOptions, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey));
        // An object beside the sets that retention must not touch.
        await store.PutAsync("README", new MemoryStream("not a set"u8.ToArray()), CancellationToken.None);

        var complete = new List<string>();
        for (var day = 9; day >= 0; day--)
            complete.Add(await WriteSetAsync(store, Now.AddDays(-day).AddHours(-1)));
        var running = await WriteSetAsync(store, Now.AddMinutes(-3), complete: false);
        var abandoned = await WriteSetAsync(store, Now.AddDays(-4), complete: false);
        var time = new ManualTimeProvider(Now);
        await VerificationRecord.WriteAsync(store, complete[2], "drill", time, CancellationToken.None);
        var options = new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 };
        var pruner = new Pruner(store, options, time, new ListLogger<Pruner>());

        var before = await KeysAsync(store, "");
        var dry = await pruner.PruneAsync(dryRun: true, CancellationToken.None);
        CollectionAssert.AreEqual(before, await KeysAsync(store, ""), "a dry run deletes nothing");

        var plan = await pruner.PruneAsync(dryRun: false, CancellationToken.None);

        Assert.AreEqual(dry.Render(), plan.Render());
        CollectionAssert.AreEquivalent(new[] { complete[^1], complete[2], running }, plan.Ids(RetentionAction.Keep));
        Assert.AreEqual(8 + 1, plan.DeleteCount);  // eight complete sets and the abandoned one
        var expected = before.Where(k => k == "README" || plan.Ids(RetentionAction.Keep).Any(id => k.StartsWith(BackupLayout.SetPrefix(id), StringComparison.Ordinal))).ToList();
        CollectionAssert.AreEqual(expected, await KeysAsync(store, ""), "the kept sets whole, nothing of the deleted ones");
        Assert.Contains(VerificationRecord.Key(complete[2]), expected);
        Assert.DoesNotContain(abandoned, (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Select(s => s.BackupId).ToList());
    }
}
