using Npgsql;
using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Restore;

/// <summary>
/// A restore that fails after it has started changing the node puts the node's OWN data back.
/// The live node is changed after the backup, so a rolled-back node and a restored one differ:
/// each test fails if the rollback leaves the backup's database or directories in place
/// (checked by removing the rollback's directory undo, then its database rename-back).
/// </summary>
[TestClass]
public sealed class RollbackTests
{
    [TestMethod]
    public async Task A_config_directory_that_cannot_be_swapped_in_after_the_database_swap_leaves_the_live_database_and_directories()
    {
        await using var fx = await Fixture.CreateAsync();
        // The stop command runs after extraction, just before the swap: it removes the second
        // directory's extracted copy, so the database and the first directory are swapped and the
        // second directory cannot be renamed in.
        var second = fx.Node.ConfigDirectories[1];
        var stagingOfSecond = Path.Combine(Path.GetDirectoryName(second)!, $".{Path.GetFileName(second)}.registry-dr-restore-{fx.Manifest.BackupId}");
        fx.Node.Options.Registry.StopCommand = ["/bin/rm", "-r", "--", stagingOfSecond];
        var before = await fx.SnapshotAsync();

        var failure = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest(fx.Manifest.BackupId)));

        Assert.IsInstanceOfType<DirectoryNotFoundException>(failure.InnerException, failure.ToString());
        StringAssert.Contains(failure.NodeState, $"{fx.Node.ConfigDirectories[0]} was put back as it was");
        StringAssert.Contains(failure.NodeState, $"database '{fx.Node.Database}' was put back as it was");
        await fx.AssertNodeIsAsItWasAsync(before);
    }

    [TestMethod]
    public async Task A_registry_that_fails_to_start_after_the_directory_swap_leaves_the_live_database_and_directories()
    {
        await using var fx = await Fixture.CreateAsync();
        // Fails the first time (the restored node), starts the second (the rolled-back node).
        var marker = Path.Combine(fx.Node.Root, "start-attempted");
        fx.Node.Options.Registry.StartCommand =
            ["/bin/sh", "-c", $"if [ -e '{marker}' ]; then exit 0; fi; touch '{marker}'; echo 'registry: bad configuration' >&2; exit 3"];
        var before = await fx.SnapshotAsync();

        var failure = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest(fx.Manifest.BackupId, TerminateSessions: true)));

        StringAssert.Contains(failure.Message, "registry: bad configuration");
        StringAssert.Contains(failure.NodeState, $"{fx.Node.ConfigDirectories[0]} was put back as it was");
        StringAssert.Contains(failure.NodeState, $"{fx.Node.ConfigDirectories[1]} was put back as it was");
        StringAssert.Contains(failure.NodeState, $"database '{fx.Node.Database}' was put back as it was");
        StringAssert.Contains(failure.NodeState, "the registry was started again on its previous data");
        await fx.AssertNodeIsAsItWasAsync(before);
    }

    [TestMethod]
    public async Task A_registry_that_never_answers_its_health_url_leaves_the_live_database_and_directories()
    {
        await using var fx = await Fixture.CreateAsync();
        fx.Node.Options.Registry.HealthUrl = $"http://127.0.0.1:{RegistryDR.Tests.Backup.BackupFailureTests.FreePort()}/";
        fx.Node.Options.Registry.HealthTimeout = TimeSpan.FromSeconds(2);
        var before = await fx.SnapshotAsync();

        var failure = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest(fx.Manifest.BackupId, TerminateSessions: true)));

        StringAssert.Contains(failure.Message, "did not answer");
        StringAssert.Contains(failure.NodeState, $"database '{fx.Node.Database}' was put back as it was");
        // Rules out a rollback that says the node serves again when it does not: the health URL is asked again.
        StringAssert.Contains(failure.NodeState, $"the registry was started again on its previous data but is NOT serving: The registry did not answer {fx.Node.Options.Registry.HealthUrl} with 2xx");
        await fx.AssertNodeIsAsItWasAsync(before);
    }

    [TestMethod]
    public async Task A_registry_healthy_again_on_its_previous_data_is_reported_as_serving()
    {
        await using var fx = await Fixture.CreateAsync();
        // Unhealthy on the restored data, healthy again once the start command runs the second time (the rollback's).
        var marker = Path.Combine(fx.Node.Root, "started-twice");
        var first = Path.Combine(fx.Node.Root, "started-once");
        var commands = Path.Combine(fx.Node.Root, "commands");
        fx.Node.Options.Registry.StartCommand = ["/bin/sh", "-c", $"echo start >> '{commands}'; if [ -e '{first}' ]; then touch '{marker}'; else touch '{first}'; fi"];
        fx.Node.Options.Registry.StopCommand = ["/bin/sh", "-c", $"echo stop >> '{commands}'"];
        await using var health = RegistryDR.Tests.Infrastructure.AwsStandIns.LoopbackHttpServer.Start(context =>
            RegistryDR.Tests.Infrastructure.AwsStandIns.LoopbackHttpServer.WriteAsync(context.Response, File.Exists(marker) ? 200 : 503, "text/plain", "x"));
        fx.Node.Options.Registry.HealthUrl = health.Endpoint + "/";
        fx.Node.Options.Registry.HealthTimeout = TimeSpan.FromSeconds(2);
        var before = await fx.SnapshotAsync();

        var failure = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest(fx.Manifest.BackupId, TerminateSessions: true)));

        StringAssert.Contains(failure.Message, "(last: HTTP 503)");
        // Rules out a rollback that puts the node's data back under a registry still running on the restored data.
        CollectionAssert.AreEqual(new[] { "stop", "start", "stop", "start" }, File.ReadAllLines(commands));
        StringAssert.StartsWith(failure.NodeState, "Node state: the registry, started on the restored data, was stopped; ");
        StringAssert.Contains(failure.NodeState, $"the registry was started again on its previous data and answers {health.Endpoint}/");
        Assert.IsFalse(failure.NodeState.Contains("NOT serving", StringComparison.Ordinal), failure.NodeState);
        await fx.AssertNodeIsAsItWasAsync(before);
    }

    [TestMethod]
    public async Task A_stop_command_that_fails_before_the_swap_is_said_as_such_and_the_start_command_runs_again()
    {
        await using var fx = await Fixture.CreateAsync();
        var commands = Path.Combine(fx.Node.Root, "commands");
        fx.Node.Options.Registry.StopCommand = ["/bin/sh", "-c", $"echo stop >> '{commands}'; echo 'cannot stop' >&2; exit 1"];
        fx.Node.Options.Registry.StartCommand = ["/bin/sh", "-c", $"echo start >> '{commands}'"];
        var before = await fx.SnapshotAsync();

        var failure = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest(fx.Manifest.BackupId)));

        // Rules out "started again" for a registry that may never have stopped.
        StringAssert.Contains(failure.NodeState, $"database '{fx.Node.Database}' was not touched");
        StringAssert.Contains(failure.NodeState, "the registry's stop command failed, so it may not have stopped; its start command was run again: the registry was started again on its previous data (no Registry:HealthUrl to check that it serves)");
        CollectionAssert.AreEqual(new[] { "stop", "start" }, File.ReadAllLines(commands));
        await fx.AssertNodeIsAsItWasAsync(before);
    }

    [TestMethod]
    public async Task A_registry_on_the_restored_data_that_cannot_be_stopped_is_not_started_again_and_the_rollback_says_so()
    {
        await using var fx = await Fixture.CreateAsync();
        await using var health = RegistryDR.Tests.Infrastructure.AwsStandIns.LoopbackHttpServer.Start(context =>
            RegistryDR.Tests.Infrastructure.AwsStandIns.LoopbackHttpServer.WriteAsync(context.Response, 503, "text/plain", "x"));
        var commands = Path.Combine(fx.Node.Root, "commands");
        // Stops once (before the swap), then fails (the rollback's stop).
        fx.Node.Options.Registry.StopCommand = ["/bin/sh", "-c", $"if grep -q stop '{commands}' 2>/dev/null; then echo stop >> '{commands}'; exit 1; fi; echo stop >> '{commands}'"];
        fx.Node.Options.Registry.StartCommand = ["/bin/sh", "-c", $"echo start >> '{commands}'"];
        fx.Node.Options.Registry.HealthUrl = health.Endpoint + "/";
        fx.Node.Options.Registry.HealthTimeout = TimeSpan.FromSeconds(2);

        var failure = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() => fx.Restorer().RestoreAsync(new RestoreRequest(fx.Manifest.BackupId, TerminateSessions: true)));

        StringAssert.StartsWith(failure.NodeState, "Node state: the registry, started on the restored data, could NOT be stopped (");
        StringAssert.Contains(failure.NodeState, ") and may still serve the restored data; it was not started again; ");
        CollectionAssert.AreEqual(new[] { "stop", "start", "stop" }, File.ReadAllLines(commands));
        Assert.IsFalse(failure.NodeState.Contains("started again on its previous data", StringComparison.Ordinal), failure.NodeState);
    }

    private sealed record NodeSnapshot(DatabaseSnapshot Database, IReadOnlyList<DirectorySnapshot> Directories);

    private sealed class Fixture : IAsyncDisposable
    {
        public required TestNode Node { get; init; }
        public required string StoreDirectory { get; init; }
        public required IBackupStore Store { get; init; }
        public required BackupManifest Manifest { get; init; }

        /// <summary>A node, its backup, then changes to the live database and both directories, so
        /// the backup differs from the live node in rows, sequences, schema and files.</summary>
        public static async Task<Fixture> CreateAsync()
        {
            var storeDirectory = Directory.CreateTempSubdirectory("rdr-store-").FullName;
            var node = await TestNode.CreateAsync("file://" + storeDirectory, repositories: 50);
            var store = node.CreateStore();
            var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();

            await using (var connection = new NpgsqlConnection(node.ConnectionString))
            {
                await connection.OpenAsync();
                await using var command = new NpgsqlCommand("""
                    DELETE FROM tags WHERE id % 3 = 0;
                    UPDATE users SET email = 'changed-after-the-backup@example.com' WHERE id % 2 = 0;
                    SELECT nextval('build_number_seq');
                    CREATE TABLE written_after_the_backup (id int PRIMARY KEY);
                    INSERT INTO written_after_the_backup VALUES (1), (2);
                    """, connection);
                await command.ExecuteNonQueryAsync();
            }

            File.WriteAllText(Path.Combine(node.ConfigDirectories[0], "license.json"), "{\"key_id\":\"renewed after the backup\"}\n");
            File.WriteAllText(Path.Combine(node.ConfigDirectories[0], "ssl", "added-after-the-backup.crt"), "new\n");
            File.SetUnixFileMode(Path.Combine(node.ConfigDirectories[1], "dtr.yml"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
            File.WriteAllText(Path.Combine(node.ConfigDirectories[1], "dtr.yml"), "storage:\n  s3:\n    bucket: moved-after-the-backup\n");
            return new Fixture { Node = node, StoreDirectory = storeDirectory, Store = store, Manifest = manifest };
        }

        public RestoreService Restorer() => new(Node.Options, Store, TestNode.Logger<RestoreService>(), TimeProvider.System);

        public async Task<NodeSnapshot> SnapshotAsync()
        {
            var database = await DatabaseSnapshot.CaptureAsync(Node.ConnectionString);
            var directories = Node.ConfigDirectories.Select(DirectorySnapshot.Take).ToList();
            return new NodeSnapshot(database, directories);
        }

        /// <summary>The live node equals the snapshot taken just before the restore, and is not the backup.</summary>
        public async Task AssertNodeIsAsItWasAsync(NodeSnapshot before)
        {
            var after = await SnapshotAsync();
            var database = before.Database.FirstDifference(after.Database);
            Assert.IsNull(database, $"the live database was not put back:\n{database}");
            for (var i = 0; i < before.Directories.Count; i++)
            {
                var directory = before.Directories[i].FirstDifference(after.Directories[i]);
                Assert.IsNull(directory, $"{Node.ConfigDirectories[i]} was not put back:\n{directory}");
            }

            // The data that only the live node has is there (a restored node would lack it).
            Assert.AreEqual(2, after.Database.RowCount("written_after_the_backup"));
            StringAssert.Contains(File.ReadAllText(Path.Combine(Node.ConfigDirectories[1], "dtr.yml")), "moved-after-the-backup");

            // Nothing of the failed restore is left: no scratch or previous database, no staging or previous directories.
            await using var admin = new NpgsqlConnection(Node.Cluster.ConnectionString());
            await admin.OpenAsync();
            await using var leftovers = new NpgsqlCommand("SELECT count(*) FROM pg_database WHERE datname LIKE @prefix", admin);
            leftovers.Parameters.AddWithValue("prefix", Node.Database + "_rdr_%");
            Assert.AreEqual(0L, (long)(await leftovers.ExecuteScalarAsync())!);
            foreach (var directory in Node.ConfigDirectories)
                Assert.IsEmpty(Directory.GetFileSystemEntries(Path.GetDirectoryName(directory)!, ".*registry-dr*"));
        }

        public async ValueTask DisposeAsync()
        {
            await Node.DisposeAsync();
            Directory.Delete(StoreDirectory, recursive: true);
        }
    }
}
