using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Npgsql;
using RegistryDR.Processes;

namespace RegistryDR.Continuous.Internal;

/// <summary>
/// Runs PostgreSQL's own archive recovery on a staged data directory, in a server of its own that
/// nothing else can reach: no TCP listener, a Unix socket in a private directory, trust only on that
/// socket, WAL taken with <c>cp</c> from the staged (already verified) WAL directory, archiving
/// held (<c>archive_command = ''</c> keeps the new timeline's files queued for the real server to
/// archive after the swap, and nothing of a rehearsal reaches the store). The data directory's own
/// <c>postgresql.auto.conf</c> is set aside meanwhile, as it would override these settings.
/// It stops at the target and promotes (<c>recovery_target_action = promote</c>), then is shut down
/// cleanly, leaving a data directory that starts as an ordinary primary.
/// </summary>
internal sealed partial class RehearsalServer(ServerTools tools, FileOwner owner, string dataDirectory, string walDirectory, string scratchDirectory,
    string user, TimeProvider time, ILogger logger)
{
    private const string HeldAutoConf = "postgresql.auto.conf.registry-dr-held";

    public string LogFile => Path.Combine(scratchDirectory, "postgres.log");

    public async Task<RecoveredPoint> RecoverAsync(RecoveryTarget target, uint timeline, TimeSpan timeout, Func<NpgsqlConnection, Task>? inspect, CancellationToken cancellationToken)
    {
        var autoConf = Path.Combine(dataDirectory, "postgresql.auto.conf");
        var held = Path.Combine(dataDirectory, HeldAutoConf);
        if (File.Exists(autoConf)) File.Move(autoConf, held);
        try
        {
            await File.WriteAllTextAsync(Path.Combine(dataDirectory, "recovery.signal"), "", cancellationToken);
            await File.WriteAllTextAsync(Path.Combine(scratchDirectory, "pg_hba.conf"), "local all all trust\n", cancellationToken);
            await File.WriteAllTextAsync(Path.Combine(scratchDirectory, "pg_ident.conf"), "", cancellationToken);
            await owner.ApplyAsync(scratchDirectory, cancellationToken);
            await owner.ApplyAsync(Path.Combine(dataDirectory, "recovery.signal"), cancellationToken);
            var notReached = false;
            try
            {
                await RunOnceAsync(target, timeline, timeout, cancellationToken);
            }
            catch (RecoveryFailedException ex) when (!target.IsLatest && ex.Message.Contains("recovery ended before configured recovery target was reached", StringComparison.Ordinal))
            {
                // No transaction committed after the target was archived: the end of the archive IS
                // the state at the target. Replay continues from where it stopped, to the end.
                LogTargetNotReached(target.ToString());
                notReached = true;
                await RunOnceAsync(RecoveryTarget.Latest, timeline, timeout, cancellationToken);
            }
            try
            {
                var point = await InspectAsync(inspect, cancellationToken);
                return point with { TargetNotReachedSoLatest = notReached };
            }
            finally
            {
                await StopAsync(CancellationToken.None);
            }
        }
        finally
        {
            if (File.Exists(held)) File.Move(held, autoConf, overwrite: true);
        }
    }

    private async Task RunOnceAsync(RecoveryTarget target, uint timeline, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var config = Path.Combine(scratchDirectory, "postgresql.conf");
        var settings = new List<(string, string)>
        {
            ("listen_addresses", ""),
            ("port", "5432"),
            ("unix_socket_directories", scratchDirectory),
            ("hba_file", Path.Combine(scratchDirectory, "pg_hba.conf")),
            ("ident_file", Path.Combine(scratchDirectory, "pg_ident.conf")),
            ("hot_standby", "off"),
            ("archive_mode", "on"),
            ("archive_command", ""),
            ("max_connections", "20"),
            ("logging_collector", "off"),
            ("log_min_messages", "warning"),
            ("restore_command", $"cp \"{walDirectory}/%f\" \"%p\""),
            ("recovery_target_timeline", timeline.ToString(CultureInfo.InvariantCulture)),
            ("recovery_target_action", "promote"),
        };
        if (target.Time is { } t)
        {
            settings.Add(("recovery_target_time", t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.ffffff'+00'", CultureInfo.InvariantCulture)));
            settings.Add(("recovery_target_inclusive", "on"));
        }
        var text = new StringBuilder("# Written by registry-dr for a restore rehearsal; removed with it.\n");
        foreach (var (name, value) in settings) text.Append(name).Append(" = '").Append(value.Replace("'", "''")).Append("'\n");
        await File.WriteAllTextAsync(config, text.ToString(), cancellationToken);
        await owner.ApplyAsync(config, cancellationToken);

        var start = await ProcessRunner.RunAsync(ServerTools.AsOwner(new ProcessSpec(tools.PgCtl,
            ["-D", dataDirectory, "-l", LogFile, "-w", "-t", "120", "-o", $"-c config_file={config}", "start"])
        { DisplayName = "pg_ctl start (restore rehearsal)", Timeout = TimeSpan.FromMinutes(3) }, owner), cancellationToken: cancellationToken);
        if (start.ExitCode != 0 && !IsAlive())
            throw new RecoveryFailedException($"The rehearsal server did not start (pg_ctl exit {start.ExitCode}). {LogTail()}");
        Restore.Internal.PausePoints.Reached(Restore.Internal.PausePoints.Replay);

        // With hot_standby off the server takes connections only once recovery has promoted it.
        var deadline = time.GetUtcNow() + timeout;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!IsAlive())
                throw new RecoveryFailedException($"The rehearsal server stopped during recovery. {LogTail()}");
            try
            {
                await using var connection = await OpenAsync(cancellationToken);
                await using var cmd = new NpgsqlCommand("SELECT pg_is_in_recovery()", connection);
                if (await cmd.ExecuteScalarAsync(cancellationToken) is false) return;
            }
            catch (Exception ex) when (ex is NpgsqlException or System.Net.Sockets.SocketException or TimeoutException && !cancellationToken.IsCancellationRequested)
            {
                // Starting up / not accepting connections yet.
            }
            if (time.GetUtcNow() >= deadline)
            {
                await StopAsync(CancellationToken.None);
                throw new RecoveryFailedException($"Recovery did not finish within Continuous:RecoveryTimeout ({timeout}). {LogTail()}");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(500), time, cancellationToken);
        }
    }

    private async Task<RecoveredPoint> InspectAsync(Func<NpgsqlConnection, Task>? inspect, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        uint tli;
        string lsn;
        await using (var cmd = new NpgsqlCommand("SELECT (SELECT timeline_id FROM pg_control_checkpoint())::bigint, pg_current_wal_lsn()::text", connection))
        await using (var r = await cmd.ExecuteReaderAsync(cancellationToken))
        {
            await r.ReadAsync(cancellationToken);
            tli = (uint)r.GetInt64(0);
            lsn = r.GetString(1);
        }
        if (inspect is not null) await inspect(connection);
        var log = ReadLog();
        DateTimeOffset? last = null;
        // PostgreSQL's own words at the end of recovery (xlogrecovery.c): the newest replayed commit, and why it stopped.
        foreach (Match m in LastTransaction().Matches(log))
            if (DateTimeOffset.TryParse(m.Groups[1].Value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)) last = at.ToUniversalTime();
        var stop = StopLine().Matches(log).LastOrDefault()?.Groups[1].Value;
        return new RecoveredPoint(tli, lsn, last, stop, false);
    }

    private async Task<NpgsqlConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder
        {
            Host = scratchDirectory,
            Port = 5432,
            Username = user,
            Database = "postgres",
            Pooling = false,
            Timeout = 10,
            CommandTimeout = 0,
            ApplicationName = "registry-dr",
        }.ConnectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (!IsAlive()) return;
        var stop = await ProcessRunner.RunAsync(ServerTools.AsOwner(new ProcessSpec(tools.PgCtl, ["-D", dataDirectory, "-m", "fast", "-w", "-t", "120", "stop"])
        { DisplayName = "pg_ctl stop (restore rehearsal)", Timeout = TimeSpan.FromMinutes(3) }, owner), cancellationToken: cancellationToken);
        if (stop.ExitCode != 0 && IsAlive())
        {
            await ProcessRunner.RunAsync(ServerTools.AsOwner(new ProcessSpec(tools.PgCtl, ["-D", dataDirectory, "-m", "immediate", "-w", "-t", "60", "stop"])
            { Timeout = TimeSpan.FromMinutes(2) }, owner), cancellationToken: CancellationToken.None);
            throw new RecoveryFailedException($"The rehearsal server did not stop cleanly (pg_ctl exit {stop.ExitCode}); it was stopped immediately. {LogTail()}");
        }
    }

    /// <summary>Whether the postmaster named in the data directory's postmaster.pid still runs.</summary>
    public bool IsAlive()
    {
        var pidFile = Path.Combine(dataDirectory, "postmaster.pid");
        try
        {
            var first = File.ReadLines(pidFile).FirstOrDefault();
            return int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && Directory.Exists($"/proc/{pid}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private string ReadLog()
    {
        try { return File.ReadAllText(LogFile); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return ""; }
    }

    public string LogTail(int lines = 15)
    {
        var all = ReadLog().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var interesting = all.Where(l => !l.Contains("restored log file", StringComparison.Ordinal)).ToList();
        return "Its log (" + LogFile + ") ends: " + string.Join(" | ", interesting.Skip(Math.Max(0, interesting.Count - lines)));
    }

    [GeneratedRegex(@"last completed transaction was at log time ([0-9:\-\. +]+)")]
    private static partial Regex LastTransaction();

    [GeneratedRegex(@"LOG:\s+(recovery stopping [^\n]*)")]
    private static partial Regex StopLine();

    [LoggerMessage(9130, LogLevel.Warning, "No transaction committed after {Target} has been archived: the end of the archived WAL is the state at that moment, so recovery replays to the end")]
    private partial void LogTargetNotReached(string target);
}
