using Microsoft.Extensions.Logging;
using Npgsql;
using RegistryDR.Archive;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Continuous.Internal;
using RegistryDR.Monitoring;
using RegistryDR.Processes;
using RegistryDR.Progress;
using RegistryDR.Restore;
using RegistryDR.Restore.Internal;
using RegistryDR.Stores;

namespace RegistryDR.Continuous;

/// <param name="Target">"latest" or a UTC time.</param>
/// <param name="BaseBackupId">Start from this base backup instead of choosing one.</param>
/// <param name="TakeGeneration">Take the next fencing generation before the WAL is read, so the node being replaced can add nothing more (the bootstrap agent takes its own earlier and passes false).</param>
public sealed record PointInTimeRequest(RecoveryTarget Target, string? BaseBackupId = null, bool DryRun = false, bool TakeGeneration = true)
{
    /// <summary>The EC2 instance restoring, recorded with the fencing generation; null when unknown.</summary>
    public string? InstanceId { get; init; }

    /// <summary>The restoring node's AWS region (<c>Agent:Region</c>), recorded with the fencing generation; null when unknown.</summary>
    public string? Region { get; init; }

    /// <summary>A takeover by another region: the generation opens a new fencing epoch (<see cref="Fencing.GenerationLedger.TakeAndRecordAsync"/>). A restore over a store another region wrote last is one anyway.</summary>
    public bool TakeOver { get; init; }
}

public sealed record PointInTimeResult(RecoveryPlan Plan, IReadOnlyList<string> Steps, bool DryRun, TimeSpan Elapsed)
{
    /// <summary>What recovery reached (null for a dry run).</summary>
    public RecoveredPoint? Recovered { get; init; }
    public Fencing.Generation? Generation { get; init; }
}

/// <summary>
/// Point-in-time restore (continuous mode): the whole PostgreSQL cluster back to the end of the
/// archived WAL or to a moment, and the config directories from the base set it starts from (the
/// newest complete by then). As with a logical restore, everything that can fail harmlessly happens
/// before the node changes:
/// <list type="number">
/// <item>take the restore lock and journal (<see cref="RestoreJournal"/>, the logical restore's), after recovering an interrupted restore of either kind;</item>
/// <item>fence (take the next generation, so the node being replaced can archive nothing more), then plan: a base backup and the WAL chain (<see cref="RecoveryPlanner"/>);</item>
/// <item>stream the base backup into a staged data directory beside the live one, checking SHA-256; a base that fails is skipped for the next older one;</item>
/// <item><c>pg_verifybackup</c> the staged directory against pg_basebackup's own manifest;</item>
/// <item>download the WAL chain, each file checked against its SHA-256 (a corrupt one is refused, naming it);</item>
/// <item>download and extract the config archive beside its targets;</item>
/// <item>replay in a rehearsal server nothing else can reach (<see cref="RehearsalServer"/>) until PostgreSQL has promoted it at the target, then shut it down;</item>
/// <item>stop the registry and the server, swap the data directory and config directories (<see cref="DirectorySwap"/>, the logical restore's), start the server, then the registry, and wait for health;</item>
/// <item>remove the previous ones.</item>
/// </list>
/// Any failure puts back what was changed and ends its message with <c>Node state: …</c>. Each
/// phase is journalled before it is taken, so a restore killed anywhere (SIGKILL, a power cut) is
/// rolled back, or finished once the registry was healthy, by <see cref="InterruptedRestore"/> at
/// the next <c>restore</c>, <c>status</c> or worker start.
/// </summary>
public sealed partial class ContinuousRestoreService
{
    private readonly RegistryDrOptions _options;
    private readonly IBackupStore _store;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly RegistryController _registry;
    private readonly IOperationEvents _events;
    private readonly ServerTools _tools;
    private readonly ServerControl _server;

    public ContinuousRestoreService(RegistryDrOptions options, IBackupStore store, ILogger logger, TimeProvider time, HttpClient? http = null, IOperationEvents? events = null)
    {
        _options = options;
        _store = store;
        _logger = logger;
        _time = time;
        _events = events ?? NullOperationEvents.Instance;
        _registry = new RegistryController(options.Registry, logger, time, http);
        _tools = new ServerTools(options.Database);
        _server = new ServerControl(options, logger, time);
    }

    private string LiveDataDirectory => Path.TrimEndingDirectorySeparator(Path.GetFullPath(_options.Continuous.DataDirectory!));

    internal Task<ArchiveView> ReadArchiveAsync(CancellationToken cancellationToken) => new ContinuousCatalog(_store).ReadArchiveAsync(msg => LogUnreadable(msg), cancellationToken);

    public async Task<PointInTimeResult> PlanAsync(PointInTimeRequest request, CancellationToken cancellationToken)
    {
        var view = await ReadArchiveAsync(cancellationToken);
        var plan = RecoveryPlanner.Plan(view.Bases, view.Wal, view.Histories, request.Target, request.BaseBackupId);
        // What the plan passed over (a manifest that does not parse, a base backup whose artifacts have not all arrived) comes first.
        return new PointInTimeResult(plan, view.Unreadable.Concat(Steps(plan)).ToList(), true, TimeSpan.Zero);
    }

    internal IReadOnlyList<string> Steps(RecoveryPlan plan)
    {
        var b = plan.Base;
        var first = plan.Segments.Count > 0 ? plan.Segments[0].File.Name : "-";
        var last = plan.LastSegment?.File.Name ?? "-";
        var point = plan.Target.IsLatest
            ? $"the end of the archived WAL: {last}, archived at {plan.ResultingPoint:u}; every transaction committed before then"
            : $"{plan.Target} (the newest transaction committed at or before it)";
        var steps = new List<string>
        {
            $"Base backup {b.BackupId} (taken {b.StartedAt:u}–{b.CompletedAt:u} on {b.Host}, timeline {b.Server.Timeline}, {b.TotalSize} bytes stored) from {_store.Description}, checking its SHA-256 and then every file against pg_basebackup's manifest (pg_verifybackup)",
            $"WAL: {plan.Segments.Count} segment(s) {first} to {last} ({plan.WalBytes} bytes, {plan.WalStoredBytes} stored) and {plan.HistoryFiles.Count} timeline history file(s), each checked against its SHA-256; replayed on timeline {plan.TargetTimeline}",
            $"Resulting point: {point}",
            $"Config directories from base set {b.BackupId}: {string.Join(", ", b.ConfigDirectories.Select(d => d.Path))}, extracted beside their targets",
            $"Replay in a rehearsal server on a staged copy beside {LiveDataDirectory} (no TCP, nothing archived) until PostgreSQL promotes it at that point",
            _options.Registry.StopCommand.Count > 0 ? $"Stop the registry: {string.Join(' ', _options.Registry.StopCommand)}" : "Stop the registry: no Registry:StopCommand configured",
            $"Stop PostgreSQL ({string.Join(' ', _options.Continuous.ServerStopCommand)}), swap the data directory {LiveDataDirectory} and the config directories, start PostgreSQL ({string.Join(' ', _options.Continuous.ServerStartCommand)})",
            _options.Registry.StartCommand.Count > 0 ? $"Start the registry: {string.Join(' ', _options.Registry.StartCommand)}" : "Start the registry: no Registry:StartCommand configured",
            _options.Restore.KeepPrevious ? "Keep the previous data directory and config directories (Restore:KeepPrevious)" : "Delete the previous data directory and config directories",
        };
        foreach (var skipped in plan.SkippedBases) steps.Insert(0, "Skipped newer base backup " + skipped);
        return steps;
    }

    public async Task<PointInTimeResult> RestoreAsync(PointInTimeRequest request, IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        progress ??= NullProgress.Instance;
        if (request.DryRun) return await PlanAsync(request, cancellationToken);
        var started = _time.GetTimestamp();
        var label = request.Target.ToString();

        // 0. One restore at a time, logical or point-in-time (the lock beside the node state), and
        //    whatever a killed one left is rolled back or finished first (InterruptedRestore).
        using var journal = await InterruptedRestore.BeginRestoreAsync(_options, _logger, _time, cancellationToken);
        Fencing.Generation? generation = null;
        if (request.TakeGeneration)
        {
            // From here on the node being replaced (or a zombie of it) can archive nothing, so the
            // WAL read below is all of its history this node will ever continue from.
            // The same step as the logical restore's and the agent's: taken and recorded in the node
            // state together (a pending claim survives a crash between the two), in this region,
            // and a new epoch over a store another region wrote last (a manual failover or failback).
            generation = await new Fencing.GenerationLedger(_store, _time).TakeAndRecordAsync(_options.Agent.StateFile, request.TakeOver ? "takeover" : "restore",
                request.InstanceId, request.BaseBackupId, cancellationToken, request.Region, request.TakeOver);
            LogGeneration(generation.Number);
        }
        _events.RestoreStarted(label);
        var state = new SwapState();
        var configSwaps = new List<DirectorySwap>();
        DirectorySwap? dataSwap = null;
        RecoveryStaging? staging = null;
        RecoveryPlan? plan = null;
        var rollbackIncomplete = false;
        try
        {
            // The journal (restore-journal.json) records each phase before it is taken, so a
            // restore killed anywhere is rolled back or finished by the next start (InterruptedRestore).
            journal.Write(new RestoreJournal.Entry
            {
                BackupId = label, ProcessId = Environment.ProcessId, Host = Environment.MachineName, StartedAt = _time.GetUtcNow(),
                Phase = RestoreJournal.Phases.Download, Staging = "", Database = _options.Database.Name,
                KeepPrevious = _options.Restore.KeepPrevious, Generation = generation?.Number,
            });

            // 1. Plan, then stage the base backup and the WAL beside the live data directory, every file checked.
            progress.Phase("plan");
            (plan, staging) = await StageAsync(request, progress,
                s => journal.Record(e => e with { Staging = s.ScratchDirectory, DataDirectory = DataDirectorySwap(s).Record }), cancellationToken);
            dataSwap = DataDirectorySwap(staging);
            journal.Record(e => e with { BackupId = plan.Base.BackupId });
            LogPlanned(plan.Base.BackupId, plan.Segments.Count, label);
            PausePoints.Reached(PausePoints.Download);

            // 2. The config directories from the base set, extracted beside their targets.
            progress.Phase("config");
            var backupId = plan.Base.BackupId;
            configSwaps = plan.Base.ConfigDirectories.Select(d => DirectorySwap.For(d.Path, d.EntryPrefix, backupId)).ToList();
            journal.Record(e => e with { Phase = RestoreJournal.Phases.Extract, Directories = configSwaps.Select(s => s.Record).ToList() });
            var configFile = Path.Combine(staging.Root, "config.tar.gz");
            await DownloadCheckedAsync(backupId, plan.Base.Get(ContinuousLayout.ConfigArtifact), configFile, cancellationToken);
            await ExtractConfigAsync(plan.Base, configFile, configSwaps, cancellationToken);
            PausePoints.Reached(PausePoints.Extract);

            // 3. Replay in a rehearsal server nothing else can reach, until PostgreSQL promotes it at the target.
            progress.Phase("replay");
            journal.Enter(RestoreJournal.Phases.LoadDatabase);
            var recovered = await RehearseAsync(plan, staging, inspect: null, cancellationToken);
            PausePoints.Reached(PausePoints.ScratchLoad);

            // 4. From here the node changes: stop the registry and PostgreSQL, swap the data
            //    directory, then the config directories (the same DirectorySwap as a logical restore's).
            progress.Phase("stop");
            journal.Enter(RestoreJournal.Phases.StopRegistry);
            state.RegistryStopped = true;
            await _registry.StopAsync(cancellationToken);
            state.ServerStopped = true;
            await _server.StopAsync(cancellationToken);

            progress.Phase("swap");
            journal.Record(e => e with { Phase = RestoreJournal.Phases.SwapDatabase, DatabaseExisted = dataSwap.TargetExists });
            dataSwap.Apply();
            PausePoints.Reached(PausePoints.AfterDatabaseSwap);
            journal.Record(e => e with { Phase = RestoreJournal.Phases.SwapDirectories, TargetsExisted = configSwaps.Select(s => s.TargetExists).ToList() });
            foreach (var swap in configSwaps) swap.Apply();
            PausePoints.Reached(PausePoints.AfterDirectorySwap);

            // 5. PostgreSQL on the restored data directory, then the registry, and wait for health.
            progress.Phase("start");
            journal.Enter(RestoreJournal.Phases.StartRegistry);
            await WalStoreAccess.EnsureAsync(_options, cancellationToken);
            await _server.StartAsync(() => state.ServerStopped = false, cancellationToken);
            await _registry.StartAsync(cancellationToken);
            state.RegistryStopped = false;
            state.RegistryRunsOnRestored = true;
            PausePoints.Reached(PausePoints.AfterStart);
            await _registry.WaitUntilHealthyAsync(cancellationToken);
            journal.Enter(RestoreJournal.Phases.Healthy);

            var held = generation?.Number ?? Agent.NodeStateFile.Read(_options.Agent.StateFile)?.Generation;
            Agent.NodeStateFile.Write(_options.Agent.StateFile,
                new Agent.NodeState(Agent.NodeStatus.Restored, _time.GetUtcNow(), backupId, null, $"restored to {label} with registry-dr restore") { Generation = held });
            PausePoints.Reached(PausePoints.BeforeCleanup);

            // 6. Remove the previous data directory and config directories.
            progress.Phase("clean up");
            if (!_options.Restore.KeepPrevious)
            {
                dataSwap.DeletePrevious();
                foreach (var swap in configSwaps) swap.DeletePrevious();
            }
            var elapsed = _time.GetElapsedTime(started);
            LogCompleted(label, backupId, recovered.Timeline, recovered.LastTransactionAt?.ToString("u") ?? "none replayed", elapsed.TotalSeconds);
            _events.RestoreFinished(label, true, elapsed);
            return new PointInTimeResult(plan, Steps(plan), false, elapsed) { Recovered = recovered, Generation = generation };
        }
        catch (Exception ex)
        {
            var (described, complete) = await RollBackAsync(state, dataSwap, configSwaps);
            rollbackIncomplete = !complete;
            _events.RestoreFinished(label, false, _time.GetElapsedTime(started));
            LogFailed(ex, label, described);
            if (ex is OperationCanceledException && cancellationToken.IsCancellationRequested) throw;
            throw new RestoreFailedException(plan?.Base.BackupId ?? label, ex.Message, described, ex);
        }
        finally
        {
            foreach (var swap in configSwaps) swap.DeleteStaging();
            // The restored data directory is inside only when it was never swapped in or was put back.
            if (staging is not null) await staging.DisposeAsync();
            // Done, or rolled back in full: nothing is left for a recovery. A rollback that could
            // not put something back keeps the journal, so the next run tries again.
            if (journal.Current is not null && !rollbackIncomplete) journal.Delete();
        }
    }

    /// <summary>The data directory's swap: the staged tree in <see cref="RecoveryStaging.Root"/> for the live one, which goes to <c>.&lt;name&gt;.registry-dr-prev-&lt;tag&gt;</c>.</summary>
    private DirectorySwap DataDirectorySwap(RecoveryStaging staging)
    {
        var live = LiveDataDirectory;
        return new DirectorySwap
        {
            TargetPath = live,
            StagingParent = staging.Root,
            PreviousPath = Path.Combine(Path.GetDirectoryName(live)!, $".{Path.GetFileName(live)}{RestoreLeftovers.ConfigPreviousMarker}{staging.Root[^6..]}"),
        };
    }

    /// <summary>
    /// Plans, then stages the base backup (falling back to an older one when a base fails its
    /// checks and none was named) and the WAL. Shared with the drill.
    /// </summary>
    /// <param name="staged">Told each staging directory as soon as it exists (the restore journals it, so a kill leaves nothing unrecorded).</param>
    internal async Task<(RecoveryPlan, RecoveryStaging)> StageAsync(PointInTimeRequest request, IOperationProgress progress, Action<RecoveryStaging>? staged, CancellationToken cancellationToken)
    {
        var view = await ReadArchiveAsync(cancellationToken);
        var excluded = new List<string>();
        while (true)
        {
            var plan = RecoveryPlanner.Plan(view.Bases.Where(b => !excluded.Contains(b.BackupId)).ToList(), view.Wal, view.Histories, request.Target, request.BaseBackupId);
            if (excluded.Count > 0) plan = plan with { SkippedBases = [.. excluded.Select(e => e + ": failed its checks"), .. plan.SkippedBases] };
            var staging = await RecoveryStaging.CreateAsync(LiveDataDirectory, "restore", cancellationToken);
            try
            {
                staged?.Invoke(staging);
                progress.Phase("download base backup");
                await staging.ExtractBaseAsync(_store, plan.Base, progress, cancellationToken);
                await VerifyBackupAsync(plan.Base, staging, cancellationToken);
            }
            catch (Exception ex) when (ex is ArtifactCorruptException && request.BaseBackupId is null)
            {
                await staging.DisposeAsync();
                LogFallingBack(plan.Base.BackupId, ex.Message);
                excluded.Add(plan.Base.BackupId);
                continue;
            }
            catch
            {
                await staging.DisposeAsync();
                throw;
            }
            try
            {
                progress.Phase("download WAL");
                await staging.DownloadWalAsync(_store, plan, _options.Restore.Jobs, progress, cancellationToken);
                await staging.GiveToOwnerAsync(cancellationToken);
                return (plan, staging);
            }
            catch
            {
                await staging.DisposeAsync();
                throw;
            }
        }
    }

    /// <summary>pg_verifybackup: every file of the staged base backup against the checksums pg_basebackup wrote in its backup_manifest.</summary>
    private async Task VerifyBackupAsync(BaseBackupManifest manifest, RecoveryStaging staging, CancellationToken cancellationToken)
    {
        // WAL is checked by its own SHA-256 (and replayed next); --no-parse-wal spares needing pg_waldump.
        var result = await ProcessRunner.RunAsync(new ProcessSpec(_tools.PgVerifyBackup, ["--no-parse-wal", "--quiet", staging.DataDirectory])
        { DisplayName = "pg_verifybackup", Timeout = _options.Continuous.RecoveryTimeout }, cancellationToken: cancellationToken);
        if (result.ExitCode == -1 || result.StandardError.Contains("could not be started", StringComparison.Ordinal))
            throw new ProcessFailedException($"pg_verifybackup could not run ({_tools.PgVerifyBackup}).{ProcessRunner.FormatTail(result.StandardError)}", result.ExitCode, result.StandardError);
        if (result.ExitCode != 0)
            throw new ArtifactCorruptException(manifest.BackupId, ContinuousLayout.BaseArtifact, $"pg_verifybackup found files that differ from pg_basebackup's manifest.{ProcessRunner.FormatTail(result.StandardError)}");
        LogVerified(manifest.BackupId, manifest.Server.Files);
    }

    internal async Task<RecoveredPoint> RehearseAsync(RecoveryPlan plan, RecoveryStaging staging, Func<NpgsqlConnection, Task>? inspect, CancellationToken cancellationToken)
    {
        var server = new RehearsalServer(_tools, staging.Owner, staging.DataDirectory, staging.WalDirectory, staging.ScratchDirectory, _options.Database.User, _time, _logger);
        var database = _options.Database.Name;
        var recovered = await server.RecoverAsync(plan.Target, plan.TargetTimeline, _options.Continuous.RecoveryTimeout, async connection =>
        {
            await using (var cmd = new NpgsqlCommand("SELECT count(*) FROM pg_database WHERE datname = $1", connection) { Parameters = { new() { Value = database } } })
                if (await cmd.ExecuteScalarAsync(cancellationToken) is not (long and > 0))
                    throw new RecoveryFailedException($"The restored cluster has no database '{database}' (Database:Name).");
            if (inspect is not null) await inspect(connection);
        }, cancellationToken);
        LogReplayed(plan.Base.BackupId, recovered.Timeline, recovered.EndLsn, recovered.LastTransactionAt?.ToString("u") ?? "none", recovered.StopReason ?? "end of the archived WAL");
        return recovered;
    }

    internal string StagingRoot => _options.Restore.StagingDirectory is { Length: > 0 } s ? s : Path.GetTempPath();

    private async Task DownloadCheckedAsync(string backupId, BackupManifest.Artifact artifact, string path, CancellationToken cancellationToken)
    {
        await using var source = await _store.OpenReadAsync(artifact.Key, cancellationToken);
        using var hashing = new HashingStream(source);
        await using (var file = new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            await hashing.CopyToAsync(file, 1 << 20, cancellationToken);
        ArtifactIntegrity.Check(backupId, artifact, hashing.BytesRead, hashing.HashHex());
    }

    private static async Task ExtractConfigAsync(BaseBackupManifest manifest, string archivePath, List<DirectorySwap> swaps, CancellationToken cancellationToken)
    {
        var roots = manifest.ConfigDirectories.Select(d => new ArchiveRoot(d.Path, d.EntryPrefix)).ToList();
        var targets = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var swap in swaps)
        {
            swap.PrepareStaging();
            targets[swap.EntryPrefix!] = swap.StagingPath;
        }
        await using var input = new FileStream(archivePath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous);
        try
        {
            await ConfigArchiveReader.ExtractAsync(input, roots, targets, restoreOwnership: Environment.IsPrivilegedProcess, cancellationToken);
        }
        catch (Exception ex) when (ex is InvalidDataException or UnsafeArchiveException or ICSharpCode.SharpZipLib.SharpZipBaseException or EndOfStreamException)
        {
            throw new ArtifactCorruptException(manifest.BackupId, ContinuousLayout.ConfigArtifact, $"the archive is unreadable or unsafe: {ex.Message}");
        }
    }

    /// <summary>
    /// Puts back whatever the failed restore had changed, in reverse, and says exactly what state
    /// the node is in now (the operator reads it before doing anything else); Complete is false
    /// when something could not be put back (the journal is then kept for the next run).
    /// </summary>
    private async Task<(string Described, bool Complete)> RollBackAsync(SwapState state, DirectorySwap? dataSwap, List<DirectorySwap> configSwaps)
    {
        var notes = new List<string>();
        var complete = true;
        // It read the restored config and is connected to the restored server: stopped first, started again at the end.
        var stillRunning = false;
        if (state.RegistryRunsOnRestored)
        {
            var (clause, running) = await _registry.StopRunningOnRestoredAsync(CancellationToken.None);
            notes.Add(clause);
            stillRunning = running;
        }
        var canMove = true;
        if ((dataSwap is { Applied: true } || configSwaps.Any(s => s.Applied)) && !state.ServerStopped)
        {
            // The restored server may be running on the swapped-in directory: stop it before moving it.
            try
            {
                state.ServerStopped = true;
                await _server.StopAsync(CancellationToken.None);
            }
            catch (Exception ex)
            {
                canMove = false;
                complete = false;
                notes.Add($"PostgreSQL could NOT be stopped to put things back ({ex.Message}), so nothing was moved");
            }
        }
        if (canMove)
        {
            foreach (var swap in configSwaps.Where(s => s.Applied).Reverse())
            {
                try { swap.Undo(); notes.Add($"{swap.TargetPath} was put back as it was"); }
                catch (Exception ex) { complete = false; notes.Add($"{swap.TargetPath} could NOT be put back ({ex.Message}); the previous copy is at {swap.PreviousPath}"); }
            }
            if (dataSwap is { Applied: true })
            {
                try { dataSwap.Undo(); notes.Add($"the data directory {dataSwap.TargetPath} was put back as it was"); }
                catch (Exception ex) { complete = false; notes.Add($"the data directory {dataSwap.TargetPath} could NOT be put back ({ex.Message}); the previous one is at {dataSwap.PreviousPath}"); }
            }
            else
            {
                notes.Add($"the data directory {LiveDataDirectory} was not touched");
            }
        }
        // Started again only on its own data directory.
        if (state.ServerStopped && dataSwap is not { Applied: true })
        {
            try
            {
                await _server.StartAsync(() => state.ServerStopped = false, CancellationToken.None);
                notes.Add("PostgreSQL was started again on its previous data");
            }
            catch (Exception ex)
            {
                complete = false;
                notes.Add($"PostgreSQL is STOPPED and could not be started again ({ex.Message})");
            }
        }
        else if (state.ServerStopped)
        {
            notes.Add("PostgreSQL is STOPPED");
        }
        if ((state.RegistryStopped || state.RegistryRunsOnRestored) && !stillRunning)
            notes.Add((await _registry.StartAgainAsync(CancellationToken.None)).Clause);
        else if (!state.RegistryStopped && !state.RegistryRunsOnRestored)
            notes.Add("the registry was not stopped");
        if (!complete) notes.Add("the restore journal is kept, so the next `registry-dr restore`, `registry-dr status` or worker start tries the rollback again");
        return ("Node state: " + string.Join("; ", notes) + ".", complete);
    }

    private sealed class SwapState
    {
        public bool RegistryStopped;
        /// <summary>The start command ran after the swap: the registry read the restored data.</summary>
        public bool RegistryRunsOnRestored;
        public bool ServerStopped;
    }

    [LoggerMessage(9120, LogLevel.Information, "Took fencing generation {Generation} before reading the WAL: the node being replaced can archive nothing more")]
    private partial void LogGeneration(long generation);

    [LoggerMessage(9121, LogLevel.Information, "Point-in-time restore to {Target}: base backup {BackupId} and {Segments} WAL segment(s)")]
    private partial void LogPlanned(string backupId, int segments, string target);

    [LoggerMessage(9122, LogLevel.Warning, "Base backup {BackupId} failed its checks, falling back to the next older one: {Reason}")]
    private partial void LogFallingBack(string backupId, string reason);

    [LoggerMessage(9123, LogLevel.Information, "Base backup {BackupId}: pg_verifybackup checked {Files} files against pg_basebackup's manifest")]
    private partial void LogVerified(string backupId, int files);

    [LoggerMessage(9124, LogLevel.Information, "Replayed from base backup {BackupId}: timeline {Timeline} at {Lsn}, newest transaction {LastTransaction}, stopped at: {Stop}")]
    private partial void LogReplayed(string backupId, uint timeline, string lsn, string lastTransaction, string stop);

    [LoggerMessage(9125, LogLevel.Information, "Point-in-time restore to {Target} from base backup {BackupId} complete: timeline {Timeline}, newest transaction {LastTransaction}, in {Seconds:F1} s")]
    private partial void LogCompleted(string target, string backupId, uint timeline, string lastTransaction, double seconds);

    [LoggerMessage(9126, LogLevel.Error, "Point-in-time restore to {Target} failed. {NodeState}")]
    private partial void LogFailed(Exception ex, string target, string nodeState);

    [LoggerMessage(9127, LogLevel.Warning, "A base backup is never used: {Reason}")]
    private partial void LogUnreadable(string reason);
}
