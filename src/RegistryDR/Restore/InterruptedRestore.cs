using Microsoft.Extensions.Logging;
using Npgsql;
using RegistryDR.Archive.Internal;
using RegistryDR.Agent;
using RegistryDR.Configuration;
using RegistryDR.Postgres;

namespace RegistryDR.Restore;

/// <summary>
/// Finds a restore that was killed part-way (its <see cref="RestoreJournal"/> is still there and
/// nobody holds its lock) and brings the node back to one whole state: rolled back to its own
/// data when the registry had not yet answered healthy on the restored data, or, when it had,
/// with the clean-up finished. A logical restore's database and a point-in-time restore's data
/// directory are both undone from the journal (<see cref="RestoreJournal.Entry.DataDirectory"/>).
/// Every step checks what the node looks like first (which databases
/// and directories exist), so recovery that is itself interrupted is simply run again.
/// Called by <c>restore</c> before it starts, by the worker at start and by <c>status</c>.
/// </summary>
public sealed partial class InterruptedRestore(RegistryDrOptions options, ILogger logger, TimeProvider time)
{
    private readonly PostgresConnectionFactory _postgres = new(options.Database, logger);
    private readonly RegistryController _registry = new(options.Registry, logger, time);
    private readonly Continuous.Internal.ServerControl _server = new(options, logger, time);

    /// <summary>What a recovery did, in one sentence for the operator; <see cref="Complete"/> false when something could not be put right (it is tried again next time).</summary>
    public sealed record Outcome(string BackupId, string Description, bool Complete);

    /// <summary>
    /// Recovers the interrupted restore recorded in <paramref name="journal"/> (whose lock the
    /// caller holds), or returns null when there is none.
    /// </summary>
    public async Task<Outcome?> RecoverAsync(RestoreJournal journal, CancellationToken cancellationToken)
    {
        if (journal.Read() is not { } entry) return null;
        var who = $"Restore of backup {entry.BackupId} (pid {entry.ProcessId} on {entry.Host}, started {entry.StartedAt:u})";
        var notes = new List<string>();
        var failed = false;
        async Task Step(string what, Func<Task<string?>> step)
        {
            try
            {
                if (await step() is { } note) notes.Add(note);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                failed = true;
                notes.Add($"could NOT {what} ({ex.Message})");
            }
        }

        string description;
        if (entry.Phase == RestoreJournal.Phases.Healthy)
        {
            // The registry came back healthy on the restored data: the restore had succeeded; finish it.
            await Step("record the restore in the node state", () => Task.FromResult(RecordRestored(entry)));
            if (!entry.KeepPrevious)
            {
                if (entry.PreviousDatabase is { } previousDatabase)
                    await Step($"drop the previous database '{previousDatabase}'", () => DropIfExistsAsync(previousDatabase, cancellationToken));
                foreach (var dir in Swapped(entry))
                    await Step($"remove {dir.Previous}", () => Task.FromResult(DeleteTree(dir.Previous)));
            }
            foreach (var dir in Swapped(entry))
                await Step($"remove {dir.StagingParent}", () => Task.FromResult(DeleteTree(dir.StagingParent)));
            await Step($"remove {entry.Staging}", () => Task.FromResult(DeleteTree(entry.Staging)));
            description = $"{who} was killed after the registry answered healthy on the restored data; its clean-up was finished: " + Join(notes);
        }
        else
        {
            var registryRunningOnRestored = RestoreJournal.Phases.Reached(entry.Phase, RestoreJournal.Phases.StartRegistry);
            var stopped = RestoreJournal.Phases.Reached(entry.Phase, RestoreJournal.Phases.StopRegistry);
            if (registryRunningOnRestored)
                await Step("stop the registry", async () => { await _registry.StopAsync(cancellationToken); return "the registry was stopped"; });
            // A point-in-time restore stopped PostgreSQL, and may have started it on the restored
            // data directory: it is stopped before anything is moved, and nothing moves if it won't stop.
            var serverStopped = true;
            if (entry.DataDirectory is not null && stopped)
            {
                serverStopped = false;
                await Step("stop PostgreSQL", async () => { await _server.StopAsync(cancellationToken); serverStopped = true; return "PostgreSQL was stopped"; });
            }
            if (!serverStopped)
                notes.Add("nothing was moved while PostgreSQL may still run on the data directory");
            else
            {
                if (RestoreJournal.Phases.Reached(entry.Phase, RestoreJournal.Phases.SwapDirectories))
                    for (var i = 0; i < entry.Directories.Count; i++)
                    {
                        var dir = entry.Directories[i];
                        var existed = entry.TargetsExisted is { } t && i < t.Count ? t[i] : true;
                        await Step($"put {dir.Target} back", () => Task.FromResult(UndoDirectory(dir, existed)));
                    }
                if (entry.DataDirectory is { } data)
                {
                    if (RestoreJournal.Phases.Reached(entry.Phase, RestoreJournal.Phases.SwapDatabase))
                        await Step($"put the data directory {data.Target} back", () => Task.FromResult(UndoDirectory(data, entry.DatabaseExisted ?? true)));
                    else
                        notes.Add($"the data directory {data.Target} was not touched");
                }
                else if (RestoreJournal.Phases.Reached(entry.Phase, RestoreJournal.Phases.SwapDatabase))
                    await Step($"put database '{entry.Database}' back", () => UndoDatabaseAsync(entry, cancellationToken));
                else
                    notes.Add($"database '{entry.Database}' was not touched");
                if (entry.DataDirectory is { } staged)
                    await Step($"stop the rehearsal server on {staged.StagingTree}", () => _server.StopOrphanAsync(staged.StagingTree, cancellationToken));
                if (entry.ScratchDatabase is { } scratch)
                    await Step($"drop the scratch database '{scratch}'", () => DropIfExistsAsync(scratch, cancellationToken));
                foreach (var dir in Swapped(entry))
                    await Step($"remove {dir.StagingParent}", () => Task.FromResult(DeleteTree(dir.StagingParent)));
                await Step($"remove {entry.Staging}", () => Task.FromResult(DeleteTree(entry.Staging)));
                if (entry.DataDirectory is not null && stopped)
                    await Step("start PostgreSQL again", async () => { await _server.StartAsync(null, cancellationToken); return "PostgreSQL was started again on its previous data"; });
            }
            if (stopped)
                await Step("start the registry again", async () => (await _registry.StartAgainAsync(cancellationToken)).Clause);
            if (entry.Generation is { } g)
                notes.Add($"this node keeps fencing generation {g}, taken before the swap, so its backups go on");
            description = $"{who} was interrupted during '{entry.Phase}' and was rolled back: " + Join(notes);
        }
        if (!failed) journal.Delete();
        else description += ". The journal is kept; the next `registry-dr restore`, `status` or worker start tries again";
        if (failed) LogRecoveryIncomplete(description);
        else LogRecovered(description);
        return new Outcome(entry.BackupId, description + ".", !failed);
    }

    /// <summary>
    /// For a restore about to start, logical (<see cref="RestoreService"/>) or point-in-time
    /// (<c>ContinuousRestoreService</c>): takes the restore lock and recovers what an interrupted
    /// restore of either kind left; refuses while another restore runs. Dispose the journal to release the lock.
    /// </summary>
    /// <exception cref="RestoreFailedException">Another restore runs, or an interrupted one could not be rolled back completely.</exception>
    public static async Task<RestoreJournal> BeginRestoreAsync(RegistryDrOptions options, ILogger logger, TimeProvider time, CancellationToken cancellationToken)
    {
        var journal = RestoreJournal.TryAcquire(options);
        if (journal is null)
        {
            var running = RestoreJournal.Peek(options);
            throw new RestoreFailedException(running?.BackupId ?? "?", $"another restore is running{(running is null ? "" : $" (backup {running.BackupId}, pid {running.ProcessId}, since {running.StartedAt:u})")}; wait for it to finish.",
                "Node state: nothing was changed by this restore.");
        }
        try
        {
            if (await new InterruptedRestore(options, logger, time).RecoverAsync(journal, cancellationToken) is { Complete: false } incomplete)
                throw new RestoreFailedException(incomplete.BackupId, "an earlier restore was interrupted and could not be rolled back completely: " + incomplete.Description,
                    "Node state: see the line before; nothing else was changed by this restore.");
            await new RestoreLeftovers(options, logger).CleanAsync(restoreRunning: false, cancellationToken);
            return journal;
        }
        catch
        {
            journal.Dispose();
            throw;
        }
    }

    /// <summary>What <see cref="TidyAsync"/> found and did.</summary>
    /// <param name="Running">The restore that holds the lock now, if one runs (nothing of it was touched).</param>
    public sealed record Tidying(Outcome? Recovered, IReadOnlyList<string> Removed, RestoreJournal.Entry? Running, bool RestoreRunning);

    /// <summary>
    /// For the worker at start and <c>status</c>: unless a restore is running, recover an
    /// interrupted one; then remove what dead restores and drills left (<see cref="RestoreLeftovers.CleanAsync"/>).
    /// </summary>
    public static async Task<Tidying> TidyAsync(RegistryDrOptions options, ILogger logger, TimeProvider time, CancellationToken cancellationToken)
    {
        using var journal = RestoreJournal.TryAcquire(options);
        var recovered = journal is null ? null : await new InterruptedRestore(options, logger, time).RecoverAsync(journal, cancellationToken);
        var removed = await new RestoreLeftovers(options, logger).CleanAsync(restoreRunning: journal is null, cancellationToken);
        return new Tidying(recovered, removed, journal is null ? RestoreJournal.Peek(options) : null, journal is null);
    }

    /// <summary>Every directory the restore swaps: the config directories, and the data directory of a point-in-time restore.</summary>
    private static IEnumerable<RestoreJournal.DirectoryRecord> Swapped(RestoreJournal.Entry entry) =>
        entry.DataDirectory is { } data ? entry.Directories.Append(data) : entry.Directories;

    private static string Join(List<string> notes) => notes.Count == 0 ? "nothing was left to do" : string.Join("; ", notes);

    private string? RecordRestored(RestoreJournal.Entry entry)
    {
        var state = NodeStateFile.Read(options.Agent.StateFile);
        if (state is { Status: NodeStatus.Restored } && state.BackupId == entry.BackupId) return null;
        NodeStateFile.Write(options.Agent.StateFile, new NodeState(NodeStatus.Restored, time.GetUtcNow(), entry.BackupId, state?.InstanceId,
            "restored; the clean-up was finished after the restore was interrupted") { Generation = entry.Generation ?? state?.Generation });
        return $"the node state records backup {entry.BackupId} as restored";
    }

    /// <summary>
    /// Puts one config directory back, judging by what exists: the extracted tree still in its
    /// staging parent means the swap never happened (or was undone); a previous copy means the
    /// target is the restored tree, or was already moved away.
    /// </summary>
    private static string? UndoDirectory(RestoreJournal.DirectoryRecord dir, bool targetExisted)
    {
        var target = Exists(dir.Target);
        var staged = Exists(dir.StagingTree);
        var previous = Exists(dir.Previous);
        if (previous)
        {
            if (target)
            {
                if (staged) return $"{dir.Target} was left as it is (both {dir.StagingTree} and {dir.Previous} exist; check them by hand)";
                Directory.CreateDirectory(dir.StagingParent);
                Directory.Move(dir.Target, dir.StagingTree); // the restored tree, removed with its staging parent
            }
            Directory.Move(dir.Previous, dir.Target);
            return $"{dir.Target} was put back as it was";
        }
        if (!staged && target && !targetExisted)
        {
            // The target did not exist before: the tree there now is the restored one.
            Directory.CreateDirectory(dir.StagingParent);
            Directory.Move(dir.Target, dir.StagingTree);
            return $"{dir.Target}, which did not exist before, was removed again";
        }
        return $"{dir.Target} was not touched";
    }

    private static bool Exists(string path) => Directory.Exists(path) || File.Exists(path);

    private async Task<string?> UndoDatabaseAsync(RestoreJournal.Entry entry, CancellationToken cancellationToken)
    {
        if (entry.ScratchDatabase is null || entry.PreviousDatabase is null)
            throw new InvalidDataException($"The restore journal {RestoreJournal.PathFor(options)} records a database swap without its scratch and previous database names.");
        await using var connection = await _postgres.OpenAsync(options.Database.MaintenanceDatabase, cancellationToken);
        var existing = await ExistingAsync(connection, [entry.Database, entry.ScratchDatabase, entry.PreviousDatabase], cancellationToken);
        bool live = existing.Contains(entry.Database), scratch = existing.Contains(entry.ScratchDatabase), previous = existing.Contains(entry.PreviousDatabase);
        if (previous)
        {
            if (live)
            {
                if (scratch) return $"database '{entry.Database}' was left as it is ('{entry.ScratchDatabase}' and '{entry.PreviousDatabase}' both exist; check them by hand)";
                await TerminateAsync(connection, entry.Database, cancellationToken);
                await ExecuteAsync(connection, $"ALTER DATABASE {RestoreService.Quote(entry.Database)} RENAME TO {RestoreService.Quote(entry.ScratchDatabase)}", cancellationToken);
            }
            await ExecuteAsync(connection, $"ALTER DATABASE {RestoreService.Quote(entry.PreviousDatabase)} RENAME TO {RestoreService.Quote(entry.Database)}", cancellationToken);
            return $"database '{entry.Database}' was put back as it was";
        }
        if (live && !scratch && entry.DatabaseExisted == false)
        {
            await ExecuteAsync(connection, $"DROP DATABASE {RestoreService.Quote(entry.Database)} WITH (FORCE)", cancellationToken);
            return $"database '{entry.Database}', which did not exist before, was removed again";
        }
        return $"database '{entry.Database}' was not touched";
    }

    private async Task<string?> DropIfExistsAsync(string database, CancellationToken cancellationToken)
    {
        await using var connection = await _postgres.OpenAsync(options.Database.MaintenanceDatabase, cancellationToken);
        if ((await ExistingAsync(connection, [database], cancellationToken)).Count == 0) return null;
        await ExecuteAsync(connection, $"DROP DATABASE IF EXISTS {RestoreService.Quote(database)} WITH (FORCE)", cancellationToken);
        return $"database '{database}' was dropped";
    }

    private static string? DeleteTree(string path)
    {
        if (!Exists(path)) return null;
        UnixFileSystem.DeleteTree(path); // names need not be UTF-8
        return $"{path} was removed";
    }

    internal static async Task<HashSet<string>> ExistingAsync(NpgsqlConnection connection, IReadOnlyList<string> names, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("SELECT datname FROM pg_database WHERE datname = ANY(@names)", connection);
        cmd.Parameters.AddWithValue("names", names.ToArray());
        var found = new HashSet<string>(StringComparer.Ordinal);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken)) found.Add(reader.GetString(0));
        return found;
    }

    private static async Task TerminateAsync(NpgsqlConnection connection, string database, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = @db AND pid <> pg_backend_pid()", connection);
        cmd.Parameters.AddWithValue("db", database);
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var cmd = new NpgsqlCommand(sql, connection);
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    [LoggerMessage(8020, LogLevel.Warning, "{Description}")]
    private partial void LogRecovered(string description);

    [LoggerMessage(8021, LogLevel.Error, "{Description}")]
    private partial void LogRecoveryIncomplete(string description);
}
