using System.Diagnostics;
using Npgsql;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// Checks the test infrastructure itself (real PostgreSQL cluster, registry schema, snapshots), so
/// a failing backup/restore test can be trusted to point at the product and not at the harness.
/// </summary>
[TestClass]
[DoNotParallelize] // One test stops and restarts the shared cluster.
public sealed class PostgresClusterTests
{
    private static PostgresCluster? s_cluster;
    private static string? s_database;

    private readonly TestContext _testContext;

    public PostgresClusterTests(TestContext testContext) => _testContext = testContext;

    private static PostgresCluster Cluster => s_cluster ?? throw new InvalidOperationException("Cluster not started.");

    private static string Database => s_database ?? throw new InvalidOperationException("Database not seeded.");

    [ClassInitialize]
    public static async Task StartClusterAsync(TestContext context)
    {
        var stopwatch = Stopwatch.StartNew();
        s_cluster = await PostgresCluster.StartAsync();
        context.WriteLine($"initdb + start: {stopwatch.ElapsedMilliseconds} ms ({s_cluster})");

        stopwatch.Restart();
        s_database = await s_cluster.CreateDatabaseAsync();
        await RegistrySchema.CreateAndSeedAsync(s_cluster.ConnectionString(s_database));
        context.WriteLine($"create database + seed: {stopwatch.ElapsedMilliseconds} ms");
    }

    [ClassCleanup]
    public static async Task StopClusterAsync()
    {
        if (s_cluster is not null)
        {
            await s_cluster.DisposeAsync();
            s_cluster = null;
        }
    }

    [TestMethod]
    public async Task Seeded_database_has_a_few_thousand_rows_and_gapped_sequences()
    {
        var snapshot = await RegistrySchema.SnapshotAsync(Cluster.ConnectionString(Database));
        _testContext.WriteLine(snapshot.ToString());
        foreach (var table in snapshot.TableNames)
        {
            _testContext.WriteLine($"  {table}: {snapshot.RowCount(table)} rows");
        }

        CollectionAssert.AreEquivalent(RegistrySchema.Tables.ToList(), snapshot.TableNames.ToList());
        Assert.IsTrue(snapshot.TotalRows is > 2_000 and < 20_000, $"unexpected size: {snapshot}");

        // Deleted rows and a rolled-back insert leave the sequence ahead of the row count.
        var usersSequence = snapshot.Sequence("users_id_seq");
        Assert.AreNotEqual($"last_value={snapshot.RowCount("users")} is_called=t", usersSequence);
        Assert.AreEqual("last_value=1 is_called=f", snapshot.Sequence("gc_run_seq"));
        Assert.AreEqual("registry_app", snapshot.Fact("relation public.tags owner"), "tables must be owned by registry_app");
        Assert.AreEqual("f", snapshot.Fact("role registry_readonly login"), "registry_readonly must be referenced through grants");
    }

    [TestMethod]
    public async Task Snapshots_of_an_unchanged_database_are_equal_and_a_changed_row_is_named()
    {
        var connectionString = Cluster.ConnectionString(Database);
        var first = await RegistrySchema.SnapshotAsync(connectionString);
        var second = await RegistrySchema.SnapshotAsync(connectionString);
        Assert.IsNull(first.FirstDifference(second));

        await using (var connection = new NpgsqlConnection(connectionString))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(
                "UPDATE tags SET name = name || '-changed' WHERE id = (SELECT min(id) FROM tags)", connection);
            Assert.AreEqual(1, await command.ExecuteNonQueryAsync());
        }

        var changed = await RegistrySchema.SnapshotAsync(connectionString);
        var difference = first.FirstDifference(changed);
        _testContext.WriteLine(difference ?? "(none)");
        Assert.IsNotNull(difference);
        Assert.StartsWith("relation public.tags rows: row hash differs (", difference);
        Assert.Contains("-changed", difference);
    }

    [TestMethod]
    public async Task Same_seed_gives_the_same_database_and_another_seed_does_not()
    {
        var again = await Cluster.CreateDatabaseAsync();
        var other = await Cluster.CreateDatabaseAsync();
        try
        {
            var reference = await Cluster.CreateDatabaseAsync();
            await RegistrySchema.CreateAndSeedAsync(Cluster.ConnectionString(reference), repositories: 50);
            await RegistrySchema.CreateAndSeedAsync(Cluster.ConnectionString(again), repositories: 50);
            await RegistrySchema.CreateAndSeedAsync(Cluster.ConnectionString(other), repositories: 50, seed: 7);

            var expected = await RegistrySchema.SnapshotAsync(Cluster.ConnectionString(reference));
            Assert.IsNull(expected.FirstDifference(await RegistrySchema.SnapshotAsync(Cluster.ConnectionString(again))));
            Assert.IsNotNull(expected.FirstDifference(await RegistrySchema.SnapshotAsync(Cluster.ConnectionString(other))));
            await Cluster.DropDatabaseAsync(reference);
        }
        finally
        {
            await Cluster.DropDatabaseAsync(again);
            await Cluster.DropDatabaseAsync(other);
        }
    }

    [TestMethod]
    public async Task Data_survives_a_stop_and_restart_and_the_server_is_unreachable_while_down()
    {
        var connectionString = Cluster.ConnectionString(Database);
        var before = await RegistrySchema.SnapshotAsync(connectionString);

        await Cluster.StopAsync();
        try
        {
            Assert.IsFalse(Cluster.IsRunning);
            await Assert.ThrowsAsync<NpgsqlException>(async () =>
            {
                await using var connection = new NpgsqlConnection(connectionString);
                await connection.OpenAsync();
            });
        }
        finally
        {
            var stopwatch = Stopwatch.StartNew();
            await Cluster.StartAgainAsync();
            _testContext.WriteLine($"restart: {stopwatch.ElapsedMilliseconds} ms");
        }

        var after = await RegistrySchema.SnapshotAsync(connectionString);
        Assert.IsNull(before.FirstDifference(after));
    }
}
