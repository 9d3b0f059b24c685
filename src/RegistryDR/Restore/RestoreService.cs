using System.Text;
using Microsoft.Extensions.Logging;
using Npgsql;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Postgres;
using RegistryDR.Processes;
using RegistryDR.Progress;
using RegistryDR.Stores;

namespace RegistryDR.Restore;

/// <param name="TakeGeneration">
/// Take the next fencing generation just before the node changes, so that a previous writer stops.
/// The bootstrap agent takes its own earlier and passes false.
/// </param>
/// <param name="TerminateSessions">
/// Allow the swap to terminate the live database's sessions although no Registry:StopCommand
/// stopped the registry first (the CLI's --terminate-sessions). Without it such a restore is
/// refused in its preflight.
/// </param>
public sealed record RestoreRequest(string? BackupId = "latest", bool DryRun = false, bool TakeGeneration = true, bool TerminateSessions = false)
{
    /// <summary>The EC2 instance restoring, recorded with the fencing generation (the bootstrap agent sets it).</summary>
    public string? InstanceId { get; init; }

    /// <summary>The restoring node's AWS region, recorded with the fencing generation; null when unknown.</summary>
    public string? Region { get; init; }

    /// <summary>A takeover by another region (failover, failback): the generation opens a new fencing epoch (<see cref="Fencing.GenerationLedger.TakeAndRecordAsync"/>).</summary>
    public bool TakeOver { get; init; }
}

/// <param name="BackupTime">The set's recovery point: when the backup started (its snapshot).</param>
public sealed record RestorePlan(string BackupId, DateTimeOffset BackupTime, long Bytes, IReadOnlyList<string> Steps)
{
    /// <summary>For "latest": the newer sets passed over because they are not restorable, each with why (<see cref="RestorableSets"/>).</summary>
    public IReadOnlyList<SetJudgement> Skipped { get; init; } = [];
}

public sealed record RestoreResult(RestorePlan Plan, bool DryRun, TimeSpan Elapsed)
{
    /// <summary>The fencing generation this restore took (null for a dry run or when the caller took its own).</summary>
    public Fencing.Generation? Generation { get; init; }

    /// <summary>What the first phase checked (a dry run reports it, passed or not).</summary>
    public PreflightReport? Preflight { get; init; }
}

/// <summary>
/// Brings a backup set back onto this node. Everything that can fail without harm happens
/// before anything is replaced: the set is downloaded to a staging directory and checked
/// (SHA-256, pg_restore --list), the config is extracted beside its targets, the database is
/// restored into a scratch database. Only then are the old database and directories renamed
/// aside and the restored ones renamed in, so a failed restore leaves the node as it was.
/// </summary>
public sealed partial class RestoreService
{
    private readonly RegistryDrOptions _options;
    private readonly IBackupStore _store;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly PostgresConnectionFactory _postgres;
    private readonly PostgresTools _tools;
    private readonly RegistryController _registry;
    private readonly IOperationEvents _events;

    public RestoreService(RegistryDrOptions options, IBackupStore store, ILogger<RestoreService> logger, TimeProvider time, HttpClient? http = null, IOperationEvents? events = null)
    {
        _events = events ?? NullOperationEvents.Instance;
        _options = options;
        _store = store;
        _logger = logger;
        _time = time;
        _postgres = new PostgresConnectionFactory(options.Database, logger);
        _tools = new PostgresTools(options.Database);
        _registry = new RegistryController(options.Registry, logger, time, http);
    }

    private string DatabaseName => _options.Database.Name;

    /// <summary>Names derived from the target database; kept within PostgreSQL's 63-byte identifier limit.</summary>
    private string ScratchDatabase => ScratchDatabaseFor(DatabaseName);
    private string PreviousDatabase(string backupId) => PreviousDatabasePrefixFor(DatabaseName) + backupId[^6..];

    internal static string ScratchDatabaseFor(string database) => Truncate(database, 48) + "_rdr_restore";
    internal static string PreviousDatabasePrefixFor(string database) => Truncate(database, 40) + "_rdr_prev_";

    public async Task<RestorePlan> PlanAsync(string? backupIdOrLatest, CancellationToken cancellationToken)
    {
        var catalog = new BackupCatalog(_store);
        var (id, selection) = await catalog.ResolveWithSkippedAsync(backupIdOrLatest, cancellationToken);
        var manifest = await catalog.ReadManifestAsync(id, cancellationToken);
        return BuildPlan(manifest) with { Skipped = selection?.Skipped ?? [] };
    }

    private RestorePlan BuildPlan(BackupManifest manifest)
    {
        var id = manifest.BackupId;
        var steps = new List<string>
        {
            $"Preflight: connect to {_options.Database.Host}:{_options.Database.Port} as {_options.Database.User}, check its privileges and the sessions on '{DatabaseName}', the free space in {StagingRoot}, and that pg_restore reads a pg_dump {manifest.Postgres.PgDumpVersion} dump",
            $"Download backup {id} (recovery point {SetFormat.Time(manifest.StartedAt)}, {SetFormat.Bytes(manifest.TotalSize)}, from {manifest.Host}) from {_store.Description} to {StagingRoot}, checking every SHA-256 and the dump's table of contents",
            $"Extract the config archive beside its targets ({string.Join(", ", manifest.ConfigDirectories.Select(d => d.Path))}), refusing unsafe entries" +
                (manifest.DescribeNotKept() is { Count: > 0 } notKept ? $"; not kept: {string.Join("; ", notKept)}" : ""),
            $"Restore roles from the backup (existing roles are kept) on {_options.Database.Host}:{_options.Database.Port}",
            $"Restore database '{manifest.Postgres.Database}' into scratch database '{ScratchDatabase}'" +
                (manifest.Postgres.Database == DatabaseName ? "" : $"; it becomes '{DatabaseName}' (Database:Name), NOT '{manifest.Postgres.Database}' as on {manifest.Host}: the registry must be configured for '{DatabaseName}'"),
            _options.Registry.StopCommand.Count > 0 ? $"Stop the registry: {string.Join(' ', _options.Registry.StopCommand)}" : "Stop the registry: NOT stopped, no Registry:StopCommand configured (needs --terminate-sessions)",
            $"Swap: terminate every session still on database '{DatabaseName}'{(_options.Registry.StopCommand.Count > 0 ? "" : ", the running registry's included")}, rename it to '{PreviousDatabase(id)}' and '{ScratchDatabase}' to '{DatabaseName}'; rename each config directory aside and the extracted one into place",
            _options.Registry.StartCommand.Count > 0 ? $"Start the registry: {string.Join(' ', _options.Registry.StartCommand)}" : "Start the registry: no Registry:StartCommand configured",
            string.IsNullOrEmpty(_options.Registry.HealthUrl) ? "Wait for health: no Registry:HealthUrl configured" : $"Wait until {_options.Registry.HealthUrl} answers 2xx (up to {_options.Registry.HealthTimeout})",
            _options.Restore.KeepPrevious ? "Keep the previous database and directories (Restore:KeepPrevious)" : "Drop the previous database and delete the previous directories",
        };
        return new RestorePlan(id, manifest.StartedAt, manifest.TotalSize, steps);
    }

    internal string StagingRoot => _options.Restore.StagingDirectory is { Length: > 0 } s ? s : Path.GetTempPath();

    public async Task<RestoreResult> RestoreAsync(RestoreRequest request, IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        progress ??= NullProgress.Instance;
        var started = _time.GetTimestamp();
        var catalog = new BackupCatalog(_store);
        var (id, selection) = await catalog.ResolveWithSkippedAsync(request.BackupId, cancellationToken);
        var manifest = await catalog.ReadManifestAsync(id, cancellationToken);
        var plan = BuildPlan(manifest) with { Skipped = selection?.Skipped ?? [] };
        using var scope = _logger.BeginScope("backup {BackupId}", id);
        if (selection?.SkippedSentence is { } skipped) LogPassedOver(id, skipped);
        if (manifest.Postgres.Database != DatabaseName) LogRenamedDatabase(id, manifest.Postgres.Database, DatabaseName);

        // 0. Preflight: check what can be checked before anything is downloaded or changed. A
        //    failure here is not a failed restore: nothing was touched, so there is nothing to roll back.
        progress.Phase("preflight");
        var preflight = await new RestorePreflight(_options, _postgres, _tools, StagingRoot).RunAsync(manifest, request.TerminateSessions, cancellationToken);
        if (request.DryRun) return new RestoreResult(plan, true, _time.GetElapsedTime(started)) { Preflight = preflight };
        if (!preflight.Passed)
        {
            LogPreflightFailed(id, preflight.Failures);
            throw new RestorePreflightException(id, preflight);
        }

        // 0. One restore at a time (a lock beside the node state), and whatever a killed restore
        //    left is rolled back or finished first (InterruptedRestore, RestoreLeftovers).
        using var journal = await InterruptedRestore.BeginRestoreAsync(_options, _logger, _time, cancellationToken);
        _rollbackIncomplete = false;
        LogRestoreStarting(id, _store.Description);
        _events.RestoreStarted(id);
        var state = new NodeState();
        var staging = Path.Combine(StagingRoot, $"{RestoreLeftovers.RestoreStagingPrefix}{id}-{Guid.NewGuid():N}"[..48]);
        var dirSwaps = manifest.ConfigDirectories.Select(d => Internal.DirectorySwap.For(d.Path, d.EntryPrefix, id)).ToList();
        FileStream? stagingLock = null;
        Fencing.Generation? generation = null;
        try
        {
            journal.Write(new RestoreJournal.Entry
            {
                BackupId = id, ProcessId = Environment.ProcessId, Host = Environment.MachineName, StartedAt = _time.GetUtcNow(),
                Phase = RestoreJournal.Phases.Download, Staging = staging, Database = DatabaseName, ScratchDatabase = ScratchDatabase,
                PreviousDatabase = PreviousDatabase(id), KeepPrevious = _options.Restore.KeepPrevious,
                Directories = dirSwaps.Select(d => d.Record).ToList(),
            });
            // Private from creation (0700, files 0600): it holds the roles' password hashes and the config's keys.
            SpaceCheck.CheckStaging(StagingRoot, manifest, StagedArtifacts(manifest));
            stagingLock = RestoreLeftovers.CreateOwnedDirectory(staging);
            // 1. Download and check everything before touching the node.
            progress.Phase("download and verify");
            var files = new Dictionary<string, string>();
            foreach (var artifact in StagedArtifacts(manifest))
            {
                files[artifact.Name] = await DownloadAsync(manifest, artifact, staging, progress, cancellationToken);
                Internal.PausePoints.Reached(Internal.PausePoints.Download);
            }
            await CheckDumpReadableAsync(id, files[BackupLayout.DatabaseArtifact], cancellationToken);

            // 2. Extract the config beside its targets (same filesystem, so the swap is a rename).
            progress.Phase("extract config");
            journal.Enter(RestoreJournal.Phases.Extract);
            SpaceCheck.CheckConfig(files[BackupLayout.ConfigArtifact], manifest, dirSwaps.Select(d => (d.TargetPath, d.EntryPrefix!)).ToList());
            await ExtractConfigAsync(manifest, files[BackupLayout.ConfigArtifact], dirSwaps, cancellationToken);
            Internal.PausePoints.Reached(Internal.PausePoints.Extract);

            // 3. Roles, then the database into a scratch database. The live database is untouched.
            progress.Phase("restore roles");
            journal.Enter(RestoreJournal.Phases.LoadDatabase);
            await RestoreGlobalsAsync(files[BackupLayout.GlobalsArtifact], cancellationToken);
            state.RolesRestored = true;
            progress.Phase("restore database");
            await RestoreIntoScratchAsync(manifest, files[BackupLayout.DatabaseArtifact], progress, cancellationToken);
            Internal.PausePoints.Reached(Internal.PausePoints.ScratchLoad);

            // 4. From here the node changes: stop, fence off the previous writer, swap, start.
            progress.Phase("stop registry");
            journal.Enter(RestoreJournal.Phases.StopRegistry);
            state.RegistryStopped = true;
            try
            {
                await _registry.StopAsync(cancellationToken);
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested)
            {
                state.StopFailed = true;
                throw;
            }

            progress.Phase("swap");
            // The node changes hands here: the generation is taken and recorded in the node state
            // as one step (GenerationLedger.TakeAndRecordAsync), so it is held whatever happens next.
            if (request.TakeGeneration)
            {
                generation = await new Fencing.GenerationLedger(_store, _time).TakeAndRecordAsync(_options.Agent.StateFile, request.TakeOver ? "takeover" : "restore", request.InstanceId, id, cancellationToken,
                    request.Region, request.TakeOver);
                journal.Record(e => e with { Generation = generation.Number });
            }
            // The swap is short and must not be abandoned half-way by a Ctrl-C, so it ignores cancellation.
            var databaseExisted = await DatabaseExistsNowAsync();
            journal.Record(e => e with { Phase = RestoreJournal.Phases.SwapDatabase, DatabaseExisted = databaseExisted });
            await SwapDatabaseAsync(id, state);
            Internal.PausePoints.Reached(Internal.PausePoints.AfterDatabaseSwap);
            journal.Record(e => e with { Phase = RestoreJournal.Phases.SwapDirectories, TargetsExisted = dirSwaps.Select(d => d.TargetExists).ToList() });
            foreach (var swap in dirSwaps) swap.Apply();
            Internal.PausePoints.Reached(Internal.PausePoints.AfterDirectorySwap);

            progress.Phase("start registry");
            journal.Enter(RestoreJournal.Phases.StartRegistry);
            await _registry.StartAsync(cancellationToken);
            state.RegistryStopped = false;
            state.RegistryRunsOnRestored = true;
            Internal.PausePoints.Reached(Internal.PausePoints.AfterStart);
            progress.Phase("wait for health");
            await _registry.WaitUntilHealthyAsync(cancellationToken);
            journal.Enter(RestoreJournal.Phases.Healthy);

            if (generation is not null)
            {
                // This node now holds the newest generation; record it so its own backups are allowed.
                Agent.NodeStateFile.Write(_options.Agent.StateFile,
                    new Agent.NodeState(Agent.NodeStatus.Restored, _time.GetUtcNow(), id, request.InstanceId, "restored with registry-dr restore") { Generation = generation.Number });
            }
            Internal.PausePoints.Reached(Internal.PausePoints.BeforeCleanup);
            progress.Phase("clean up");
            if (!_options.Restore.KeepPrevious)
            {
                await DropDatabaseAsync(PreviousDatabase(id), CancellationToken.None);
                foreach (var swap in dirSwaps) swap.DeletePrevious();
            }
            var elapsed = _time.GetElapsedTime(started);
            LogRestoreCompleted(id, elapsed.TotalSeconds);
            _events.RestoreFinished(id, true, elapsed);
            return new RestoreResult(plan, false, elapsed) { Generation = generation, Preflight = preflight };
        }
        catch (Exception ex)
        {
            if (ex is ArtifactCorruptException) await CorruptionRecord.TryWriteAsync(_store, id, "restore", ex.Message, _time, _logger, CancellationToken.None);
            var described = await RollBackAsync(id, state, dirSwaps);
            if (generation is not null)
                described = described[..^1] + $"; this node keeps fencing generation {generation.Number} (taken before the swap), so its backups go on.";
            _events.RestoreFinished(id, false, _time.GetElapsedTime(started));
            LogRestoreFailed(ex, id, described);
            if (ex is OperationCanceledException && cancellationToken.IsCancellationRequested) throw;
            throw new RestoreFailedException(id, ex.Message, described, ex);
        }
        finally
        {
            foreach (var swap in dirSwaps) swap.DeleteStaging();
            stagingLock?.Dispose();
            try { UnixFileSystem.DeleteTree(staging); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            // Done, or rolled back in full: nothing is left for a recovery. A rollback that could
            // not put something back keeps the journal, so the next run tries again.
            if (journal.Current is not null && !_rollbackIncomplete) journal.Delete();
        }
    }

    private bool _rollbackIncomplete;

    private async Task<bool> DatabaseExistsNowAsync()
    {
        await using var connection = await _postgres.OpenAsync(_options.Database.MaintenanceDatabase, CancellationToken.None);
        return await DatabaseExistsAsync(connection, DatabaseName);
    }

    /// <summary>
    /// What is downloaded to staging and checked before anything changes: everything but the split
    /// tables' block ranges, which are streamed into the scratch database (and checked there,
    /// before each range's COPY is committed), so the download overlaps the load.
    /// </summary>
    internal static IEnumerable<BackupManifest.Artifact> StagedArtifacts(BackupManifest manifest) =>
        manifest.Artifacts.Where(a => !BackupLayout.IsTableDataArtifact(a.Name));

    /// <param name="failureNote">Added to a failed pg_restore's message (see <see cref="DatabaseLoader.FailureNote"/>).</param>
    internal DatabaseLoader Loader(string failureNote = "") =>
        new(_store, _postgres, _tools, _options.Restore.Jobs) { MaintenanceWorkMemMiB = _options.Restore.MaintenanceWorkMemMiB, FailureNote = failureNote };

    internal async Task<string> DownloadAsync(BackupManifest manifest, BackupManifest.Artifact artifact, string staging, IOperationProgress progress, CancellationToken cancellationToken)
    {
        var path = Path.Combine(staging, Path.GetFileName(artifact.Key));
        await using (var source = await _store.OpenReadAsync(artifact.Key, cancellationToken))
        using (var hashing = new HashingStream(source, b => progress.Transferred(artifact.Name, b)))
        {
            await using (var file = Secrets.PrivateFiles.CreateNew(path, 1 << 20, FileOptions.Asynchronous))
            {
                try
                {
                    await hashing.CopyToAsync(file, 1 << 20, cancellationToken);
                }
                catch (IOException ex) when (IsDiskFull(ex))
                {
                    throw new IOException($"The staging directory {staging} ran out of space while downloading '{artifact.Name}' ({artifact.Size} bytes). Free space or set Restore:StagingDirectory; nothing on the node was changed.", ex);
                }
            }
            ArtifactIntegrity.Check(manifest.BackupId, artifact, hashing.BytesRead, hashing.HashHex());
        }
        LogArtifactVerified(manifest.BackupId, artifact.Name, artifact.Size);
        return path;
    }

    private static bool IsDiskFull(IOException ex) => ex.HResult == 28 || ex.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase);

    internal async Task CheckDumpReadableAsync(string backupId, string dumpPath, CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.RunAsync(new ProcessSpec(_tools.PgRestore, ["--list", dumpPath]) { DisplayName = "pg_restore --list" }, cancellationToken: cancellationToken);
        if (result.ExitCode != 0)
            throw new ArtifactCorruptException(backupId, BackupLayout.DatabaseArtifact, $"pg_restore --list cannot read it (exit {result.ExitCode}).{ProcessRunner.FormatTail(result.StandardError)}");
    }

    private async Task ExtractConfigAsync(BackupManifest manifest, string archivePath, List<Internal.DirectorySwap> swaps, CancellationToken cancellationToken)
    {
        var roots = manifest.ConfigDirectories.Select(d => new ArchiveRoot(d.Path, d.EntryPrefix)).ToList();
        var targets = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var swap in swaps)
        {
            swap.PrepareStaging();
            targets[swap.EntryPrefix!] = swap.StagingPath;
        }
        await using var input = new FileStream(archivePath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous);
        var stats = await ConfigArchiveReader.ExtractAsync(input, roots, targets, restoreOwnership: Environment.IsPrivilegedProcess, cancellationToken);
        foreach (var omission in stats.NotKept) LogConfigNotKept(manifest.BackupId, omission.Describe());
    }

    /// <summary>
    /// Replays pg_dumpall's roles. A node that already has some of them (the bootstrap superuser
    /// at least) would fail on CREATE ROLE, so each CREATE ROLE becomes "create unless it
    /// exists" (<see cref="RoleScript"/>); every other error stops the restore. The script is
    /// passed on byte for byte, whatever its encoding.
    /// </summary>
    private async Task RestoreGlobalsAsync(string globalsPath, CancellationToken cancellationToken)
    {
        var globals = RoleScript.FromBytes(await File.ReadAllBytesAsync(globalsPath, cancellationToken));
        var script = SessionLimits.DisableAllPsql + "\n" + RoleScript.MakeIdempotent(globals, RoleScript.AsScriptText(_options.Database.User));
        await ProcessRunner.RunCheckedAsync(
            new ProcessSpec(_tools.Psql, ["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--dbname=" + _options.Database.MaintenanceDatabase])
            {
                Environment = await _postgres.ToolEnvironmentAsync(_options.Database.MaintenanceDatabase, cancellationToken),
                DisplayName = "psql (roles)",
            },
            writeStdin: async (stdin, ct) => await stdin.WriteAsync(RoleScript.ToBytes(script), ct),
            cancellationToken: cancellationToken);
    }

    /// <remarks>
    /// The role RegistryDR itself connects as keeps its current password: the backup may carry
    /// another node's hash for it, and adopting that mid-restore would lock the restore (and the
    /// operator's configured password file) out of the server.
    /// </remarks>
    internal static string MakeRolesIdempotent(string globals, string connectingUser) => RoleScript.MakeIdempotent(globals, connectingUser);

    private async Task RestoreIntoScratchAsync(BackupManifest manifest, string dumpPath, IOperationProgress progress, CancellationToken cancellationToken)
    {
        await DropDatabaseAsync(ScratchDatabase, cancellationToken); // a leftover from an earlier failed restore
        await RestoredDatabase.CreateAsync(_postgres, _options.Database.MaintenanceDatabase, ScratchDatabase, manifest.Postgres, withOwner: true, withTablespace: true, cancellationToken);
        var loading = _time.GetTimestamp();
        try
        {
            await Loader("; the live database was not touched").LoadAsync(manifest, dumpPath, ScratchDatabase, [], progress, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await DropDatabaseAsync(ScratchDatabase, CancellationToken.None);
            throw;
        }
        LogDatabaseRestored(manifest.BackupId, ScratchDatabase, _time.GetElapsedTime(loading).TotalSeconds);
        await CheckFingerprintAsync(manifest, ScratchDatabase, cancellationToken);
        // The database's own properties go on the scratch database before the swap renames it.
        if (manifest.Postgres.Properties is { } properties)
        {
            try
            {
                await RestoredDatabase.GivePropertiesAsync(_postgres, ScratchDatabase, properties, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                await DropDatabaseAsync(ScratchDatabase, CancellationToken.None);
                throw;
            }
        }
    }

    /// <summary>Counts the loaded database's rows and compares them with the counts taken in pg_dump's snapshot.</summary>
    internal async Task CheckFingerprintAsync(BackupManifest manifest, string database, CancellationToken cancellationToken)
    {
        if (manifest.Fingerprint is not { } recorded) return;
        await using var connection = await _postgres.OpenAsync(database, cancellationToken);
        var actual = await DatabaseFingerprint.CountAsync(connection, null, cancellationToken);
        if (new DatabaseFingerprint(recorded.RowCounts).FirstDifference(actual) is { } difference)
        {
            await DropDatabaseAsync(database, CancellationToken.None);
            throw new ArtifactCorruptException(manifest.BackupId, BackupLayout.DatabaseArtifact,
                $"the restored database does not match the fingerprint taken when it was dumped: {difference}.");
        }
        LogFingerprintMatched(manifest.BackupId, actual.RowCounts.Count, actual.TotalRows);
    }

    private async Task SwapDatabaseAsync(string backupId, NodeState state)
    {
        var previous = PreviousDatabase(backupId);
        await DropDatabaseAsync(previous, CancellationToken.None);
        await using var connection = await _postgres.OpenAsync(_options.Database.MaintenanceDatabase, CancellationToken.None);
        var exists = await DatabaseExistsAsync(connection, DatabaseName);
        await using var tx = await connection.BeginTransactionAsync();
        await using var cmd = connection.CreateCommand();
        cmd.Transaction = tx;
        // The load committed asynchronously (DatabaseLoader.SynchronousCommit): this commit's WAL
        // flush is what makes the loaded database durable before it is renamed into place.
        cmd.CommandText = "SET LOCAL synchronous_commit = on";
        await cmd.ExecuteNonQueryAsync();
        if (exists)
        {
            // Anything still connected would block the rename (the preflight allowed cutting it).
            cmd.CommandText = $"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {Literal(DatabaseName)} AND pid <> pg_backend_pid()";
            LogSessionsTerminated(backupId, (long)(await cmd.ExecuteScalarAsync() ?? 0L), DatabaseName);
            cmd.CommandText = $"ALTER DATABASE {Quote(DatabaseName)} RENAME TO {Quote(previous)}";
            await cmd.ExecuteNonQueryAsync();
        }
        cmd.CommandText = $"ALTER DATABASE {Quote(ScratchDatabase)} RENAME TO {Quote(DatabaseName)}";
        await cmd.ExecuteNonQueryAsync();
        await tx.CommitAsync();
        state.DatabaseSwapped = true;
        state.PreviousDatabase = exists ? previous : null;
    }

    private static async Task<bool> DatabaseExistsAsync(NpgsqlConnection connection, string name)
    {
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT 1 FROM pg_database WHERE datname = $1";
        cmd.Parameters.Add(new NpgsqlParameter { Value = name });
        return await cmd.ExecuteScalarAsync() is not null;
    }

    internal async Task DropDatabaseAsync(string name, CancellationToken cancellationToken)
    {
        await using var connection = await _postgres.OpenAsync(_options.Database.MaintenanceDatabase, cancellationToken);
        await RestoredDatabase.UnmarkTemplateAsync(connection, name, cancellationToken);
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = $"DROP DATABASE IF EXISTS {Quote(name)} WITH (FORCE)";
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Puts back whatever the failed restore had changed, in reverse, and returns a sentence that
    /// says exactly what state the node is in now: the operator reads it before doing anything else.
    /// </summary>
    private async Task<string> RollBackAsync(string backupId, NodeState state, List<Internal.DirectorySwap> swaps)
    {
        var notes = new List<string>();
        // It read the restored config and holds sessions on the restored database: stopped before
        // either is put back, started again on the node's own data at the end.
        var stillRunning = false;
        if (state.RegistryRunsOnRestored)
        {
            var (clause, running) = await _registry.StopRunningOnRestoredAsync(CancellationToken.None);
            notes.Add(clause);
            stillRunning = running;
        }
        foreach (var swap in swaps.Where(s => s.Applied).Reverse())
        {
            try { swap.Undo(); notes.Add($"{swap.TargetPath} was put back as it was"); }
            catch (Exception ex) { notes.Add($"{swap.TargetPath} could NOT be put back ({ex.Message}); the previous copy is at {swap.PreviousPath}"); }
        }
        if (state.DatabaseSwapped)
        {
            try
            {
                await using var connection = await _postgres.OpenAsync(_options.Database.MaintenanceDatabase, CancellationToken.None);
                await using var cmd = connection.CreateCommand();
                cmd.CommandText = state.PreviousDatabase is null
                    ? $"DROP DATABASE IF EXISTS {Quote(DatabaseName)} WITH (FORCE)"
                    : $"ALTER DATABASE {Quote(DatabaseName)} RENAME TO {Quote(ScratchDatabase)}; ";
                await cmd.ExecuteNonQueryAsync();
                if (state.PreviousDatabase is not null)
                {
                    cmd.CommandText = $"ALTER DATABASE {Quote(state.PreviousDatabase)} RENAME TO {Quote(DatabaseName)}";
                    await cmd.ExecuteNonQueryAsync();
                }
                notes.Add(state.PreviousDatabase is null ? $"database '{DatabaseName}' did not exist before and was removed again" : $"database '{DatabaseName}' was put back as it was");
            }
            catch (Exception ex)
            {
                notes.Add($"database '{DatabaseName}' could NOT be put back ({ex.Message}); the previous one is '{state.PreviousDatabase}'");
            }
        }
        else
        {
            notes.Add($"database '{DatabaseName}' was not touched");
        }
        try { await DropDatabaseAsync(ScratchDatabase, CancellationToken.None); } catch (Exception) { notes.Add($"scratch database '{ScratchDatabase}' may remain"); }
        if (state.RolesRestored) notes.Add("roles from the backup were added (existing roles were kept)");
        if (state.StopFailed)
        {
            // Before the swap: nothing of the node was changed, and the registry may never have
            // stopped; the start command runs anyway (a registry the failed stop did stop must serve again).
            notes.Add("the registry's stop command failed, so it may not have stopped; its start command was run again: " +
                (await _registry.StartAgainAsync(CancellationToken.None)).Clause);
        }
        else if ((state.RegistryStopped || state.RegistryRunsOnRestored) && !stillRunning)
        {
            notes.Add((await _registry.StartAgainAsync(CancellationToken.None)).Clause);
        }
        else if (!swaps.Any(s => s.Applied) && !state.DatabaseSwapped)
        {
            notes.Add("the registry was not stopped");
        }
        _rollbackIncomplete = notes.Any(n => n.Contains("could NOT", StringComparison.Ordinal) || n.Contains("is STOPPED", StringComparison.Ordinal));
        if (_rollbackIncomplete) notes.Add("the restore journal is kept, so the next `registry-dr restore`, `registry-dr status` or worker start tries the rollback again");
        return "Node state: " + string.Join("; ", notes) + ".";
    }

    internal static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";
    internal static string Literal(string value) => "'" + value.Replace("'", "''") + "'";
    private static string Truncate(string value, int max) => Encoding.UTF8.GetByteCount(value) <= max ? value : value[..max];

    private sealed class NodeState
    {
        public bool RolesRestored;
        public bool RegistryStopped;
        /// <summary>The start command ran after the swap: the registry read the restored data.</summary>
        public bool RegistryRunsOnRestored;
        /// <summary>The stop command failed (before the swap): whether the registry stopped is not known.</summary>
        public bool StopFailed;
        public bool DatabaseSwapped;
        public string? PreviousDatabase;
    }

    [LoggerMessage(2000, LogLevel.Information, "Restore of backup {BackupId} from {Store} starting")]
    private partial void LogRestoreStarting(string backupId, string store);

    [LoggerMessage(2001, LogLevel.Information, "Backup {BackupId}: artifact {Artifact} downloaded and verified ({Bytes} bytes)")]
    private partial void LogArtifactVerified(string backupId, string artifact, long bytes);

    [LoggerMessage(2002, LogLevel.Information, "Backup {BackupId}: database restored into {Scratch} in {Seconds:F1} s")]
    private partial void LogDatabaseRestored(string backupId, string scratch, double seconds);

    [LoggerMessage(2003, LogLevel.Information, "Restore of backup {BackupId} complete in {Seconds:F1} s")]
    private partial void LogRestoreCompleted(string backupId, double seconds);

    [LoggerMessage(2005, LogLevel.Information, "Backup {BackupId}: fingerprint matches ({Tables} tables, {Rows} rows)")]
    private partial void LogFingerprintMatched(string backupId, int tables, long rows);

    [LoggerMessage(2050, LogLevel.Warning, "Backup {BackupId}: the restored config could not keep {NotKept}")]
    private partial void LogConfigNotKept(string backupId, string notKept);

    [LoggerMessage(8400, LogLevel.Error, "Restore of backup {BackupId} cannot start; nothing was downloaded or changed:\n{Failures}")]
    private partial void LogPreflightFailed(string backupId, string failures);

    [LoggerMessage(8401, LogLevel.Information, "Backup {BackupId}: terminated {Sessions} session(s) on database {Database} for the swap")]
    private partial void LogSessionsTerminated(string backupId, long sessions, string database);

    [LoggerMessage(8010, LogLevel.Warning, "Restoring backup {BackupId}, the newest restorable set: {Skipped}")]
    private partial void LogPassedOver(string backupId, string skipped);

    [LoggerMessage(2006, LogLevel.Warning, "Backup {BackupId} holds database '{BackupDatabase}'; it is restored as '{Database}' (Database:Name), the name this node's configuration gives")]
    private partial void LogRenamedDatabase(string backupId, string backupDatabase, string database);

    [LoggerMessage(2004, LogLevel.Error, "Restore of backup {BackupId} failed. {NodeState}")]
    private partial void LogRestoreFailed(Exception ex, string backupId, string nodeState);
}

/// <summary>A restore did not complete. <see cref="NodeState"/> says exactly what the node looks like now.</summary>
public sealed class RestoreFailedException(string backupId, string reason, string nodeState, Exception? inner = null)
    : Exception($"Restore of backup {backupId} failed: {reason} {nodeState}", inner)
{
    public string BackupId { get; } = backupId;
    public string NodeState { get; } = nodeState;
}
