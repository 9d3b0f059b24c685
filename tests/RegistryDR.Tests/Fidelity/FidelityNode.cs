using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// A node for the fidelity tests: one database (created empty, by <c>CREATE DATABASE</c> with the
/// options a test needs) on the shared cluster or on a test's own, a one-file config directory,
/// a store, and the options RegistryDR runs with. Unlike <see cref="TestNode"/> it seeds nothing:
/// each fidelity test builds exactly the kind of database it is about.
/// </summary>
internal sealed class FidelityNode : IAsyncDisposable
{
    public required PostgresCluster Cluster { get; init; }
    public required string Database { get; init; }
    public required RegistryDrOptions Options { get; init; }
    private string Root { get; init; } = "";

    /// <summary>A connection string that no server-side limit applies to (tests set such limits on purpose).</summary>
    public string ConnectionString => Unlimited(Cluster.ConnectionString(Database));

    public static string Unlimited(string connectionString) => new NpgsqlConnectionStringBuilder(connectionString)
    {
        Options = "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0 -c idle_session_timeout=0",
        CommandTimeout = 300,
    }.ConnectionString;

    /// <param name="createOptions">Appended to <c>CREATE DATABASE name</c>, e.g. <c>TEMPLATE template0 ENCODING 'SQL_ASCII' LOCALE 'C'</c>.</param>
    public static async Task<FidelityNode> CreateAsync(PostgresCluster? cluster = null, string createOptions = "", string? storeUrl = null,
        Action<StoreOptions>? store = null)
    {
        cluster ??= await TestEnvironment.PostgresAsync();
        var database = "rdrfid_" + Guid.NewGuid().ToString("N")[..16];
        await ExecuteAsync(Unlimited(cluster.ConnectionString()), $"CREATE DATABASE {database} {createOptions}");
        var root = Directory.CreateTempSubdirectory("rdr-fidelity-").FullName;
        var passwordFile = Path.Combine(root, "db-password");
        await File.WriteAllTextAsync(passwordFile, cluster.SuperUserPassword + "\n");
        File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var config = Path.Combine(root, "etc", "registry");
        Directory.CreateDirectory(config);
        await File.WriteAllTextAsync(Path.Combine(config, "config.yml"), "version: 0.1\n");
        var options = new RegistryDrOptions
        {
            Database = new DatabaseOptions
            {
                Host = cluster.Host,
                Port = cluster.Port,
                Name = database,
                User = cluster.SuperUser,
                PasswordFile = passwordFile,
                BinDirectory = cluster.BinDirectory,
            },
            Config = new ConfigDirectoriesOptions { Directories = [config] },
            Store = new StoreOptions { Url = storeUrl ?? "file://" + Path.Combine(root, "store") },
            Restore = new RestoreOptions { StagingDirectory = Path.Combine(root, "staging") },
            Agent = new AgentOptions { StateFile = Path.Combine(root, "state", "node-state.json") },
        };
        Directory.CreateDirectory(options.Restore.StagingDirectory!);
        if (storeUrl is null)
            Directory.CreateDirectory(Path.Combine(root, "store")); // a file store is never created implicitly
        store?.Invoke(options.Store);
        RegistryDrConfiguration.Validate(options);
        return new FidelityNode { Cluster = cluster, Database = database, Options = options, Root = root };
    }

    /// <summary>Every table with at least one byte of data is dumped as block ranges of 4 pages.</summary>
    public void ForceSplitting()
    {
        Options.Database.SplitTablesFromMiB = 1.0 / (1 << 20);
        Options.Database.RangeMiB = 32.0 / 1024;
        Options.Database.DumpJobs = 3;
        Options.Restore.Jobs = 3;
    }

    public IBackupStore CreateStore(CephS3Server? s3 = null) => s3 is null
        ? BackupStoreFactory.Create(Options.Store)
        : BackupStoreFactory.Create(Options.Store, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey));

    public Task<BackupManifest> BackupAsync(IBackupStore store) =>
        new BackupService(Options, store, NullLogger<BackupService>.Instance, TimeProvider.System).RunAsync();

    public Task<RestoreResult> RestoreAsync(IBackupStore store, string backupId = "latest") =>
        new RestoreService(Options, store, NullLogger<RestoreService>.Instance, TimeProvider.System).RestoreAsync(new RestoreRequest(backupId, TerminateSessions: true)); // no registry runs here

    public Task<DrillReport> DrillAsync(IBackupStore store, string backupId = "latest") =>
        new DrillService(Options, store, NullLoggerFactory.Instance, TimeProvider.System).RunAsync(backupId);

    /// <summary>The node loses its database (the usual disaster: the roles may or may not survive).</summary>
    public async Task DropDatabaseAsync()
    {
        var maintenance = Unlimited(Cluster.ConnectionString());
        if (await ScalarAsync<object?>($"SELECT 1 FROM pg_database WHERE datname = '{Database}'", maintenance) is null) return;
        await ExecuteAsync(maintenance, $"ALTER DATABASE {Database} IS_TEMPLATE false");
        await ExecuteAsync(maintenance, $"DROP DATABASE {Database} WITH (FORCE)");
    }

    public Task ExecuteAsync(string sql) => ExecuteAsync(ConnectionString, sql);

    public async Task<T> ScalarAsync<T>(string sql, string? connectionString = null)
    {
        await using var connection = new NpgsqlConnection(connectionString ?? ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The first column of every row, as text (NULL as <c>&lt;NULL&gt;</c>), in the query's order.</summary>
    public async Task<List<string>> LinesAsync(string sql, string? connectionString = null)
    {
        await using var connection = new NpgsqlConnection(connectionString ?? ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var lines = new List<string>();
        while (await reader.ReadAsync()) lines.Add(reader.IsDBNull(0) ? "<NULL>" : reader.GetValue(0).ToString()!);
        return lines;
    }

    /// <summary>Runs a SQL file with psql (ON_ERROR_STOP), with psql variables, in this node's database.</summary>
    public async Task PsqlFileAsync(string path, IReadOnlyDictionary<string, string> variables)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(Path.Combine(Cluster.BinDirectory, "psql"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[] { "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", Cluster.Host, "-p", Cluster.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     "-U", Cluster.SuperUser, "-d", Database, "-f", path })
            psi.ArgumentList.Add(a);
        foreach (var (name, value) in variables)
        {
            psi.ArgumentList.Add("-v");
            psi.ArgumentList.Add(name + "=" + value);
        }
        psi.Environment["PGPASSWORD"] = Cluster.SuperUserPassword;
        psi.Environment["PGOPTIONS"] = "-c statement_timeout=0";
        using var process = System.Diagnostics.Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        await process.WaitForExitAsync(timeout.Token);
        Assert.AreEqual(0, process.ExitCode, $"psql -f {path} failed: {await stderr}{await stdout}");
    }

    public static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    public async ValueTask DisposeAsync()
    {
        try { await DropDatabaseAsync(); } catch (Exception) { /* the cluster may be gone already */ }
        try { Directory.Delete(Root, recursive: true); } catch (Exception) { }
    }
}
