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

    /// <summary>
    /// A set with split tables by hand, as docs/runbook.md describes it: pg_restore's pre-data
    /// section, each block range through Debian's <c>zstd -dc</c> (or <c>gunzip -c</c> for a
    /// gzip range) into psql's COPY ... FROM STDIN (FORMAT binary), then the data and post-data sections.
    /// </summary>
    [TestMethod]
    [DataRow(RegistryDR.Configuration.RangeCompressionCodec.Zstd, "zstd -dc")]
    [DataRow(RegistryDR.Configuration.RangeCompressionCodec.Gzip, "gunzip -c")]
    public async Task SplitSetInS3_RestoresWithAwsCliZstdOrGunzipPsqlAndPgRestoreByHand(RegistryDR.Configuration.RangeCompressionCodec codec, string decompress)
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-tools-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        await using var node = await TestNode.CreateAsync($"s3://{bucket}/registry", s => s.ConfigureFor(s3));
        node.Options.Database.SplitTablesFromMiB = 8.0 / 1024;
        node.Options.Database.RangeMiB = 64.0 / 1024;
        node.Options.Database.RangeCompression = codec;
        using var store = (RegistryDR.Stores.S3Store)node.CreateStore(s3);
        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        Assert.IsNotEmpty(manifest.SplitTables);
        var expected = await RegistrySchema.SnapshotAsync(node.ConnectionString);

        var set = Path.Combine(node.Root, "by-hand");
        var env = s3.AwsCliEnvironment.ToDictionary(kv => kv.Key, kv => (string?)kv.Value);
        await ProcessRunner.RunCheckedAsync(new ProcessSpec(CephS3Server.AwsCliPath,
            ["--endpoint-url", s3.Endpoint, "--region", s3.Region, "s3", "cp", "--recursive", "--only-show-errors",
             $"s3://{bucket}/registry/{BackupLayout.SetPrefix(manifest.BackupId)}", set]) { Environment = env });
        var parsed = BackupManifest.Parse(File.ReadAllBytes(Path.Combine(set, BackupManifest.FileName)), manifest.BackupId);

        var target = await node.Cluster.CreateDatabaseAsync();
        try
        {
            var pgEnv = new Dictionary<string, string?>
            {
                ["PGHOST"] = node.Cluster.Host, ["PGPORT"] = node.Cluster.Port.ToString(), ["PGUSER"] = node.Cluster.SuperUser,
                ["PGPASSWORD"] = node.Cluster.SuperUserPassword, ["PGDATABASE"] = target,
            };
            var dump = Path.Combine(set, "database.dump");
            async Task PgRestore(string section) => await ProcessRunner.RunCheckedAsync(new ProcessSpec(Path.Combine(node.Cluster.BinDirectory, "pg_restore"),
                ["--exit-on-error", "--no-password", "--section=" + section, "--dbname", target, dump]) { Environment = pgEnv });

            await PgRestore("pre-data");
            foreach (var table in parsed.SplitTables)
            {
                var copy = $"COPY {Quote(table.Schema)}.{Quote(table.Name)} ({string.Join(", ", table.Columns.Select(Quote))}) FROM STDIN (FORMAT binary)";
                foreach (var range in table.Ranges)
                {
                    var file = Path.Combine(set, parsed.Find(range)!.Key[BackupLayout.SetPrefix(manifest.BackupId).Length..]);
                    Assert.AreEqual(parsed.Find(range)!.Sha256, TestNode.Sha256(file), "awscli got different bytes than the manifest records");
                    StringAssert.EndsWith(file, codec == RegistryDR.Configuration.RangeCompressionCodec.Zstd ? ".copy.zst" : ".copy.gz");
                    await ProcessRunner.RunCheckedAsync(new ProcessSpec("/bin/bash",
                        ["-o", "pipefail", "-c", decompress + " \"$1\" | \"$2\" -X -q -v ON_ERROR_STOP=1 -c \"$3\"", "by-hand", file, Path.Combine(node.Cluster.BinDirectory, "psql"), copy])
                    { Environment = pgEnv });
                }
            }
            await PgRestore("data");
            await PgRestore("post-data");
            Assert.IsNull(expected.FirstDifference(await RegistrySchema.SnapshotAsync(node.Cluster.ConnectionString(target))));
        }
        finally
        {
            await node.Cluster.DropDatabaseAsync(target);
        }
    }

    private static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";
}
