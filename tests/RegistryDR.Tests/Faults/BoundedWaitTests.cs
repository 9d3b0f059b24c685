using System.Diagnostics;
using Npgsql;
using RegistryDR.Backup;
using RegistryDR.Progress;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Faults;

/// <summary>
/// Every wait on another process or the network ends: a peer that dies mid-backup makes the backup
/// fail, naming the peer, and release what it held (PostgreSQL sessions, child processes, uploads).
/// The bounds below only catch a hang; nothing here measures how fast the failure comes.
/// </summary>
[TestClass]
public sealed class BoundedWaitTests
{
    /// <summary>Far longer than any bound the backup states; only a hang reaches it.</summary>
    private static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(4);

    private sealed class WatchingProgress(string artifact, long threshold) : IOperationProgress
    {
        public readonly TaskCompletionSource Reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _seen = new();
        public void Phase(string phase) { }
        public void Transferred(string name, long bytes)
        {
            _seen[name] = bytes;
            if (name == artifact && bytes >= threshold) Reached.TrySetResult();
        }
    }

    /// <summary>A table of about <paramref name="megabytes"/> MiB of random-looking 1 KiB rows, kept in the main fork (below the TOAST threshold) so it is split into block ranges.</summary>
    internal static async Task AddIncompressibleRowsAsync(string connectionString, int megabytes)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var cmd = connection.CreateCommand();
        cmd.CommandTimeout = 600;
        cmd.CommandText = $"""
            CREATE TABLE layer_blobs (id int PRIMARY KEY, data bytea NOT NULL);
            INSERT INTO layer_blobs SELECT g, decode(string_agg(md5(g::text || ':' || s::text), ''), 'hex')
            FROM generate_series(1, {megabytes * 1024}) g, generate_series(1, 64) s GROUP BY g;
            """;
        await cmd.ExecuteNonQueryAsync();
    }

    /// <summary>RegistryDR's own sessions (it and its tools connect as application "registry-dr") on a database.</summary>
    internal static async Task<IReadOnlyList<string>> SessionsAsync(string connectionString, string database)
    {
        var admin = new NpgsqlConnectionStringBuilder(connectionString) { Database = "postgres" }.ConnectionString;
        await using var connection = new NpgsqlConnection(admin);
        await connection.OpenAsync();
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT pid || ' ' || coalesce(state, '') || ' ' || left(coalesce(query, ''), 60) FROM pg_stat_activity WHERE application_name = 'registry-dr' AND datname = @db";
        cmd.Parameters.AddWithValue("db", database);
        var sessions = new List<string>();
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync()) sessions.Add(reader.GetString(0));
        return sessions;
    }

    /// <summary>Waits (bounded) until the server has ended every session of ours: a backend exits a moment after its client closed.</summary>
    internal static async Task AssertNoSessionsLeftAsync(string connectionString, string database)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        IReadOnlyList<string> left;
        while ((left = await SessionsAsync(connectionString, database)).Count > 0)
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("sessions still open: " + string.Join("; ", left));
            await Task.Delay(100);
        }
    }

    /// <summary>This process's children that run the named programs (by /proc/PID/stat's comm and ppid).</summary>
    /// <summary>
    /// The pg_dump processes this test process started for database <paramref name="database"/> on
    /// port <paramref name="port"/> (their PGPORT and PGDATABASE): tests of other classes run in
    /// parallel on the shared cluster, and their dumps are not this test's leftovers.
    /// </summary>
    internal static IReadOnlyList<string> DumpsOf(int port, string database) =>
        ChildProcesses("pg_dump").Where(p =>
        {
            var pid = p[(p.IndexOf("pid ", StringComparison.Ordinal) + 4)..p.IndexOf(',', StringComparison.Ordinal)];
            string environ;
            try { environ = File.ReadAllText($"/proc/{pid}/environ"); } catch (IOException) { return false; }
            var variables = environ.Split('\0');
            return variables.Contains($"PGPORT={port}") && variables.Contains($"PGDATABASE={database}");
        }).ToList();

    internal static IReadOnlyList<string> ChildProcesses(params string[] names)
    {
        var found = new List<string>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); } catch (IOException) { continue; }
            var open = stat.IndexOf('(');
            var close = stat.LastIndexOf(')');
            if (open < 0 || close < open) continue;
            var comm = stat[(open + 1)..close];
            var fields = stat[(close + 2)..].Split(' ');
            if (fields.Length > 1 && int.TryParse(fields[1], out var ppid) && ppid == Environment.ProcessId && names.Contains(comm))
                found.Add($"{comm} (pid {pid}, state {fields[0]})");
        }
        return found;
    }

    /// <summary>A clock whose timers fire only when the test advances it (ManualTimeProvider's run on real time).</summary>
    private sealed class SteppedClock(DateTimeOffset start) : TimeProvider
    {
        private readonly List<Timer> _timers = [];
        private DateTimeOffset _now = start;

        public override DateTimeOffset GetUtcNow() { lock (_timers) return _now; }

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = new Timer(this, callback, state);
            timer.Change(dueTime, period);
            return timer;
        }

        public void Advance(TimeSpan by)
        {
            List<Timer> due;
            lock (_timers)
            {
                _now += by;
                due = _timers.Where(t => t.Due <= _now).ToList();
                foreach (var t in due) _timers.Remove(t);
            }
            foreach (var t in due) t.Fire();
        }

        private sealed class Timer(SteppedClock clock, TimerCallback callback, object? state) : ITimer
        {
            public DateTimeOffset Due;
            public bool Change(TimeSpan dueTime, TimeSpan period)
            {
                lock (clock._timers)
                {
                    clock._timers.Remove(this);
                    if (dueTime == global::System.Threading.Timeout.InfiniteTimeSpan) return true;
                    Due = clock._now + dueTime;
                    clock._timers.Add(this);
                }
                return true;
            }
            public void Fire() => callback(state);
            public void Dispose() { lock (clock._timers) clock._timers.Remove(this); }
            public ValueTask DisposeAsync() { Dispose(); return ValueTask.CompletedTask; }
        }
    }

    /// <summary>A store whose database upload waits until cancelled: something underneath that never answers.</summary>
    private sealed class SilentStore(IBackupStore inner) : RegistryDR.Tests.Infrastructure.ForwardingStore(inner)
    {
        public readonly TaskCompletionSource Waiting = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public override string Description => Inner.Description;
        public override async Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken)
        {
            if (!key.EndsWith("database.dump", StringComparison.Ordinal)) return await Inner.PutAsync(key, content, cancellationToken);
            Waiting.TrySetResult();
            await Task.Delay(System.Threading.Timeout.Infinite, cancellationToken);
            return 0;
        }
        public override Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken) => Inner.OpenReadAsync(key, cancellationToken);
        public override IAsyncEnumerable<StoreItem> ListAsync(string prefix, CancellationToken cancellationToken) => Inner.ListAsync(prefix, cancellationToken);
        public override Task DeleteAsync(string key, CancellationToken cancellationToken) => Inner.DeleteAsync(key, cancellationToken);
        public override Task CheckAccessAsync(CancellationToken cancellationToken) => Inner.CheckAccessAsync(cancellationToken);
    }

    [TestMethod]
    public async Task ABackupPastBackupTimeout_IsStopped_SayingWhereItWas_AndLeavesNothing()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 5);
        node.Options.Backup.Timeout = TimeSpan.FromMinutes(30);
        var clock = new SteppedClock(DateTimeOffset.UtcNow);
        var store = new SilentStore(node.CreateStore());
        var backup = new BackupService(node.Options, store, TestNode.Logger<BackupService>(), clock).RunAsync();
        await store.Waiting.Task.WaitAsync(HangGuard);
        clock.Advance(TimeSpan.FromMinutes(29));
        Assert.IsFalse(backup.IsCompleted, "stopped before its deadline");
        clock.Advance(TimeSpan.FromMinutes(1));

        var failure = await Assert.ThrowsExactlyAsync<BackupFailedException>(() => backup.WaitAsync(HangGuard));
        Assert.AreEqual($"Backup {failure.BackupId} failed during dump database: it did not finish within Backup:Timeout (00:30:00) and was stopped during dump database; its partial set was removed.", failure.Message);
        await AssertNoSessionsLeftAsync(node.ConnectionString, node.Database);
        Assert.IsEmpty(DumpsOf(node.Cluster.Port, node.Database));
        Assert.IsEmpty(Directory.GetFiles(storeDir.Path, "*", SearchOption.AllDirectories), "files left in the store");
    }

    [TestMethod]
    public async Task S3ServerKilledWhileBlockRangesUpload_TheBackupFailsNamingTheServer_AndReleasesEverything()
    {
        await using var s3 = await CephS3Server.StartAsync();
        var bucket = "rdr-kill-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        await using var node = await TestNode.CreateAsync($"s3://{bucket}/site", o =>
        {
            o.ConfigureFor(s3, partSizeMiB: 5);
            o.RetryBudget = TimeSpan.FromSeconds(10);
            o.RequestTimeout = TimeSpan.FromSeconds(10);
        }, repositories: 20);
        await AddIncompressibleRowsAsync(node.ConnectionString, 48);
        node.Options.Database.SplitTablesFromMiB = 1;
        node.Options.Database.RangeMiB = 8;
        node.Options.Database.DumpJobs = 2;
        using var store = (S3Store)node.CreateStore(s3);
        var progress = new WatchingProgress(TableDataDump.ProgressName, 6 << 20);

        var backup = new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync(progress);
        await Task.WhenAny(progress.Reached.Task, backup).WaitAsync(HangGuard);
        Assert.IsFalse(backup.IsCompleted, "the backup ended before its block ranges were uploading: " + backup.Exception?.GetBaseException().Message);
        s3.KillGateway();

        var failure = await Assert.ThrowsExactlyAsync<BackupFailedException>(() => backup.WaitAsync(HangGuard));
        StringAssert.Contains(failure.Message, $"failed during dump database: S3 store s3://{bucket}/site (server {s3.Endpoint}) could not be reached for ");
        await AssertNoSessionsLeftAsync(node.ConnectionString, node.Database);
        Assert.IsEmpty(DumpsOf(node.Cluster.Port, node.Database));
    }

    [TestMethod]
    public async Task PostgresStoppedImmediatelyEarlyInADump_TheBackupFailsNamingPostgres_AndReleasesEverything()
    {
        await using var cluster = await PostgresCluster.StartAsync();
        var database = await cluster.CreateDatabaseAsync();
        await RegistrySchema.CreateAndSeedAsync(cluster.ConnectionString(database), 20);
        await AddIncompressibleRowsAsync(cluster.ConnectionString(database), 48);
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 1);
        node.Options.Database.Port = cluster.Port;
        node.Options.Database.Name = database;
        File.WriteAllText(node.Options.Database.PasswordFile!, cluster.SuperUserPassword + "\n");
        node.Options.Database.SplitTablesFromMiB = 1;
        node.Options.Database.RangeMiB = 8;
        node.Options.Database.DumpJobs = 2;
        var progress = new WatchingProgress(TableDataDump.ProgressName, 1 << 20);

        var backup = new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync(progress);
        await Task.WhenAny(progress.Reached.Task, backup).WaitAsync(HangGuard);
        Assert.IsFalse(backup.IsCompleted, "the backup ended before it was dumping: " + backup.Exception?.GetBaseException().Message);
        await cluster.CrashAsync();

        var failure = await Assert.ThrowsExactlyAsync<BackupFailedException>(() => backup.WaitAsync(HangGuard));
        // Which step meets the crash first decides the words: a session whose connection closes, or a
        // new session (the next block range's) that cannot connect. Either names the server and the phase.
        var closed = $"failed during dump database: PostgreSQL at 127.0.0.1:{cluster.Port} closed the connection during dump database: ";
        var refused = $"failed during dump database: Could not connect to PostgreSQL at 127.0.0.1:{cluster.Port}: Connection refused.";
        Assert.IsTrue(failure.Message.Contains(closed, StringComparison.Ordinal) || failure.Message.Contains(refused, StringComparison.Ordinal), failure.Message);
        Assert.IsEmpty(DumpsOf(cluster.Port, database));
        // Nothing of the failed set stays in the store, not even a temporary file.
        Assert.IsEmpty(Directory.GetFiles(storeDir.Path, "*", SearchOption.AllDirectories), "files left in the store");
    }
}
