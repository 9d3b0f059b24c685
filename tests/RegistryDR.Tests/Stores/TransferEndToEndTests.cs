using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using static RegistryDR.Tests.Stores.TransferTestSupport;

namespace RegistryDR.Tests.Stores;

/// <summary>
/// The whole product over a bad network: a backup through a proxy that throttles, and a restore
/// through one that cuts downloads, give back every row.
/// </summary>
[TestClass]
public sealed class TransferEndToEndTests
{
    [TestMethod]
    public async Task BackupUnderThrottling_ThenRestoreWithCutDownloads_RestoresEveryRow()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-e2e");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        await using var node = await TestNode.CreateAsync($"s3://{bucket}/x", s =>
        {
            s.ConfigureFor(s3, partSizeMiB: 5);
            s.ServiceUrl = proxy.Endpoint;
            s.FastRetries();
        });
        await AddIncompressibleRowsAsync(node, megabytes: 12); // the dump spans three parts
        using var store = (S3Store)BackupStoreFactory.Create(node.Options.Store, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey));
        var before = await RegistrySchema.SnapshotAsync(node.ConnectionString);

        static bool Is(ProxiedRequest r, string artifactFile) => r.Key?.EndsWith("/" + artifactFile, StringComparison.Ordinal) == true;
        var backupFaults = new[]
        {
            proxy.Inject(r => r.Kind == "PutObject" && Is(r, "globals.sql"), Fault.SlowDown),
            proxy.Inject(r => r.Kind == "UploadPart" && r.QueryValue("partNumber") == "2", Fault.SlowDown, times: 2),
            proxy.Inject(r => r.Kind == "UploadPart" && r.QueryValue("partNumber") == "3", Fault.SlowDown),
            proxy.Inject(r => r.Kind == "CompleteMultipartUpload", Fault.SlowDown),
            proxy.Inject(r => r.Kind == "PutObject" && Is(r, "config.tar.gz"), Fault.Reset),
            proxy.Inject(r => r.Kind == "PutObject" && Is(r, "manifest.json"), Fault.SlowDown, times: 2),
        };

        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();

        foreach (var rule in backupFaults) Assert.AreEqual(rule.Times, rule.Fired, $"fault {rule.Fault} was not injected as planned");
        var sets = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.IsTrue(sets.Single().IsComplete);
        var dump = manifest.Find(BackupLayout.DatabaseArtifact)!;
        Assert.IsGreaterThan(10L * MiB, dump.Size);
        Assert.AreEqual(dump.Sha256, await Sha256OfObjectAsync(s3, bucket, "x/" + dump.Key), "the stored dump is not what was hashed while dumping");
        Assert.IsEmpty(await OpenUploadsAsync(s3, bucket));

        await node.WipeAsync();
        proxy.ClearFaults();
        var restoreFaults = new[]
        {
            proxy.Inject(r => r.Kind == "ListObjects", Fault.InternalError),
            proxy.Inject(r => r.Kind == "GetObject" && Is(r, "manifest.json"), Fault.Reset),
            // Clean cuts (a body short of its Content-Length): every byte sent before them is delivered,
            // so the bytes sent for the dump add up to its size exactly when nothing is fetched twice.
            proxy.Inject(r => r.Kind == "GetObject" && Is(r, "database.dump"), Fault.CutBody(3 * MiB)),
            proxy.Inject(r => r.Kind == "GetObject" && Is(r, "database.dump"), Fault.CutBody(4 * MiB), skip: 1),
            proxy.Inject(r => r.Kind == "GetObject" && Is(r, "config.tar.gz"), Fault.CutBody(100_000, reset: true)),
        };

        var result = await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System)
            // Fencing generations are not what this test is about (and need conditional creates the S3 store does not offer yet).
            .RestoreAsync(new RestoreRequest("latest", TakeGeneration: false));

        Assert.AreEqual(manifest.BackupId, result.Plan.BackupId);
        foreach (var rule in restoreFaults) Assert.AreEqual(1, rule.Fired, $"fault {rule.Fault} was not injected");
        var after = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        Assert.IsNull(before.FirstDifference(after), "database after restore differs");
        var dumpBytesSent = proxy.Requests.Where(r => r.Kind == "GetObject" && Is(r, "database.dump")).Sum(r => r.ResponseBytes);
        Assert.AreEqual(dump.Size, dumpBytesSent, "the cut downloads were restarted rather than resumed");
    }

    private static async Task AddIncompressibleRowsAsync(TestNode node, int megabytes)
    {
        await using var connection = new Npgsql.NpgsqlConnection(node.ConnectionString);
        await connection.OpenAsync();
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = $$"""
            CREATE TABLE layer_blobs (id int PRIMARY KEY, data bytea NOT NULL);
            INSERT INTO layer_blobs SELECT g, decode(string_agg(md5(g::text || ':' || s::text), ''), 'hex')
            FROM generate_series(1, {{megabytes * 64}}) g, generate_series(1, 1024) s GROUP BY g;
            """;
        await cmd.ExecuteNonQueryAsync();
    }
}
