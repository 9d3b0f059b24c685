using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Backup;

/// <summary>
/// The heart of the product: back a node up, lose it, restore it, and find every row and
/// every file as it was. Against real PostgreSQL 15 and, for S3, a real Ceph RADOS Gateway.
/// </summary>
[TestClass]
public sealed class RoundTripTests
{
    [TestMethod]
    public async Task FileSystemStore_RoundTrip_RestoresEveryRowAndFile()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        await RoundTripAsync(node, node.CreateStore());
    }

    [TestMethod]
    public async Task S3Store_RoundTrip_RestoresEveryRowAndFile()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-roundtrip-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        // A small part size makes the dump a real multipart upload.
        await using var node = await TestNode.CreateAsync($"s3://{bucket}/site-a", s => s.ConfigureFor(s3, partSizeMiB: 5));
        await AddIncompressibleRowsAsync(node, megabytes: 12);
        // One pg_dump archive holds everything here (SplitTableTests cover split sets on S3).
        node.Options.Database.SplitTablesFromMiB = 0;
        using var store = (S3Store)node.CreateStore(s3);
        var manifest = await RoundTripAsync(node, store);
        Assert.IsGreaterThan(5L * 1024 * 1024, manifest.Find(BackupLayout.DatabaseArtifact)!.Size, "the dump should span several parts");
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

    private static async Task<BackupManifest> RoundTripAsync(TestNode node, IBackupStore store)
    {
        var before = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        var trees = node.ConfigDirectories.Select(DirectorySnapshot.Take).ToList();

        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        Assert.AreEqual(3, manifest.Artifacts.Count);
        Assert.AreEqual(node.Database, manifest.Postgres.Database);
        StringAssert.StartsWith(manifest.Postgres.ServerVersion, "15.");

        var sets = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.AreEqual(1, sets.Count);
        Assert.IsTrue(sets[0].IsComplete);

        await node.WipeAsync();
        foreach (var dir in node.ConfigDirectories) Assert.IsFalse(Directory.Exists(dir));

        var result = await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System)
            .RestoreAsync(new RestoreRequest("latest"));
        Assert.AreEqual(manifest.BackupId, result.Plan.BackupId);

        var after = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        var databaseDifference = before.FirstDifference(after);
        Assert.IsNull(databaseDifference, $"database after restore differs:\n{databaseDifference}");
        for (var i = 0; i < trees.Count; i++)
        {
            // registry.sock is excluded by the node's Config:Exclude glob.
            var difference = trees[i].Without("registry.sock").FirstDifference(DirectorySnapshot.Take(node.ConfigDirectories[i]));
            Assert.IsNull(difference, $"{node.ConfigDirectories[i]} after restore differs:\n{difference}");
        }
        // Nothing of the restore's own scaffolding is left beside the targets.
        foreach (var dir in node.ConfigDirectories)
            Assert.IsEmpty(Directory.GetFileSystemEntries(Path.GetDirectoryName(dir)!, ".*registry-dr*"));
        return manifest;
    }
}
