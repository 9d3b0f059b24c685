using System.Reflection;
using Microsoft.Extensions.Logging;
using RegistryDR.Archive;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Postgres;
using RegistryDR.Processes;
using RegistryDR.Progress;
using RegistryDR.Stores;

namespace RegistryDR.Backup;

/// <summary>
/// Takes one backup set: the roles, the database and the config directories, each streamed
/// from its producer through SHA-256 to the store, then the manifest, last. Until the
/// manifest is written the set is incomplete and nothing will restore it; a failure deletes
/// what was written so far (the bucket's lifecycle rule is the backstop if even that fails).
/// </summary>
public sealed partial class BackupService
{
    private readonly RegistryDrOptions _options;
    private readonly IBackupStore _store;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly PostgresConnectionFactory _postgres;
    private readonly PostgresTools _tools;
    private readonly IOperationEvents _events;

    public BackupService(RegistryDrOptions options, IBackupStore store, ILogger<BackupService> logger, TimeProvider time, IOperationEvents? events = null)
    {
        _events = events ?? NullOperationEvents.Instance;
        _options = options;
        _store = store;
        _logger = logger;
        _time = time;
        _postgres = new PostgresConnectionFactory(options.Database, logger);
        _tools = new PostgresTools(options.Database);
    }

    internal static string Version =>
        typeof(BackupService).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    /// <summary>The backup running now, if any: which set, which phase, since when (the worker reports a run that overstays).</summary>
    public BackupRunInfo? Running => _running;

    private volatile BackupRunInfo? _running;

    public async Task<BackupManifest> RunAsync(IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        // Continuous mode: a base backup set (Continuous/), reported to callers and events in this shape.
        if (_options.Database.Mode == Continuous.DatabaseMode.Continuous)
            return Continuous.BaseBackupService.ToEventManifest(await new Continuous.BaseBackupService(_options, _store, _logger, _time, _events).RunAsync(progress, cancellationToken));
        var startedAt = _time.GetUtcNow();
        var started = _time.GetTimestamp();
        var backupId = BackupLayout.NewBackupId(startedAt);
        var run = new BackupRunInfo(backupId, startedAt) { Phase = "preflight" };
        _running = run;
        var outer = progress ?? NullProgress.Instance;
        progress = new PhaseTracking(outer, run);
        // The whole operation's bound (Backup:Timeout), on top of every request's own: whatever
        // waits forever underneath is cancelled like a SIGTERM, and the failure says where it was.
        using var deadline = new CancellationTokenSource(_options.Backup.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        var callerToken = cancellationToken;
        cancellationToken = linked.Token;
        _events.BackupStarted(backupId);
        using var scope = _logger.BeginScope("backup {BackupId}", backupId);
        LogStarting(backupId, _store.Description);
        var written = new List<string>();
        var phase = "preflight";
        try
        {
            progress.Phase(phase);
            if (_options.Schedule.RequireRestoredNode && Agent.NodeStateFile.WhyBackupsAreRefused(_options.Agent.StateFile) is { } refusal)
                throw new BackupFailedException(backupId, phase, "refused: " + refusal + ".");
            var generation = await CheckFencingAsync(backupId, phase, cancellationToken);
            var roots = _options.Config.EffectiveDirectories.Select(ArchiveRoot.For).ToList();
            foreach (var root in roots)
                if (!Directory.Exists(root.Path))
                    throw new BackupFailedException(backupId, phase, $"config directory '{root.Path}' does not exist (Config:Directories).");
            var server = await ReadServerInfoAsync(cancellationToken);
            var properties = await ReadPropertiesAsync(cancellationToken);
            var pgDumpVersion = await PostgresTools.GetVersionAsync(_tools.PgDump, cancellationToken);
            if (PostgresTools.MajorVersion(pgDumpVersion) < PostgresTools.MajorVersion(server.Version))
                throw new BackupFailedException(backupId, phase,
                    $"pg_dump {pgDumpVersion} ({_tools.PgDump}) is older than the PostgreSQL server {server.Version}; install the server's client tools or set Database:BinDirectory.");

            var artifacts = new List<BackupManifest.Artifact>();
            written.Add(BackupLayout.InProgressKey(backupId));
            await _store.PutAsync(BackupLayout.InProgressKey(backupId), new MemoryStream(InProgressMarker.Create(startedAt).ToJson()), cancellationToken);

            phase = "dump roles";
            progress.Phase(phase);
            var globalsArgs = new List<string> { "--globals-only", "--no-password", "--database=" + _options.Database.MaintenanceDatabase };
            if (!_options.Database.DumpRolePasswords) globalsArgs.Add("--no-role-passwords");
            artifacts.Add(await DumpAsync(backupId, BackupLayout.GlobalsArtifact,
                new ProcessSpec(_tools.PgDumpAll, globalsArgs) { Environment = _postgres.ToolEnvironment(_options.Database.MaintenanceDatabase), DisplayName = "pg_dumpall" },
                written, progress, static _ => null, cancellationToken));

            phase = "dump database";
            progress.Phase(phase);
            DatabaseFingerprint fingerprint;
            TableDataDump.Output tableData;
            await using (var snapshot = await ExportedSnapshot.BeginAsync(_postgres, cancellationToken))
            {
                var plan = await snapshot.FindSplitTablesAsync((long)Math.Ceiling(_options.Database.SplitTablesFromMiB * (1 << 20)), cancellationToken);
                var split = plan.Tables;
                if (plan.KeptInPgDump.Count > 0) LogKeptInPgDump(backupId, plan.KeptInPgDump.Count, string.Join("; ", plan.KeptInPgDump));
                if (split.Count > 0) LogSplitting(backupId, split.Count, string.Join(", ", split.Select(t => t.QualifiedName)));
                var dumpArgs = new List<string> { "--format=custom", $"--compress={_options.Database.CompressionLevel}", "--no-password", "--snapshot=" + snapshot.Id };
                dumpArgs.AddRange(split.Select(t => "--exclude-table-data=" + t.DumpPattern));
                // Counting runs in the exported snapshot while pg_dump and the range COPYs dump it,
                // so it costs no extra wall time. All three run at once; the first failure stops the others.
                using var failFast = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var counting = FailFast.CancelOthersOnFailure(snapshot.CountAsync(failFast.Token), failFast);
                var dumping = FailFast.CancelOthersOnFailure(DumpAsync(backupId, BackupLayout.DatabaseArtifact,
                    new ProcessSpec(_tools.PgDump, dumpArgs) { Environment = _postgres.ToolEnvironment(), DisplayName = "pg_dump" },
                    written, progress, CheckCustomFormat, failFast.Token), failFast);
                var ranges = FailFast.CancelOthersOnFailure(
                    new TableDataDump(_store, _postgres, _options.Database, progress).RunAsync(backupId, snapshot.Id, split, key => { lock (written) written.Add(key); }, failFast.Token),
                    failFast);
                await FailFast.WhenAllAsync(dumping, ranges, counting);
                artifacts.Add(dumping.Result);
                tableData = ranges.Result;
                artifacts.AddRange(tableData.Artifacts);
                fingerprint = counting.Result;
            }
            var warnings = await FlagSuspiciousDumpAsync(BackupLayout.ArtifactKey(backupId, BackupLayout.DatabaseArtifact), BackupManifest.DatabaseBytes(artifacts),
                fingerprint, cancellationToken);

            phase = "archive config";
            progress.Phase(phase);
            artifacts.Add(await ArchiveConfigAsync(backupId, roots, written, progress, cancellationToken));

            phase = "write manifest";
            progress.Phase(phase);
            var manifest = new BackupManifest
            {
                FormatVersion = BackupManifest.CurrentFormatVersion,
                BackupId = backupId,
                StartedAt = startedAt,
                CompletedAt = _time.GetUtcNow(),
                Host = Environment.MachineName,
                RegistryDrVersion = Version,
                Postgres = new BackupManifest.PostgresInfo
                {
                    ServerVersion = server.Version,
                    PgDumpVersion = pgDumpVersion,
                    Database = _options.Database.Name,
                    Owner = server.Owner,
                    Encoding = server.Encoding,
                    Collate = server.Collate,
                    Ctype = server.Ctype,
                    DumpFormat = "custom",
                    Properties = properties,
                },
                ConfigDirectories = roots.Select(r => new BackupManifest.ConfigDirectory { Path = r.Path, EntryPrefix = r.EntryPrefix }).ToList(),
                Artifacts = artifacts,
                SplitTables = tableData.Tables,
                Fingerprint = new BackupManifest.FingerprintInfo { RowCounts = fingerprint.RowCounts.ToDictionary() },
                Warnings = warnings,
                Generation = generation,
            };
            // Checked again just before the set becomes complete: a node that lost its generation
            // while dumping must not publish a set that the next restore would take as the newest.
            await CheckFencingAsync(backupId, phase, cancellationToken);
            // Cancellation stops here at the latest: once the manifest put starts it is allowed to finish,
            // so a SIGTERM never leaves a set whose completeness depends on a half-sent manifest.
            cancellationToken.ThrowIfCancellationRequested();
            await _store.PutAsync(BackupLayout.ManifestKey(backupId), new MemoryStream(manifest.ToJson()), CancellationToken.None);
            await DeleteQuietlyAsync([BackupLayout.InProgressKey(backupId)]);
            LogCompleted(backupId, manifest.TotalSize, (manifest.CompletedAt - startedAt).TotalSeconds);
            _events.BackupSucceeded(manifest, _time.GetElapsedTime(started));
            return manifest;
        }
        catch (Exception ex)
        {
            await DeleteQuietlyAsync(written);
            if (ex is OperationCanceledException && callerToken.IsCancellationRequested)
            {
                LogCancelled(backupId, phase);
                _events.BackupFailed(backupId, BackupFailureReason.Cancelled, _time.GetElapsedTime(started));
                throw;
            }
            var failure = ex as BackupFailedException ?? new BackupFailedException(backupId, phase, Explain(ex, phase, deadline.IsCancellationRequested), ex);
            _events.BackupFailed(backupId, Classify(failure, phase), _time.GetElapsedTime(started));
            // One line with the reason for the journal; the stack trace only when debugging.
            LogFailed(backupId, phase, failure.Reason);
            LogFailureDetail(failure, backupId);
            throw failure;
        }
        finally
        {
            _running = null;
        }
    }

    /// <summary>
    /// The reason for a failure, naming the peer that failed: a deadline that passed, PostgreSQL
    /// going away under a session or a tool, or else the error's own message (the store's and the
    /// tools' messages already name the store and the tool).
    /// </summary>
    private string Explain(Exception ex, string phase, bool deadlinePassed)
    {
        if (ex is OperationCanceledException && deadlinePassed)
            return $"it did not finish within Backup:Timeout ({_options.Backup.Timeout}) and was stopped during {phase}; its partial set was removed.";
        if (PostgresConnectionFactory.IsConnectionLoss(ex))
            return _postgres.DescribeConnectionLoss(ex, phase);
        return ex.Message;
    }

    /// <summary>Keeps <see cref="Running"/>'s phase current while passing everything on.</summary>
    private sealed class PhaseTracking(IOperationProgress inner, BackupRunInfo run) : IOperationProgress
    {
        public void Phase(string phase)
        {
            run.Phase = phase;
            inner.Phase(phase);
        }

        public void Transferred(string artifact, long bytes) => inner.Transferred(artifact, bytes);
    }

    private async Task<BackupManifest.Artifact> DumpAsync(
        string backupId, string artifact, ProcessSpec spec, List<string> written, IOperationProgress progress,
        Func<HashingStream, string?> checkOutput, CancellationToken cancellationToken)
    {
        var key = BackupLayout.ArtifactKey(backupId, artifact);
        HashingStream? hashing = null;
        long size = 0;
        lock (written) written.Add(key);
        await ProcessRunner.RunCheckedAsync(spec, readStdout: async (stdout, ct) =>
        {
            hashing = new HashingStream(stdout, b => progress.Transferred(artifact, b));
            size = await _store.PutAsync(key, hashing, ct);
        }, cancellationToken: cancellationToken);
        using var h = hashing!;
        if (h.BytesRead == 0)
            throw new BackupFailedException(backupId, "dump " + artifact, $"{spec.DisplayName} exited 0 but wrote nothing.");
        if (checkOutput(h) is { } problem)
            throw new BackupFailedException(backupId, "dump " + artifact, problem);
        if (size != h.BytesRead)
            throw new BackupFailedException(backupId, "dump " + artifact, $"the store took {size} bytes of {h.BytesRead}.");
        return new BackupManifest.Artifact { Name = artifact, Key = key, Size = size, Sha256 = h.HashHex() };
    }

    /// <returns>The generation this node holds (null when fencing is not in use), recorded in the manifest.</returns>
    private async Task<long?> CheckFencingAsync(string backupId, string phase, CancellationToken cancellationToken)
    {
        var ledger = new Fencing.GenerationLedger(_store, _time);
        var held = await ledger.HeldAsync(Agent.NodeStateFile.Read(_options.Agent.StateFile), cancellationToken);
        if (await ledger.WhyWritingIsRefusedAsync(held, cancellationToken) is { } refusal)
        {
            LogFenced(backupId, refusal);
            throw new BackupFailedException(backupId, phase, "refused: " + refusal + ".");
        }
        return held;
    }

    /// <summary>
    /// An empty database, or a dump far smaller than the previous set's, is usually a registry that
    /// lost its data rather than a registry that shrank. The backup still completes (it is what
    /// the database holds), but it is flagged in its manifest and the log so someone looks.
    /// </summary>
    private async Task<IReadOnlyList<string>> FlagSuspiciousDumpAsync(string key, long dumpSize, DatabaseFingerprint fingerprint, CancellationToken cancellationToken)
    {
        var warnings = new List<string>();
        if (fingerprint.TotalRows == 0)
            warnings.Add(fingerprint.RowCounts.Count == 0 ? "the database has no tables" : "the database's tables hold no rows");
        try
        {
            var catalog = new BackupCatalog(_store);
            var previous = (await catalog.ListAsync(cancellationToken)).FirstOrDefault(s => s.IsComplete);
            if (previous is not null)
            {
                var manifest = await catalog.ReadManifestAsync(previous.BackupId, cancellationToken);
                var before = manifest.DatabaseSize;
                if (before > 0 && dumpSize < before * SuspiciousShrinkRatio)
                {
                    var rowsBefore = manifest.Fingerprint?.RowCounts.Values.Sum();
                    warnings.Add($"the database dump is {dumpSize} bytes, {100.0 * dumpSize / before:F0}% of the previous set {previous.BackupId} ({before} bytes)" +
                        (rowsBefore is { } r ? $"; rows went from {r} to {fingerprint.TotalRows}" : ""));
                }
            }
        }
        catch (Exception ex) when (ex is InvalidManifestException or StoreObjectNotFoundException)
        {
            // A previous set that cannot be compared is verify's business, not a reason to fail this backup.
        }
        foreach (var warning in warnings) LogSuspicious(key, warning);
        return warnings;
    }

    internal const double SuspiciousShrinkRatio = 0.5;

    private static BackupFailureReason Classify(BackupFailedException failure, string phase) => failure.InnerException switch
    {
        _ when failure.Reason.StartsWith("refused:", StringComparison.Ordinal) => BackupFailureReason.Refused,
        DatabaseUnavailableException or Npgsql.NpgsqlException => BackupFailureReason.Database,
        { } inner when PostgresConnectionFactory.IsConnectionLoss(inner) => BackupFailureReason.Database,
        StoreUnavailableException or Amazon.Runtime.AmazonClientException or Amazon.Runtime.AmazonServiceException => BackupFailureReason.Store,
        ProcessFailedException => BackupFailureReason.Dump,
        _ when phase == "archive config" => BackupFailureReason.Config,
        _ when phase.StartsWith("dump", StringComparison.Ordinal) => BackupFailureReason.Dump,
        _ when phase == "preflight" && failure.InnerException is null => BackupFailureReason.Config,
        _ => BackupFailureReason.Other,
    };

    private static string? CheckCustomFormat(HashingStream output) =>
        output.Head.StartsWith("PGDMP"u8) ? null : "pg_dump's output does not start with the custom-format signature 'PGDMP'.";

    private async Task<BackupManifest.Artifact> ArchiveConfigAsync(
        string backupId, IReadOnlyList<ArchiveRoot> roots, List<string> written, IOperationProgress progress, CancellationToken cancellationToken)
    {
        var key = BackupLayout.ArtifactKey(backupId, BackupLayout.ConfigArtifact);
        lock (written) written.Add(key);
        var result = await PipedUpload.PutAsync(_store, key,
            (output, ct) => ConfigArchiveWriter.WriteAsync(roots, _options.Config.Exclude, output, warning => LogArchiveWarning(backupId, warning), ct),
            b => progress.Transferred(BackupLayout.ConfigArtifact, b), cancellationToken);
        var archiveStats = result.Value;
        LogArchived(backupId, archiveStats.Files, archiveStats.Directories, archiveStats.Symlinks, archiveStats.Bytes);
        return new BackupManifest.Artifact
        {
            Name = BackupLayout.ConfigArtifact, Key = key, Size = result.Size, Sha256 = result.Sha256,
            NotKept = archiveStats.NotKept.Select(n => new BackupManifest.NotKeptEntry { Kind = n.Kind, Count = n.Count, Examples = n.Examples }).ToList(),
        };
    }

    private sealed record ServerInfo(string Version, string Owner, string Encoding, string Collate, string Ctype);

    private async Task<ServerInfo> ReadServerInfoAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _postgres.OpenAsync(cancellationToken: cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT current_setting('server_version'), pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype
            FROM pg_database WHERE datname = current_database()
            """;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var version = reader.GetString(0).Split(' ')[0];
        return new ServerInfo(version, reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4));
    }

    /// <summary>The database's own properties (what pg_dump --create would carry), read in the database's encoding.</summary>
    private async Task<DatabaseProperties> ReadPropertiesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _postgres.OpenInDatabaseEncodingAsync(null, cancellationToken);
        return await DatabaseProperties.ReadAsync(connection, cancellationToken);
    }

    /// <summary>
    /// Deletes what a failed backup wrote, within <see cref="CleanupBudget"/> in all: a store that
    /// is gone must not hold the failure for a delete per object. The in-progress marker goes
    /// last, so a clean-up that stops part-way leaves a set the worker's abandoned-set clean-up
    /// (or retention) still recognises. What could not be deleted is logged once, listed.
    /// </summary>
    private async Task DeleteQuietlyAsync(List<string> keys)
    {
        List<string> ordered;
        lock (keys) ordered = keys.Distinct().OrderBy(k => k.EndsWith("/" + BackupLayout.InProgressFileName, StringComparison.Ordinal)).ToList();
        using var budget = new CancellationTokenSource(CleanupBudget, _time);
        for (var i = 0; i < ordered.Count; i++)
        {
            try
            {
                await _store.DeleteAsync(ordered[i], budget.Token);
            }
            catch (Exception ex)
            {
                LogCleanupFailed(ex, ordered.Count - i, string.Join(", ", ordered.Skip(i)), ex.Message);
                return;
            }
        }
    }

    private static readonly TimeSpan CleanupBudget = TimeSpan.FromMinutes(2);

    [LoggerMessage(1000, LogLevel.Information, "Backup {BackupId} starting to {Store}")]
    private partial void LogStarting(string backupId, string store);

    [LoggerMessage(1001, LogLevel.Information, "Backup {BackupId} complete: {Bytes} bytes in {Seconds:F1} s")]
    private partial void LogCompleted(string backupId, long bytes, double seconds);

    [LoggerMessage(1002, LogLevel.Error, "Backup {BackupId} failed during {Phase}: {Reason}")]
    private partial void LogFailed(string backupId, string phase, string reason);

    [LoggerMessage(1009, LogLevel.Debug, "Backup {BackupId} failure detail")]
    private partial void LogFailureDetail(Exception ex, string backupId);

    [LoggerMessage(1003, LogLevel.Warning, "Backup {BackupId} cancelled during {Phase}; its partial set was removed and is never listed as complete")]
    private partial void LogCancelled(string backupId, string phase);

    [LoggerMessage(1004, LogLevel.Warning, "Backup {BackupId}: {Warning}")]
    private partial void LogArchiveWarning(string backupId, string warning);

    [LoggerMessage(1005, LogLevel.Information, "Backup {BackupId} archived config: {Files} files, {Directories} directories, {Symlinks} symlinks, {Bytes} bytes")]
    private partial void LogArchived(string backupId, long files, long directories, long symlinks, long bytes);

    [LoggerMessage(1008, LogLevel.Critical, "Backup {BackupId} refused by fencing: {Reason}")]
    private partial void LogFenced(string backupId, string reason);

    [LoggerMessage(1010, LogLevel.Information, "Backup {BackupId}: {Count} large table(s) dumped in parallel block ranges: {Tables}")]
    private partial void LogSplitting(string backupId, int count, string tables);

    [LoggerMessage(1030, LogLevel.Information, "Backup {BackupId}: {Count} table(s) over Database:SplitTablesFromMiB are dumped by pg_dump, not in block ranges, because binary COPY would not restore them exactly: {Tables}")]
    private partial void LogKeptInPgDump(string backupId, int count, string tables);

    [LoggerMessage(1007, LogLevel.Warning, "Backup {Key} is flagged: {Warning}")]
    private partial void LogSuspicious(string key, string warning);

    [LoggerMessage(1006, LogLevel.Warning, "Could not delete {Count} object(s) of the failed backup ({Keys}): {Reason}. The set has no manifest, so it is never restored; the worker's clean-up at start or retention (Retention:IncompleteGrace) removes it")]
    private partial void LogCleanupFailed(Exception ex, int count, string keys, string reason);
}

/// <summary>A backup in progress: its set, when it started, and the phase it is in now (updated as it goes).</summary>
public sealed record BackupRunInfo(string BackupId, DateTimeOffset StartedAt)
{
    private volatile string _phase = "";

    public string Phase { get => _phase; internal set => _phase = value; }
}

/// <summary>A backup did not complete; no manifest was written, so the set is never restored.</summary>
public sealed class BackupFailedException(string backupId, string phase, string reason, Exception? inner = null)
    : Exception($"Backup {backupId} failed during {phase}: {reason}", inner)
{
    public string BackupId { get; } = backupId;
    public string Phase { get; } = phase;
    public string Reason { get; } = reason;
}
