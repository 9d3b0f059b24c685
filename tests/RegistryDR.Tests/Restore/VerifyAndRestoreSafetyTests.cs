using ICSharpCode.SharpZipLib.GZip;
using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Restore;

/// <summary>Verify catches what is wrong with a set, and a restore that cannot succeed never damages the node.</summary>
[TestClass]
public sealed class VerifyAndRestoreSafetyTests
{
    private sealed class Fixture : IAsyncDisposable
    {
        public required TestNode Node { get; init; }
        public required string StoreDir { get; init; }
        public required IBackupStore Store { get; init; }
        public required BackupManifest Manifest { get; init; }

        public static async Task<Fixture> CreateAsync()
        {
            var storeDir = Directory.CreateTempSubdirectory("rdr-store-").FullName;
            var node = await TestNode.CreateAsync("file://" + storeDir);
            var store = node.CreateStore();
            var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
            return new Fixture { Node = node, StoreDir = storeDir, Store = store, Manifest = manifest };
        }

        public string PathOf(string artifact) => Path.Combine(StoreDir, Manifest.Find(artifact)!.Key);

        // These nodes have no Registry:StopCommand, so restoring over their live database needs
        // TerminateSessions (the CLI's --terminate-sessions), as an operator would pass it.
        public RestoreService Restorer() => new(Node.Options, Store, TestNode.Logger<RestoreService>(), TimeProvider.System);

        public BackupVerifier Verifier() => new(Store, Node.Options.Database, TestNode.Logger<BackupVerifier>());

        public async ValueTask DisposeAsync()
        {
            await Node.DisposeAsync();
            Directory.Delete(StoreDir, recursive: true);
        }
    }

    private static void FlipByte(string path, long offset)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        var b = f.ReadByte();
        f.Position = offset;
        f.WriteByte((byte)(b ^ 0x5a));
    }

    [TestMethod]
    public async Task Verify_ValidSet_ChecksEveryArtifact()
    {
        await using var fx = await Fixture.CreateAsync();
        var report = await fx.Verifier().VerifyAsync(fx.Manifest);
        CollectionAssert.AreEquivalent(new[] { "database", "globals", "config" }, report.Artifacts.Select(a => a.Name).ToArray());
        StringAssert.StartsWith(report.Artifacts.Single(a => a.Name == "database").Detail, "pg_restore --list:");
    }

    [TestMethod]
    [DataRow("database")]
    [DataRow("config")]
    [DataRow("globals")]
    public async Task ChangedBytes_VerifyAndRestoreRefuse_NamingTheArtifact_AndTheNodeIsUntouched(string artifact)
    {
        await using var fx = await Fixture.CreateAsync();
        FlipByte(fx.PathOf(artifact), fx.Manifest.Find(artifact)!.Size / 2);
        var before = await RegistrySchema.SnapshotAsync(fx.Node.ConnectionString);
        var tree = DirectorySnapshot.Take(fx.Node.ConfigDirectories[0]);

        var verify = await Assert.ThrowsExactlyAsync<ArtifactCorruptException>(() => fx.Verifier().VerifyAsync(fx.Manifest));
        Assert.AreEqual(artifact, verify.Artifact);
        StringAssert.Contains(verify.Message, $"artifact '{artifact}'");

        var restore = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)));
        Assert.IsInstanceOfType<ArtifactCorruptException>(restore.InnerException);
        StringAssert.Contains(restore.Message, $"artifact '{artifact}'");
        StringAssert.Contains(restore.NodeState, "was not touched");
        Assert.IsNull(before.FirstDifference(await RegistrySchema.SnapshotAsync(fx.Node.ConnectionString)));
        Assert.IsNull(tree.FirstDifference(DirectorySnapshot.Take(fx.Node.ConfigDirectories[0])));
    }

    [TestMethod]
    public async Task Truncated_Artifact_IsRefused()
    {
        await using var fx = await Fixture.CreateAsync();
        var path = fx.PathOf("database");
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(f.Length / 3);
        var ex = await Assert.ThrowsExactlyAsync<ArtifactCorruptException>(() => fx.Verifier().VerifyAsync(fx.Manifest));
        StringAssert.Contains(ex.Message, "the manifest says");
    }

    [TestMethod]
    public async Task IncompleteSet_IsListedButNeverRestored()
    {
        await using var fx = await Fixture.CreateAsync();
        File.Delete(Path.Combine(fx.StoreDir, BackupLayout.ManifestKey(fx.Manifest.BackupId)));
        var sets = await new BackupCatalog(fx.Store).ListAsync(CancellationToken.None);
        Assert.AreEqual(BackupSetState.Incomplete, sets.Single().State);
        var ex = await Assert.ThrowsExactlyAsync<BackupNotFoundException>(() => fx.Restorer().RestoreAsync(new RestoreRequest("latest")));
        StringAssert.Contains(ex.Message, "no complete backup");
        await Assert.ThrowsExactlyAsync<BackupNotFoundException>(() => fx.Restorer().RestoreAsync(new RestoreRequest(fx.Manifest.BackupId)));
    }

    [TestMethod]
    public async Task ArchiveWithEscapingEntries_IsRefused_AndNothingIsWrittenOutside()
    {
        await using var fx = await Fixture.CreateAsync();
        var prefix = fx.Manifest.ConfigDirectories[0].EntryPrefix;
        var outside = Path.Combine(Path.GetDirectoryName(fx.Node.ConfigDirectories[0])!, "escaped");
        foreach (var (name, link) in new[] { ($"{prefix}/../escaped/pwned", (string?)null), ($"{prefix}/evil", "../../../../../../../../etc") })
        {
            // A hostile archive whose checksums match: only extraction's own rules stand between it and the disk.
            var archive = Path.Combine(fx.Node.Root, "hostile.tar.gz");
            using (var file = File.Create(archive))
            using (var gz = new GZipOutputStream(file))
            using (var tar = new TarOutputStream(gz, System.Text.Encoding.UTF8))
            {
                var entry = TarEntry.CreateTarEntry(name);
                if (link is null)
                {
                    entry.Size = 5;
                    tar.PutNextEntry(entry);
                    tar.Write("pwned"u8);
                }
                else
                {
                    entry.TarHeader.TypeFlag = TarHeader.LF_SYMLINK;
                    entry.TarHeader.LinkName = link;
                    tar.PutNextEntry(entry);
                }
                tar.CloseEntry();
            }
            var bytes = File.ReadAllBytes(archive);
            File.WriteAllBytes(fx.PathOf("config"), bytes);
            var manifest = fx.Manifest with
            {
                Artifacts = fx.Manifest.Artifacts.Select(a => a.Name == "config" ? a with { Size = bytes.Length, Sha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)) } : a).ToList(),
            };
            File.WriteAllBytes(Path.Combine(fx.StoreDir, BackupLayout.ManifestKey(manifest.BackupId)), manifest.ToJson());

            var ex = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)));
            StringAssert.Contains(ex.Message, name);
            Assert.IsFalse(Directory.Exists(outside), $"{name} wrote outside its target");
            Assert.IsTrue(File.Exists(Path.Combine(fx.Node.ConfigDirectories[0], "license.json")), "the live config must be untouched");
        }
    }

    [TestMethod]
    public async Task DryRun_PrintsThePlan_AndChangesNothing()
    {
        await using var fx = await Fixture.CreateAsync();
        await using (var c = new Npgsql.NpgsqlConnection(fx.Node.ConnectionString))
        {
            await c.OpenAsync();
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "DELETE FROM tags";
            await cmd.ExecuteNonQueryAsync();
        }
        var before = await RegistrySchema.SnapshotAsync(fx.Node.ConnectionString);
        var result = await fx.Restorer().RestoreAsync(new RestoreRequest("latest", DryRun: true));
        Assert.IsTrue(result.DryRun);
        Assert.AreEqual(fx.Manifest.BackupId, result.Plan.BackupId);
        Assert.IsTrue(result.Plan.Steps.Any(s => s.Contains("scratch database", StringComparison.Ordinal)));
        Assert.IsNull(before.FirstDifference(await RegistrySchema.SnapshotAsync(fx.Node.ConnectionString)));
    }

    [TestMethod]
    public async Task RestoreOverALiveNode_ReplacesIt_AndRemovesThePreviousCopies()
    {
        await using var fx = await Fixture.CreateAsync();
        var expected = await RegistrySchema.SnapshotAsync(fx.Node.ConnectionString);
        await using (var c = new Npgsql.NpgsqlConnection(fx.Node.ConnectionString))
        {
            await c.OpenAsync();
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "DELETE FROM tags; UPDATE users SET email = 'changed@example.com'";
            await cmd.ExecuteNonQueryAsync();
        }
        File.WriteAllText(Path.Combine(fx.Node.ConfigDirectories[1], "dtr.yml"), "changed after the backup");
        await fx.Restorer().RestoreAsync(new RestoreRequest(fx.Manifest.BackupId, TerminateSessions: true));
        Assert.IsNull(expected.FirstDifference(await RegistrySchema.SnapshotAsync(fx.Node.ConnectionString)));
        StringAssert.StartsWith(File.ReadAllText(Path.Combine(fx.Node.ConfigDirectories[1], "dtr.yml")), "storage:");
        await using var admin = new Npgsql.NpgsqlConnection(fx.Node.Cluster.ConnectionString());
        await admin.OpenAsync();
        await using var list = admin.CreateCommand();
        // This node's only: other classes' restores run in parallel on the shared cluster.
        list.CommandText = "SELECT coalesce(string_agg(datname, ', '), '') FROM pg_database WHERE starts_with(datname, $1)";
        list.Parameters.Add(new Npgsql.NpgsqlParameter { Value = fx.Node.Database + "_rdr_" });
        Assert.AreEqual("", (string)(await list.ExecuteScalarAsync())!, "scratch and previous databases are dropped");
    }

    [TestMethod]
    public async Task RegistryThatNeverGetsHealthy_FailsTheRestore_AndSaysWhereThePreviousDataIs()
    {
        await using var fx = await Fixture.CreateAsync();
        fx.Node.Options.Registry.HealthUrl = $"http://127.0.0.1:{RegistryDR.Tests.Backup.BackupFailureTests.FreePort()}/";
        fx.Node.Options.Registry.HealthTimeout = TimeSpan.FromSeconds(2);
        fx.Node.Options.Restore.KeepPrevious = false;
        // The live node differs from the backup (rows deleted and changed, a config file
        // rewritten), so a node left with the restored copy looks different from one put back:
        // this rules out a rollback that skips the database rename-back or the directory undo
        // (with a backup equal to the live node both would pass unseen).
        await using (var c = new Npgsql.NpgsqlConnection(fx.Node.ConnectionString))
        {
            await c.OpenAsync();
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "DELETE FROM tags; UPDATE users SET email = 'changed@example.com'";
            await cmd.ExecuteNonQueryAsync();
        }
        File.WriteAllText(Path.Combine(fx.Node.ConfigDirectories[1], "dtr.yml"), "changed after the backup");
        var database = await RegistrySchema.SnapshotAsync(fx.Node.ConnectionString);
        var trees = fx.Node.ConfigDirectories.Select(DirectorySnapshot.Take).ToList();
        var ex = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)));
        StringAssert.Contains(ex.Message, "did not answer");
        // Everything is put back: the previous database and directories are live again.
        StringAssert.Contains(ex.NodeState, "was put back as it was");
        Assert.IsNull(database.FirstDifference(await RegistrySchema.SnapshotAsync(fx.Node.ConnectionString)), "the live database was not put back");
        for (var i = 0; i < trees.Count; i++)
            Assert.IsNull(trees[i].FirstDifference(DirectorySnapshot.Take(fx.Node.ConfigDirectories[i])), $"{fx.Node.ConfigDirectories[i]} was not put back");
        Assert.AreEqual("changed after the backup", File.ReadAllText(Path.Combine(fx.Node.ConfigDirectories[1], "dtr.yml")));
    }
}
