using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Server-side session limits (statement_timeout, lock_timeout, idle_in_transaction_session_timeout,
/// idle_session_timeout) set by ALTER SYSTEM, ALTER DATABASE, ALTER ROLE, ALTER ROLE ... IN
/// DATABASE or ALTER ROLE ALL apply to every session RegistryDR opens. pg_dump and pg_restore turn
/// them off for their own sessions; RegistryDR's own sessions (the snapshot holder, the range
/// COPYs, the counting, the restore's CREATE DATABASE and properties, psql for the roles) must too.
/// The limits here are 1 ms: any session that keeps them dies at its first pause. The cluster is
/// this class's own (ALTER SYSTEM and ALTER ROLE would reach every other test otherwise).
/// </summary>
[TestClass]
public sealed class DatabaseSessionLimitsTests
{
    private static PostgresCluster? s_cluster;

    private static readonly string[] Limits = ["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout"];

    [ClassInitialize]
    public static async Task StartClusterAsync(TestContext context) => s_cluster = await PostgresCluster.StartAsync();

    [ClassCleanup]
    public static async Task StopClusterAsync()
    {
        if (s_cluster is not null) await s_cluster.DisposeAsync();
    }

    [TestMethod]
    [DataRow("ALTER SYSTEM SET {0} = '1ms'", DisplayName = "ALTER SYSTEM")]
    [DataRow("ALTER DATABASE {1} SET {0} = '1ms'", DisplayName = "ALTER DATABASE")]
    [DataRow("ALTER ROLE postgres SET {0} = '1ms'", DisplayName = "ALTER ROLE")]
    [DataRow("ALTER ROLE postgres IN DATABASE {1} SET {0} = '1ms'", DisplayName = "ALTER ROLE IN DATABASE")]
    [DataRow("ALTER ROLE ALL SET {0} = '1ms'", DisplayName = "ALTER ROLE ALL")]
    public async Task OneMillisecondLimits_DoNotStopBackupRestoreOrDrill(string statement)
    {
        var cluster = s_cluster!;
        var admin = FidelityNode.Unlimited(cluster.ConnectionString());
        await using var node = await FidelityNode.CreateAsync(cluster);
        node.ForceSplitting();
        await node.ExecuteAsync("""
            CREATE TABLE public.events (id bigserial PRIMARY KEY, body text NOT NULL);
            INSERT INTO public.events (body) SELECT repeat('e', 100) || g FROM generate_series(1, 3000) g;
            CREATE TABLE public.small (id int PRIMARY KEY);
            INSERT INTO public.small SELECT generate_series(1, 10);
            """);
        const string Digest = "SELECT count(*) || ' ' || md5(string_agg(e::text, ',' ORDER BY id)) FROM public.events e";
        var before = await node.ScalarAsync<string>(Digest);
        var store = node.CreateStore();
        var marker = Random.Shared.Next(1000, 1_000_000);
        try
        {
            foreach (var limit in Limits)
                await FidelityNode.ExecuteAsync(admin, string.Format(System.Globalization.CultureInfo.InvariantCulture, statement, limit, node.Database));
            if (statement.StartsWith("ALTER SYSTEM", StringComparison.Ordinal))
                await ReloadAsync(admin, marker);

            var manifest = await node.BackupAsync(store);
            Assert.IsNotEmpty(manifest.SplitTables, "the range sessions should have been used");

            await node.DropDatabaseAsync();
            await node.RestoreAsync(store);
            Assert.AreEqual(before, await node.ScalarAsync<string>(Digest));
            Assert.AreEqual(10L, await node.ScalarAsync<long>("SELECT count(*) FROM public.small"));

            var drill = await node.DrillAsync(store, manifest.BackupId);
            Assert.IsTrue(drill.Succeeded, drill.Failure);

            // Limits set on the database (alone or for a role in it) belong to it and come back with it.
            var expected = statement.Contains("{1}", StringComparison.Ordinal)
                ? new[] { "{statement_timeout=1ms,lock_timeout=1ms,idle_in_transaction_session_timeout=1ms,idle_session_timeout=1ms}" }
                : [];
            CollectionAssert.AreEqual(expected, await node.LinesAsync(
                "SELECT setconfig::text FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()"));
        }
        finally
        {
            await FidelityNode.ExecuteAsync(admin, "ALTER ROLE postgres RESET ALL");
            await FidelityNode.ExecuteAsync(admin, "ALTER ROLE ALL RESET ALL");
            await FidelityNode.ExecuteAsync(admin, "ALTER SYSTEM RESET ALL");
            await ReloadAsync(admin, marker + 1);
        }
    }

    /// <summary>
    /// Reloads the configuration and waits (bounded) until new sessions see it: a harmless setting
    /// (gin_fuzzy_search_limit, which no test session overrides) carries a marker value.
    /// </summary>
    private static async Task ReloadAsync(string admin, int marker)
    {
        await FidelityNode.ExecuteAsync(admin, $"ALTER SYSTEM SET gin_fuzzy_search_limit = {marker}");
        await FidelityNode.ExecuteAsync(admin, "SELECT pg_reload_conf()");
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            await using var connection = new Npgsql.NpgsqlConnection(admin);
            await connection.OpenAsync(deadline.Token);
            await using var command = new Npgsql.NpgsqlCommand("SELECT current_setting('gin_fuzzy_search_limit')", connection);
            if (await command.ExecuteScalarAsync(deadline.Token) as string == marker.ToString(System.Globalization.CultureInfo.InvariantCulture)) return;
            await Task.Delay(20, deadline.Token);
        }
    }
}
