using RegistryDR.Backup;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// What belongs to the database itself rather than to its objects, and what <c>pg_dump --create</c>
/// therefore carries: its settings (ALTER DATABASE ... SET, ALTER ROLE ... IN DATABASE ... SET),
/// its privileges (a hardened REVOKE CONNECT ... FROM PUBLIC must stay revoked), connection limit,
/// comment, owner, tablespace, locale provider and template flag. The cluster is this class's own:
/// it gets roles and a tablespace.
/// </summary>
[TestClass]
public sealed class DatabaseLevelPropertiesTests
{
    private static PostgresCluster? s_cluster;
    private static string? s_tablespaceDirectory;

    [ClassInitialize]
    public static async Task StartClusterAsync(TestContext context)
    {
        s_cluster = await PostgresCluster.StartAsync();
        // A tablespace directory must belong to the server's OS user.
        s_tablespaceDirectory = Path.Combine(s_cluster.RootDirectory, "registry_space");
        Directory.CreateDirectory(s_tablespaceDirectory);
        if (Environment.IsPrivilegedProcess)
        {
            using var chown = System.Diagnostics.Process.Start("chown", ["postgres", s_tablespaceDirectory])!;
            await chown.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromMinutes(1)).Token);
            Assert.AreEqual(0, chown.ExitCode, "chown postgres " + s_tablespaceDirectory);
        }
        var admin = FidelityNode.Unlimited(s_cluster.ConnectionString());
        await FidelityNode.ExecuteAsync(admin, """
            CREATE ROLE registry LOGIN PASSWORD 'registry';
            CREATE ROLE "ops team" NOLOGIN;
            CREATE ROLE reader NOLOGIN;
            """);
        // Not in a batch: CREATE TABLESPACE refuses to run inside a transaction block.
        await FidelityNode.ExecuteAsync(admin, $"CREATE TABLESPACE registry_space LOCATION '{s_tablespaceDirectory}'");
    }

    [ClassCleanup]
    public static async Task StopClusterAsync()
    {
        if (s_cluster is not null) await s_cluster.DisposeAsync();
    }

    private static string Properties(string db) => $"""
        ALTER DATABASE {db} SET search_path = registry, public, "$user";
        ALTER DATABASE {db} SET statement_timeout = '30s';
        ALTER DATABASE {db} SET app.note = 'it''s; here';
        ALTER ROLE registry IN DATABASE {db} SET work_mem = '16MB';
        ALTER ROLE "ops team" IN DATABASE {db} SET work_mem = '8MB';
        ALTER DATABASE {db} CONNECTION LIMIT 50;
        REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;
        GRANT CONNECT ON DATABASE {db} TO "ops team" WITH GRANT OPTION;
        SET ROLE "ops team";
        GRANT CONNECT ON DATABASE {db} TO reader;
        RESET ROLE;
        GRANT CREATE ON DATABASE {db} TO reader;
        COMMENT ON DATABASE {db} IS 'registry metadata – ünïcode';
        ALTER DATABASE {db} IS_TEMPLATE true;
        """;

    private static string[] ExpectedFacts(string db) =>
    [
        "owner registry",
        "acl {registry=CTc/registry,\"\\\"ops team\\\"=c*/registry\",\"reader=c/\\\"ops team\\\"\",reader=C/registry}",
        "connection limit 50",
        "comment registry metadata – ünïcode",
        "tablespace registry_space",
        "locale provider i icu de-DE collate C.UTF-8 ctype C.UTF-8",
        "template true",
        "setting (all roles) {\"search_path=registry, public, \\\"$user\\\"\",statement_timeout=30s,\"app.note=it's; here\"}",
        "setting ops team {work_mem=8MB}",
        "setting registry {work_mem=16MB}",
    ];

    private const string Facts = """
        SELECT 'owner ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = @db
        UNION ALL SELECT 'acl ' || coalesce(datacl::text, '(default)') FROM pg_database WHERE datname = @db
        UNION ALL SELECT 'connection limit ' || datconnlimit FROM pg_database WHERE datname = @db
        UNION ALL SELECT 'comment ' || coalesce(shobj_description(oid, 'pg_database'), '(none)') FROM pg_database WHERE datname = @db
        UNION ALL SELECT 'tablespace ' || t.spcname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE datname = @db
        UNION ALL SELECT format('locale provider %s icu %s collate %s ctype %s', datlocprovider, daticulocale, datcollate, datctype) FROM pg_database WHERE datname = @db
        UNION ALL SELECT 'template ' || datistemplate FROM pg_database WHERE datname = @db
        UNION ALL (SELECT 'setting ' || coalesce(r.rolname, '(all roles)') || ' ' || s.setconfig::text
                   FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
                   WHERE d.datname = @db ORDER BY 1)
        """;

    private static async Task<List<string>> FactsAsync(string database)
    {
        await using var connection = new Npgsql.NpgsqlConnection(FidelityNode.Unlimited(s_cluster!.ConnectionString()));
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(Facts, connection);
        command.Parameters.AddWithValue("db", database);
        await using var reader = await command.ExecuteReaderAsync();
        var lines = new List<string>();
        while (await reader.ReadAsync()) lines.Add(reader.GetString(0));
        return lines;
    }

    [TestMethod]
    public async Task DatabaseProperties_ComeBack_OverTheLiveDatabase_AndOnANodeThatLostIt()
    {
        await using var node = await FidelityNode.CreateAsync(s_cluster,
            "OWNER registry TABLESPACE registry_space TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LOCALE 'C.UTF-8'");
        await FidelityNode.ExecuteAsync(FidelityNode.Unlimited(s_cluster!.ConnectionString()), Properties(node.Database));
        await node.ExecuteAsync("CREATE TABLE public.repositories (id int PRIMARY KEY, name text); INSERT INTO public.repositories SELECT g, 'r' || g FROM generate_series(1, 50) g;");
        CollectionAssert.AreEqual(ExpectedFacts(node.Database), await FactsAsync(node.Database), "setup");
        var store = node.CreateStore();
        var manifest = await node.BackupAsync(store);

        // The usual restore: the database is still there and is replaced (and the previous one,
        // a template, dropped).
        await node.RestoreAsync(store);
        CollectionAssert.AreEqual(ExpectedFacts(node.Database), await FactsAsync(node.Database), "after a restore over the live database");
        Assert.AreEqual(0L, await node.ScalarAsync<long>("SELECT count(*) FROM pg_database WHERE datname LIKE '%rdr_prev%' OR datname LIKE '%rdr_restore'", FidelityNode.Unlimited(s_cluster.ConnectionString())));

        // The node lost its database.
        await node.DropDatabaseAsync();
        await node.RestoreAsync(store);
        CollectionAssert.AreEqual(ExpectedFacts(node.Database), await FactsAsync(node.Database), "after a restore onto a node without the database");
        Assert.AreEqual(50L, await node.ScalarAsync<long>("SELECT count(*) FROM public.repositories"));

        var drill = await node.DrillAsync(store, manifest.BackupId);
        Assert.IsTrue(drill.Succeeded, drill.Failure);
    }

    [TestMethod]
    public async Task Drill_AppliesAndChecksTheDatabaseProperties()
    {
        using var storeDirectory = new TempDirectory("rdr-store-");
        await using var node = await FidelityNode.CreateAsync(s_cluster, "OWNER registry", storeUrl: "file://" + storeDirectory.Path);
        await FidelityNode.ExecuteAsync(FidelityNode.Unlimited(s_cluster!.ConnectionString()), $"ALTER DATABASE {node.Database} SET statement_timeout = '30s'");
        var store = node.CreateStore();
        var manifest = await node.BackupAsync(store);
        var drill = await node.DrillAsync(store, manifest.BackupId);
        Assert.IsTrue(drill.Succeeded, drill.Failure);

        // A set whose recorded setting cannot be applied fails its drill, naming the setting.
        var manifestPath = Path.Combine(storeDirectory.Path, BackupLayout.ManifestKey(manifest.BackupId));
        var text = await File.ReadAllTextAsync(manifestPath);
        StringAssert.Contains(text, "\"statement_timeout=30s\"");
        await File.WriteAllTextAsync(manifestPath, text.Replace("\"statement_timeout=30s\"", "\"statement_timeout=thirty\"", StringComparison.Ordinal));
        drill = await node.DrillAsync(store, manifest.BackupId);
        Assert.IsFalse(drill.Succeeded);
        StringAssert.Contains(drill.Failure, "statement_timeout");
    }
}
