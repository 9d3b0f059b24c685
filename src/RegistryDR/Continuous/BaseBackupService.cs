using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RegistryDR.Archive;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Continuous.Internal;
using RegistryDR.Monitoring;
using RegistryDR.Postgres;
using RegistryDR.Processes;
using RegistryDR.Progress;
using RegistryDR.Stores;

namespace RegistryDR.Continuous;

/// <summary>
/// Takes one base backup set (continuous mode): <c>pg_basebackup</c>'s tar of the whole data
/// directory, streamed through gzip and SHA-256 to the store (no local copy), then the config
/// directories, then the manifest, last. pg_basebackup returns only once the WAL the backup needs
/// has been archived (by <c>registry-dr wal-push</c>), so a complete set is restorable from its
/// own end on. Fencing and the node gate are checked as for a logical set, before and at the
/// commit point; failures throw <see cref="BackupFailedException"/> like the logical backup.
/// </summary>
public sealed partial class BaseBackupService
{
    private readonly RegistryDrOptions _options;
    private readonly IBackupStore _store;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly IOperationEvents _events;
    private readonly PostgresConnectionFactory _postgres;
    private readonly ServerTools _tools;

    public BaseBackupService(RegistryDrOptions options, IBackupStore store, ILogger logger, TimeProvider time, IOperationEvents? events = null)
    {
        _options = options;
        _store = store;
        _logger = logger;
        _time = time;
        _events = events ?? NullOperationEvents.Instance;
        _postgres = new PostgresConnectionFactory(options.Database, logger);
        _tools = new ServerTools(options.Database);
    }

    public async Task<BaseBackupManifest> RunAsync(IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        progress ??= NullProgress.Instance;
        var startedAt = _time.GetUtcNow();
        var started = _time.GetTimestamp();
        var backupId = BackupLayout.NewBackupId(startedAt);
        _events.BackupStarted(backupId);
        LogStarting(backupId, _store.Description);
        var written = new List<string>();
        var phase = "preflight";
        try
        {
            progress.Phase(phase);
            if (_options.Schedule.RequireRestoredNode && Agent.NodeStateFile.WhyBackupsAreRefused(_options.Agent.StateFile) is { } refusal)
                throw new BackupFailedException(backupId, phase, "refused: " + refusal + ".");
            await CheckFencingAsync(backupId, phase, cancellationToken);
            var roots = _options.Config.EffectiveDirectories.Select(ArchiveRoot.For).ToList();
            foreach (var root in roots)
                if (!Directory.Exists(root.Path))
                    throw new BackupFailedException(backupId, phase, $"config directory '{root.Path}' does not exist (Config:Directories).");
            // First: on a file store the server's own user archives into continuous/wal/, which
            // must exist and be its own before PostgreSQL's next attempt (on a new node, the first
            // attempts fail until this ran; the wait below gives the archiver's retry its chance).
            await WalStoreAccess.EnsureAsync(_options, cancellationToken);
            var server = await ReadServerStateAsync(cancellationToken);
            // One failed attempt is not a broken archive: PostgreSQL retries it. Refused only when
            // archiving is still failing after ArchiveFailureGrace, as during the backup itself.
            var failingSince = _time.GetUtcNow();
            while (server.Archiver.Failing && _time.GetUtcNow() - failingSince < ArchiveFailureGrace)
            {
                await Task.Delay(TimeSpan.FromSeconds(5), _time, cancellationToken);
                server = await ReadServerStateAsync(cancellationToken);
            }
            CheckServer(backupId, phase, server);
            var toolVersion = await PostgresTools.GetVersionAsync(_tools.PgBaseBackup, cancellationToken);
            if (PostgresTools.MajorVersion(toolVersion) < server.MajorVersion)
                throw new BackupFailedException(backupId, phase,
                    $"pg_basebackup {toolVersion} ({_tools.PgBaseBackup}) is older than the PostgreSQL server {server.Version}; install the server's tools or set Database:BinDirectory.");
            try
            {
                await ClusterRecord.ClaimOrCheckAsync(_store, new ClusterRecord(server.SystemIdentifier, server.Version, server.WalSegmentSize, Environment.MachineName, startedAt), cancellationToken);
            }
            catch (ForeignClusterException ex)
            {
                throw new BackupFailedException(backupId, phase, "refused: " + ex.Message);
            }

            written.Add(ContinuousLayout.InProgressKey(backupId));
            await _store.PutAsync(ContinuousLayout.InProgressKey(backupId), new MemoryStream(InProgressMarker.Create(startedAt).ToJson()), cancellationToken);

            phase = "base backup";
            progress.Phase(phase);
            (BackupManifest.Artifact, Label, WalRange) copied;
            using (var watchdog = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                var failing = WatchArchivingAsync(server.Archiver, watchdog);
                try
                {
                    copied = await BaseBackupAsync(backupId, written, progress, watchdog.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && failing.IsCompleted && failing.Result is { } why)
                {
                    throw new BackupFailedException(backupId, phase, why);
                }
                finally
                {
                    await watchdog.CancelAsync();
                    try { await failing; } catch (OperationCanceledException) { }
                }
            }
            var (baseArtifact, label, walRange) = copied;

            phase = "archive config";
            progress.Phase(phase);
            var config = await ArchiveConfigAsync(backupId, roots, written, progress, cancellationToken);

            phase = "write manifest";
            progress.Phase(phase);
            var manifest = new BaseBackupManifest
            {
                FormatVersion = BaseBackupManifest.CurrentFormatVersion,
                BackupId = backupId,
                StartedAt = startedAt,
                CompletedAt = _time.GetUtcNow(),
                Host = Environment.MachineName,
                RegistryDrVersion = BackupService.Version,
                Server = new BaseBackupManifest.ServerInfo
                {
                    ServerVersion = server.Version,
                    PgBaseBackupVersion = toolVersion,
                    SystemIdentifier = server.SystemIdentifier,
                    WalSegmentSize = server.WalSegmentSize,
                    Timeline = label.Timeline,
                    StartLsn = label.Start.ToString(),
                    EndLsn = walRange.End.ToString(),
                    EndTimeline = walRange.EndTimeline,
                    DataDirectory = server.DataDirectory,
                    Files = walRange.Files,
                },
                ConfigDirectories = roots.Select(r => new BackupManifest.ConfigDirectory { Path = r.Path, EntryPrefix = r.EntryPrefix }).ToList(),
                Artifacts = [baseArtifact, config],
            };
            // Checked again just before the set becomes complete: a node that lost its generation
            // while copying must not publish a set the next restore would start from.
            // The generation checked last is the one recorded: retention tells FENCED base backups by it.
            manifest = manifest with { Generation = await CheckFencingAsync(backupId, phase, cancellationToken) };
            cancellationToken.ThrowIfCancellationRequested();
            await _store.PutAsync(ContinuousLayout.ManifestKey(backupId), new MemoryStream(manifest.ToJson()), CancellationToken.None);
            await DeleteQuietlyAsync([ContinuousLayout.InProgressKey(backupId)]);
            LogCompleted(backupId, manifest.TotalSize, (manifest.CompletedAt - startedAt).TotalSeconds, label.Start.ToString(), walRange.End.ToString());
            _events.BackupSucceeded(ToEventManifest(manifest), _time.GetElapsedTime(started));
            return manifest;
        }
        catch (Exception ex)
        {
            await DeleteQuietlyAsync(written);
            if (ex is OperationCanceledException && cancellationToken.IsCancellationRequested)
            {
                LogCancelled(backupId, phase);
                _events.BackupFailed(backupId, BackupFailureReason.Cancelled, _time.GetElapsedTime(started));
                throw;
            }
            var failure = ex as BackupFailedException ?? new BackupFailedException(backupId, phase, ex.Message, ex);
            _events.BackupFailed(backupId, Classify(failure, phase), _time.GetElapsedTime(started));
            LogFailed(backupId, phase, failure.Reason);
            throw failure;
        }
    }

    private async Task<ServerState> ReadServerStateAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _postgres.OpenAsync(_options.Database.MaintenanceDatabase, cancellationToken);
        return await ServerState.ReadAsync(connection, cancellationToken);
    }

    private void CheckServer(string backupId, string phase, ServerState server)
    {
        var problems = server.ArchivingProblems(_options.Continuous.ArchiveTimeout).ToList();
        if (server.ExtraTablespaces > 0)
            problems.Add($"the server has {server.ExtraTablespaces} tablespace(s) besides pg_default and pg_global; a base backup streamed to the store holds one data directory only");
        var configured = Path.TrimEndingDirectorySeparator(Path.GetFullPath(_options.Continuous.DataDirectory!));
        if (!string.Equals(Path.TrimEndingDirectorySeparator(server.DataDirectory), configured, StringComparison.Ordinal))
            problems.Add($"Continuous:DataDirectory is {configured} but the server's data_directory is {server.DataDirectory}");
        if (server.Archiver.Failing)
            problems.Add($"WAL archiving is failing (still after {ArchiveFailureGrace.TotalSeconds:F0} s): {server.Archiver.LastFailedWal} failed at {server.Archiver.LastFailedTime:u} ({server.Archiver.FailedCount} failure(s) since the statistics were reset; " +
                         "the PostgreSQL log has registry-dr wal-push's reason), and a base backup waits for its WAL to be archived");
        if (problems.Count > 0)
            throw new BackupFailedException(backupId, phase, "the server is not ready for continuous protection: " + string.Join("; ", problems) + ".");
    }

    /// <summary>
    /// pg_basebackup waits, without limit, until the backup's last WAL segment is archived. When
    /// archiving fails meanwhile (every attempt since the backup started, for
    /// <see cref="ArchiveFailureGrace"/>), this stops it and says why, rather than wait out
    /// Continuous:BaseBackupTimeout. Returns the reason (after cancelling) or null when stopped.
    /// </summary>
    private async Task<string?> WatchArchivingAsync(ArchiverStats before, CancellationTokenSource stop)
    {
        DateTimeOffset? failingSince = null;
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromSeconds(5), _time, stop.Token);
                ArchiverStats now;
                try
                {
                    await using var connection = await _postgres.OpenAsync(_options.Database.MaintenanceDatabase, stop.Token);
                    now = await ArchiverStats.ReadAsync(connection, stop.Token);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    continue; // pg_basebackup itself reports a server that went away
                }
                if (now.FailedCount > before.FailedCount && now.Failing)
                {
                    failingSince ??= _time.GetUtcNow();
                    if (_time.GetUtcNow() - failingSince >= ArchiveFailureGrace)
                    {
                        await stop.CancelAsync();
                        return $"WAL archiving fails: {now.LastFailedWal} could not be archived ({now.FailedCount - before.FailedCount} failed attempt(s) since the backup started, the last at {now.LastFailedTime:u}); " +
                               "the PostgreSQL log has registry-dr wal-push's reason. pg_basebackup waits for its WAL to be archived, so the backup was stopped.";
                    }
                }
                else
                {
                    failingSince = null;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>How long archiving may keep failing during a base backup before the backup gives up (PostgreSQL retries a failed file after about a minute).</summary>
    internal static readonly TimeSpan ArchiveFailureGrace = TimeSpan.FromSeconds(90);

    private sealed record Label(Lsn Start, uint Timeline);
    private sealed record WalRange(Lsn End, uint EndTimeline, int Files);

    private async Task<(BackupManifest.Artifact, Label, WalRange)> BaseBackupAsync(string backupId, List<string> written, IOperationProgress progress, CancellationToken cancellationToken)
    {
        var key = ContinuousLayout.BaseKey(backupId);
        lock (written) written.Add(key);
        TarSniffer? sniffer = null;
        var spec = new ProcessSpec(_tools.PgBaseBackup,
        [
            "--pgdata=-", "--format=tar", "--wal-method=none", "--checkpoint=fast", "--no-password",
            "--label=registry-dr " + backupId,
        ])
        {
            Environment = _postgres.ToolEnvironment(_options.Database.MaintenanceDatabase),
            DisplayName = "pg_basebackup",
            Timeout = _options.Continuous.BaseBackupTimeout,
        };
        var result = await PipedUpload.PutAsync(_store, key, async (output, ct) =>
        {
            await ProcessRunner.RunCheckedAsync(spec, readStdout: async (stdout, innerCt) =>
            {
                sniffer = new TarSniffer(stdout, new HashSet<string>(StringComparer.Ordinal) { "backup_label", "backup_manifest" }, 256 << 20);
                await using var gzip = new GZipStream(output, new ZLibCompressionOptions { CompressionLevel = _options.Continuous.CompressionLevel }, leaveOpen: true);
                await sniffer.CopyToAsync(gzip, 1 << 20, innerCt);
            }, cancellationToken: ct);
            return 0;
        }, b => progress.Transferred(ContinuousLayout.BaseArtifact, b), cancellationToken);

        if (sniffer is null || !sniffer.Ended)
            throw new BackupFailedException(backupId, "base backup", "pg_basebackup's output ended before the end of its tar archive.");
        if (!sniffer.Captured.TryGetValue("backup_label", out var labelBytes))
            throw new BackupFailedException(backupId, "base backup", "pg_basebackup's tar has no backup_label.");
        if (!sniffer.Captured.TryGetValue("backup_manifest", out var manifestBytes))
            throw new BackupFailedException(backupId, "base backup", "pg_basebackup's tar has no backup_manifest (PostgreSQL 13 or later writes one unless --no-manifest).");
        var label = ParseLabel(backupId, Encoding.UTF8.GetString(labelBytes));
        var range = ParseWalRange(backupId, manifestBytes);
        if (range.End < label.Start)
            throw new BackupFailedException(backupId, "base backup", $"backup_manifest ends at {range.End}, before backup_label's start {label.Start}.");
        return (new BackupManifest.Artifact { Name = ContinuousLayout.BaseArtifact, Key = key, Size = result.Size, Sha256 = result.Sha256 }, label, range);
    }

    private static Label ParseLabel(string backupId, string text)
    {
        Lsn? start = null;
        uint? timeline = null;
        foreach (var line in text.Split('\n'))
        {
            // "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)" and "START TIMELINE: 1" (xlogbackup / do_pg_backup_start).
            if (line.StartsWith("START WAL LOCATION: ", StringComparison.Ordinal) && Lsn.TryParse(line["START WAL LOCATION: ".Length..].Split(' ')[0], out var lsn)) start = lsn;
            if (line.StartsWith("START TIMELINE: ", StringComparison.Ordinal) && uint.TryParse(line["START TIMELINE: ".Length..].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var tli)) timeline = tli;
        }
        if (start is null || timeline is null or 0)
            throw new BackupFailedException(backupId, "base backup", "pg_basebackup's backup_label has no START WAL LOCATION or START TIMELINE.");
        return new Label(start.Value, timeline.Value);
    }

    /// <summary>The end of the backup's WAL from backup_manifest's "WAL-Ranges" (PostgreSQL's backup manifest format, version 1).</summary>
    private static WalRange ParseWalRange(string backupId, byte[] manifest)
    {
        try
        {
            using var doc = JsonDocument.Parse(manifest);
            var ranges = doc.RootElement.GetProperty("WAL-Ranges");
            var files = doc.RootElement.GetProperty("Files").GetArrayLength();
            Lsn? end = null;
            uint endTimeline = 0;
            foreach (var r in ranges.EnumerateArray())
            {
                var e = Lsn.Parse(r.GetProperty("End-LSN").GetString()!);
                if (end is null || e > end) { end = e; endTimeline = r.GetProperty("Timeline").GetUInt32(); }
            }
            if (end is null) throw new FormatException("no WAL-Ranges");
            return new WalRange(end.Value, endTimeline, files);
        }
        catch (Exception ex) when (ex is JsonException or FormatException or KeyNotFoundException or InvalidOperationException)
        {
            throw new BackupFailedException(backupId, "base backup", $"pg_basebackup's backup_manifest cannot be read: {ex.Message}");
        }
    }

    private async Task<BackupManifest.Artifact> ArchiveConfigAsync(string backupId, IReadOnlyList<ArchiveRoot> roots, List<string> written, IOperationProgress progress, CancellationToken cancellationToken)
    {
        var key = ContinuousLayout.ConfigKey(backupId);
        lock (written) written.Add(key);
        var result = await PipedUpload.PutAsync(_store, key,
            (output, ct) => ConfigArchiveWriter.WriteAsync(roots, _options.Config.Exclude, output, warning => LogArchiveWarning(backupId, warning), ct),
            b => progress.Transferred(ContinuousLayout.ConfigArtifact, b), cancellationToken);
        return new BackupManifest.Artifact { Name = ContinuousLayout.ConfigArtifact, Key = key, Size = result.Size, Sha256 = result.Sha256 };
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
    /// The base set in the shape the monitoring sinks take (<see cref="IOperationEvents.BackupSucceeded"/>):
    /// its id, start, host and artifacts, with the base backup reported as the "database" artifact.
    /// </summary>
    public static BackupManifest ToEventManifest(BaseBackupManifest m) => new()
    {
        FormatVersion = BackupManifest.CurrentFormatVersion,
        BackupId = m.BackupId,
        StartedAt = m.StartedAt,
        CompletedAt = m.CompletedAt,
        Host = m.Host,
        RegistryDrVersion = m.RegistryDrVersion,
        Postgres = new BackupManifest.PostgresInfo
        {
            ServerVersion = m.Server.ServerVersion,
            PgDumpVersion = m.Server.PgBaseBackupVersion,
            Database = "",
            Owner = "",
            Encoding = "",
            Collate = "",
            Ctype = "",
            DumpFormat = "basebackup",
        },
        ConfigDirectories = m.ConfigDirectories,
        Artifacts = m.Artifacts.Select(a => a.Name == ContinuousLayout.BaseArtifact ? a with { Name = BackupLayout.DatabaseArtifact } : a).ToList(),
    };

    private static BackupFailureReason Classify(BackupFailedException failure, string phase) => failure.InnerException switch
    {
        _ when failure.Reason.StartsWith("refused:", StringComparison.Ordinal) => BackupFailureReason.Refused,
        DatabaseUnavailableException or Npgsql.NpgsqlException => BackupFailureReason.Database,
        StoreUnavailableException or Amazon.Runtime.AmazonClientException or Amazon.Runtime.AmazonServiceException => BackupFailureReason.Store,
        ProcessFailedException => BackupFailureReason.Dump,
        _ when phase == "archive config" => BackupFailureReason.Config,
        _ when phase == "base backup" => BackupFailureReason.Dump,
        _ when phase == "preflight" && failure.InnerException is null => BackupFailureReason.Config,
        _ => BackupFailureReason.Other,
    };

    private async Task DeleteQuietlyAsync(IEnumerable<string> keys)
    {
        foreach (var key in keys)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await _store.DeleteAsync(key, cts.Token);
            }
            catch (Exception ex)
            {
                LogCleanupFailed(ex, key);
            }
        }
    }

    [LoggerMessage(9110, LogLevel.Information, "Base backup {BackupId} starting to {Store}")]
    private partial void LogStarting(string backupId, string store);

    [LoggerMessage(9111, LogLevel.Information, "Base backup {BackupId} complete: {Bytes} bytes in {Seconds:F1} s, WAL {Start} to {End}")]
    private partial void LogCompleted(string backupId, long bytes, double seconds, string start, string end);

    [LoggerMessage(9112, LogLevel.Error, "Base backup {BackupId} failed during {Phase}: {Reason}")]
    private partial void LogFailed(string backupId, string phase, string reason);

    [LoggerMessage(9113, LogLevel.Warning, "Base backup {BackupId} cancelled during {Phase}; its partial set was removed")]
    private partial void LogCancelled(string backupId, string phase);

    [LoggerMessage(9114, LogLevel.Warning, "Base backup {BackupId}: {Warning}")]
    private partial void LogArchiveWarning(string backupId, string warning);

    [LoggerMessage(9115, LogLevel.Critical, "Base backup {BackupId} refused by fencing: {Reason}")]
    private partial void LogFenced(string backupId, string reason);

    [LoggerMessage(9116, LogLevel.Warning, "Could not delete {Key} of a failed base backup; retention removes it")]
    private partial void LogCleanupFailed(Exception ex, string key);
}
