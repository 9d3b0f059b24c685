using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Npgsql;
using RegistryDR.Configuration;
using RegistryDR.Continuous;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// One store (a file store, or a bucket on the shared Ceph RGW) and the nodes that protect a registry
/// into it in continuous mode. Every node is a dedicated PostgreSQL 15 cluster (initdb, its own
/// port) with archive_mode on and archive_command = the real <c>registry-dr wal-push</c> run by
/// PostgreSQL as its own user, so WAL reaches the store exactly as on a node. All nodes of a site
/// share the superuser password, as nodes of one deployment do (a physical restore brings the
/// roles of the cluster it restores).
/// </summary>
internal sealed class ContinuousSite : IAsyncDisposable
{
    /// <summary>archive_timeout of the test nodes: the recovery point on a quiet server (production default: 60 s).</summary>
    public static readonly TimeSpan ArchiveTimeout = TimeSpan.FromSeconds(5);

    private readonly string? _storeDirectory;
    private readonly List<ContinuousNode> _nodes = [];

    private ContinuousSite(string url, CephS3Server? s3, string? storeDirectory, string? password)
    {
        StoreUrl = url;
        S3 = s3;
        _storeDirectory = storeDirectory;
        Password = password ?? RandomNumberGenerator.GetHexString(32, lowercase: true);
    }

    public string StoreUrl { get; }
    public CephS3Server? S3 { get; }
    public string Password { get; }
    public string? StoreDirectory => _storeDirectory;

    /// <param name="password">The database password of the site's nodes; another site's for a second region whose nodes restore that site's clusters (one secret, replicated).</param>
    public static async Task<ContinuousSite> CreateAsync(bool s3, string? password = null)
    {
        if (!s3)
        {
            var dir = Directory.CreateTempSubdirectory("rdr-cont-store-").FullName;
            // The server's own user (archive_command) must reach the store's continuous/ directory.
            File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101);
            return await InitializedAsync(new ContinuousSite("file://" + dir, null, dir, password));
        }
        var server = await TestEnvironment.S3Async();
        var bucket = "rdr-cont-" + Guid.NewGuid().ToString("N")[..10];
        await server.CreateBucketAsync(bucket);
        return await InitializedAsync(new ContinuousSite($"s3://{bucket}/registry", server, null, password));
    }

    /// <summary>What `registry-dr init-store` does: every command (wal-push included) refuses a store without its marker.</summary>
    private static async Task<ContinuousSite> InitializedAsync(ContinuousSite site)
    {
        var store = site.CreateStore();
        try
        {
            await StoreMarker.WriteAsync(store, "init-store", TimeProvider.System, CancellationToken.None);
        }
        finally
        {
            (store as IDisposable)?.Dispose();
        }
        return site;
    }

    public void ConfigureStore(StoreOptions store)
    {
        store.Url = StoreUrl;
        if (S3 is not null) store.ConfigureFor(S3);
    }

    public IBackupStore CreateStore()
    {
        var options = new StoreOptions();
        ConfigureStore(options);
        return S3 is null ? BackupStoreFactory.Create(options) : BackupStoreFactory.Create(options, new Amazon.Runtime.BasicAWSCredentials(S3.AccessKey, S3.SecretKey));
    }

    /// <summary>What registry-dr needs in its environment to reach the store (S3 keys; nothing for a file store).</summary>
    public IReadOnlyDictionary<string, string> StoreEnvironment => S3 is null
        ? new Dictionary<string, string>()
        : new Dictionary<string, string>
        {
            ["AWS_ACCESS_KEY_ID"] = S3.AccessKey,
            ["AWS_SECRET_ACCESS_KEY"] = S3.SecretKey,
            ["AWS_EC2_METADATA_DISABLED"] = "true",
            ["AWS_CONFIG_FILE"] = "/dev/null",
            ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null",
        };

    /// <summary>A new node: a fresh cluster with archiving to this site's store, a database <c>registry</c> (seeded unless <paramref name="empty"/>), config directories and a configuration file.</summary>
    public async Task<ContinuousNode> StartNodeAsync(string name, bool empty = false)
    {
        var node = await ContinuousNode.StartAsync(this, name, empty);
        _nodes.Add(node);
        return node;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes) await node.DisposeAsync();
        if (_storeDirectory is not null)
        {
            try { Directory.Delete(_storeDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}

internal sealed class ContinuousNode : IAsyncDisposable
{
    public const string Database = "registry";

    public required ContinuousSite Site { get; init; }
    public required PostgresCluster Cluster { get; init; }
    public required string Root { get; init; }
    public required string ConfigPath { get; init; }
    public required RegistryDrOptions Options { get; init; }
    public string Name { get; init; } = "";

    public string ConnectionString(string database = Database) => Cluster.ConnectionString(database);

    /// <summary>The registry-dr executable the tests build (the archive_command runs it as PostgreSQL's user).</summary>
    public static string RegistryDrDll => Path.Combine(AppContext.BaseDirectory, "registry-dr.dll");

    internal static async Task<ContinuousNode> StartAsync(ContinuousSite site, string name, bool empty)
    {
        var root = Directory.CreateTempSubdirectory($"rdr-cont-{name}-").FullName;
        // Readable by the server's user: wal-push reads the configuration and the node state file.
        File.SetUnixFileMode(root, (UnixFileMode)0b111_101_101);
        var passwordFile = Path.Combine(root, "db-password");
        File.WriteAllText(passwordFile, site.Password + "\n");
        File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var state = Path.Combine(root, "state");
        Directory.CreateDirectory(state);
        File.SetUnixFileMode(state, (UnixFileMode)0b111_101_101);
        var etc = Path.Combine(root, "etc", "registry");
        Directory.CreateDirectory(Path.Combine(etc, "auth"));
        File.WriteAllText(Path.Combine(etc, "config.yml"), $"version: 0.1\nnode: {name}\n");
        File.WriteAllText(Path.Combine(etc, "auth", "htpasswd"), "admin:$2y$05$abcdefghijklmnopqrstuv\n");
        var staging = Path.Combine(root, "staging");
        Directory.CreateDirectory(staging);
        var configPath = Path.Combine(root, "registry-dr.json");

        var cluster = await PostgresCluster.StartAsync(new PostgresCluster.ServerOptions
        {
            Password = site.Password,
            Environment = site.StoreEnvironment,
            Settings = new Dictionary<string, string>
            {
                ["wal_level"] = "replica",
                ["archive_mode"] = "on",
                ["archive_command"] = $"dotnet {RegistryDrDll} wal-push --config {configPath} %p",
                ["archive_timeout"] = ((int)ContinuousSite.ArchiveTimeout.TotalSeconds).ToString(System.Globalization.CultureInfo.InvariantCulture) + "s",
                ["track_commit_timestamp"] = "on",
                ["synchronous_commit"] = "on",
            },
        });
        var script = cluster.WriteControlScript(Path.Combine(root, "postgres.sh"));
        var options = new RegistryDrOptions
        {
            Database = new DatabaseOptions
            {
                Mode = DatabaseMode.Continuous,
                Host = cluster.Host,
                Port = cluster.Port,
                Name = Database,
                User = cluster.SuperUser,
                PasswordFile = passwordFile,
                BinDirectory = cluster.BinDirectory,
            },
            Continuous = new ContinuousOptions
            {
                DataDirectory = cluster.DataDirectory,
                ArchiveTimeout = ContinuousSite.ArchiveTimeout,
                ServerStopCommand = ["bash", script, "stop"],
                ServerStartCommand = ["bash", script, "start"],
                ServerTimeout = TimeSpan.FromMinutes(3),
                RecoveryTimeout = TimeSpan.FromMinutes(10),
                BaseBackupTimeout = TimeSpan.FromMinutes(10),
            },
            Config = new ConfigDirectoriesOptions { Directories = [etc] },
            Restore = new RestoreOptions { StagingDirectory = staging, Jobs = 2 },
            Agent = new AgentOptions { StateFile = Path.Combine(state, "node-state.json") },
            Monitoring = new RegistryDR.Monitoring.MonitoringOptions { Enabled = false, EmfLogPath = "" },
            Schedule = new ScheduleOptions { DrillCron = "", Cron = "0 0 * * * ?" },
        };
        site.ConfigureStore(options.Store);
        RegistryDrConfiguration.Validate(options);
        WriteConfig(options, configPath);

        var node = new ContinuousNode { Site = site, Cluster = cluster, Root = root, ConfigPath = configPath, Options = options, Name = name };
        if (!empty)
        {
            await cluster.CreateDatabaseAsync(Database);
            await RegistrySchema.CreateAndSeedAsync(cluster.ConnectionString(Database), repositories: 30);
            await node.ExecuteAsync("CREATE TABLE pushes (id bigint PRIMARY KEY, node text NOT NULL, payload text NOT NULL, committed_at timestamptz NOT NULL DEFAULT clock_timestamp())");
        }
        return node;
    }

    /// <summary>Writes the configuration file again after a test changed <see cref="Options"/>.</summary>
    public void WriteConfig() => WriteConfig(Options, ConfigPath);

    /// <summary>The configuration file the executable reads (wal-push, the worker): the node's options, 0644 (it holds no secret).</summary>
    private static void WriteConfig(RegistryDrOptions o, string path)
    {
        var json = JsonSerializer.Serialize(new
        {
            Database = new { Mode = o.Database.Mode.ToString(), o.Database.Host, o.Database.Port, o.Database.Name, o.Database.User, o.Database.PasswordFile, o.Database.BinDirectory },
            Continuous = new
            {
                o.Continuous.DataDirectory,
                ArchiveTimeout = o.Continuous.ArchiveTimeout.ToString(),
                o.Continuous.ServerStopCommand,
                o.Continuous.ServerStartCommand,
                ServerTimeout = o.Continuous.ServerTimeout.ToString(),
                RecoveryTimeout = o.Continuous.RecoveryTimeout.ToString(),
                BaseBackupTimeout = o.Continuous.BaseBackupTimeout.ToString(),
            },
            Config = new { o.Config.Directories },
            Store = new
            {
                o.Store.Url, o.Store.ServiceUrl, o.Store.Region, o.Store.ForcePathStyle,
                Checksums = o.Store.Checksums.ToString(), ServerSideEncryption = o.Store.ServerSideEncryption.ToString(), o.Store.PartSizeMiB,
            },
            Restore = new { o.Restore.StagingDirectory, o.Restore.Jobs },
            Agent = new { o.Agent.StateFile, o.Agent.Region, o.Agent.InstanceId },
            Monitoring = new { Enabled = false, EmfLogPath = "" },
            Schedule = new { o.Schedule.Cron, DrillCron = "" },
        }, new JsonSerializerOptions { WriteIndented = true, DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull });
        File.WriteAllText(path, json);
        File.SetUnixFileMode(path, (UnixFileMode)0b110_100_100);
    }

    public async Task ExecuteAsync(string sql, string database = Database)
    {
        await using var connection = new NpgsqlConnection(ConnectionString(database));
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        await cmd.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql, string database = Database)
    {
        await using var connection = new NpgsqlConnection(ConnectionString(database));
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        return (T)(await cmd.ExecuteScalarAsync())!;
    }

    /// <summary>Forces the current WAL segment out and waits (bounded) until the server reports it archived, or throws with the archiver's state.</summary>
    public async Task SwitchAndWaitArchivedAsync(TimeSpan? bound = null)
    {
        var segment = await ScalarAsync<string>("SELECT pg_walfile_name(pg_switch_wal())", "postgres");
        await WaitArchivedAsync(segment, bound);
    }

    public async Task WaitArchivedAsync(string segment, TimeSpan? bound = null)
    {
        var deadline = DateTime.UtcNow + (bound ?? TimeSpan.FromMinutes(3));
        while (true)
        {
            var last = await ScalarAsync<string?>("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", "postgres");
            if (last is { Length: 24 } && string.CompareOrdinal(last, segment) >= 0) return;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{segment} was not archived on node {Name} in time; pg_stat_archiver: {await ArchiverAsync()}; server log: {Cluster.LogTail(15)}");
            await Task.Delay(200);
        }
    }

    public async Task<string> ArchiverAsync() =>
        await ScalarAsync<string>("SELECT format('archived %s (last %s), failed %s (last %s)', archived_count, last_archived_wal, failed_count, last_failed_wal) FROM pg_stat_archiver", "postgres");

    public IBackupStore CreateStore() => Site.CreateStore();

    /// <summary>Runs the real executable with this node's configuration (and the store's keys in its environment).</summary>
    public async Task<(int ExitCode, string Stdout, string Stderr)> RunCliAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(RegistryDrDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(ConfigPath);
        foreach (var (k, v) in Site.StoreEnvironment) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(10));
        return (p.ExitCode, await stdout, await stderr);
    }

    /// <summary>Starts <c>registry-dr worker</c> as a child process (killed with the node in the kill test).</summary>
    public Process StartWorker()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(RegistryDrDll);
        psi.ArgumentList.Add("worker");
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(ConfigPath);
        foreach (var (k, v) in Site.StoreEnvironment) psi.Environment[k] = v;
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    public async ValueTask DisposeAsync()
    {
        try { await Cluster.DisposeAsync(); } catch (Exception) { }
        try { Directory.Delete(Root, recursive: true); } catch (Exception) { }
    }
}

/// <summary>
/// A registry-like write load: one writer committing one row per transaction (a push), paced so
/// the test's WAL stays small, recording for every row the moment its COMMIT was acknowledged.
/// It stops when cancelled or when its server dies.
/// </summary>
internal sealed class PushLoad
{
    private readonly List<(long Id, DateTimeOffset AckedAt)> _acked = [];
    private long _next = 1;
    private TaskCompletionSource? _pauseRequested;
    private readonly TaskCompletionSource _paused = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _resumed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public IReadOnlyList<(long Id, DateTimeOffset AckedAt)> Acked { get { lock (_acked) return _acked.ToList(); } }
    public long Attempted => Interlocked.Read(ref _next) - 1;

    public static string Payload(long id) => $"sha256:{Convert.ToHexStringLower(SHA256.HashData(BitConverter.GetBytes(id)))}";

    /// <summary>Runs until cancelled or the connection dies; returns how it ended.</summary>
    public async Task<string> RunAsync(string connectionString, string node, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync(cancellationToken);
            while (!cancellationToken.IsCancellationRequested)
            {
                if (Volatile.Read(ref _pauseRequested) is not null)
                {
                    _paused.TrySetResult();
                    await _resumed.Task.WaitAsync(cancellationToken);
                }
                var id = Interlocked.Increment(ref _next) - 1;
                await using (var cmd = new NpgsqlCommand("INSERT INTO pushes (id, node, payload) VALUES ($1, $2, $3)", connection)
                { Parameters = { new() { Value = id }, new() { Value = node }, new() { Value = Payload(id) } } })
                    await cmd.ExecuteNonQueryAsync(cancellationToken);
                var at = DateTimeOffset.UtcNow;
                lock (_acked) _acked.Add((id, at));
                // Pacing, not waiting: about 20 pushes a second keeps the WAL to a few segments.
                await Task.Delay(50, cancellationToken);
            }
            return "cancelled";
        }
        catch (OperationCanceledException)
        {
            return "cancelled";
        }
        catch (Exception ex) when (ex is NpgsqlException or IOException or System.Net.Sockets.SocketException)
        {
            return "server gone: " + ex.GetBaseException().Message;
        }
    }

    /// <summary>Holds the writer between two transactions (for a snapshot at an exact moment); returns once it is held. Once only.</summary>
    public async Task PauseAsync()
    {
        Volatile.Write(ref _pauseRequested, new TaskCompletionSource());
        await _paused.Task.WaitAsync(TimeSpan.FromMinutes(1));
    }

    public void Resume()
    {
        Volatile.Write(ref _pauseRequested, null);
        _resumed.TrySetResult();
    }
}
