using RegistryDR.Backup;
using RegistryDR.Processes;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Stores;

/// <summary>
/// A backup must not need RegistryDR to be read back: an operator with only awscli and
/// pg_restore can recover the database from the bucket by hand.
/// </summary>
[TestClass]
public sealed class StandardToolsTests
{
    [TestMethod]
    public async Task DumpInS3_DownloadedWithAwsCli_RestoresWithPgRestoreByHand()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-tools-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        await using var node = await TestNode.CreateAsync($"s3://{bucket}/registry", s => s.ConfigureFor(s3));
        using var store = (RegistryDR.Stores.S3Store)node.CreateStore(s3);
        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var expected = await RegistrySchema.SnapshotAsync(node.ConnectionString);

        var local = Path.Combine(node.Root, "by-hand.dump");
        var dumpKey = "registry/" + manifest.Find(BackupLayout.DatabaseArtifact)!.Key;
        var env = s3.AwsCliEnvironment.ToDictionary(kv => kv.Key, kv => (string?)kv.Value);
        await ProcessRunner.RunCheckedAsync(new ProcessSpec(CephS3Server.AwsCliPath,
            ["--endpoint-url", s3.Endpoint, "--region", s3.Region, "s3", "cp", $"s3://{bucket}/{dumpKey}", local]) { Environment = env });
        Assert.AreEqual(manifest.Find(BackupLayout.DatabaseArtifact)!.Sha256, TestNode.Sha256(local), "awscli got different bytes than the manifest records");

        // The manifest is plain JSON any tool can read, too.
        var manifestFile = Path.Combine(node.Root, "manifest.json");
        await ProcessRunner.RunCheckedAsync(new ProcessSpec(CephS3Server.AwsCliPath,
            ["--endpoint-url", s3.Endpoint, "--region", s3.Region, "s3", "cp", $"s3://{bucket}/registry/{BackupLayout.ManifestKey(manifest.BackupId)}", manifestFile]) { Environment = env });
        Assert.AreEqual(manifest.BackupId, BackupManifest.Parse(File.ReadAllBytes(manifestFile), manifest.BackupId).BackupId);

        var target = await node.Cluster.CreateDatabaseAsync();
        try
        {
            await ProcessRunner.RunCheckedAsync(new ProcessSpec(Path.Combine(node.Cluster.BinDirectory, "pg_restore"),
                ["--exit-on-error", "--no-password", "--host", node.Cluster.Host, "--port", node.Cluster.Port.ToString(), "--username", node.Cluster.SuperUser, "--dbname", target, local])
            {
                Environment = new Dictionary<string, string?> { ["PGPASSWORD"] = node.Cluster.SuperUserPassword },
            });
            var actual = await RegistrySchema.SnapshotAsync(node.Cluster.ConnectionString(target));
            Assert.IsNull(expected.FirstDifference(actual));
        }
        finally
        {
            await node.Cluster.DropDatabaseAsync(target);
        }
    }
}
