using Microsoft.Extensions.Logging;
using RegistryDR.Archive;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Postgres;
using RegistryDR.Processes;
using RegistryDR.Progress;
using RegistryDR.Stores;

namespace RegistryDR.Restore;

public sealed record DrillReport(
    string BackupId,
    bool Succeeded,
    TimeSpan Elapsed,
    int Tables,
    long Rows,
    long ConfigFiles,
    string? Failure)
{
    /// <summary>
    /// The failure is a verdict on the set (an artifact whose bytes are wrong, row counts that
    /// differ), not a drill that could not run (PostgreSQL or the store unreachable, no space):
    /// exit 4 against exit 1, so an alert on 4 means a bad backup.
    /// </summary>
    public bool SetIsBad { get; init; }
}

/// <summary>
/// A rehearsed restore: the newest (or a named) set is downloaded and checked, its config
/// extracted into a scratch directory and its database loaded into a scratch database, the row
/// counts compared with the fingerprint; then everything is removed. The live registry, its
/// database and its directories are never touched, so this can run on the production node.
/// </summary>
public sealed partial class DrillService
{
    private readonly RegistryDrOptions _options;
    private readonly IBackupStore _store;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly IOperationEvents _events;
    private readonly RestoreService _restore;
    private readonly PostgresConnectionFactory _postgres;
    private readonly PostgresTools _tools;

    public DrillService(RegistryDrOptions options, IBackupStore store, ILoggerFactory loggers, TimeProvider time, IOperationEvents? events = null)
    {
        _options = options;
        _store = store;
        _logger = loggers.CreateLogger<DrillService>();
        _time = time;
        _events = events ?? NullOperationEvents.Instance;
        _restore = new RestoreService(options, store, loggers.CreateLogger<RestoreService>(), time);
        _postgres = new PostgresConnectionFactory(options.Database, _logger);
        _tools = new PostgresTools(options.Database);
    }

    /// <summary>The scratch database; distinct from restore's so a drill never collides with a real restore.</summary>
    internal string DrillDatabase => DrillDatabaseFor(_options.Database.Name);

    internal static string DrillDatabaseFor(string database) => (database.Length > 48 ? database[..48] : database) + "_rdr_drill";

    public async Task<DrillReport> RunAsync(string? backupIdOrLatest = "latest", IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        if (_options.Database.Mode == Continuous.DatabaseMode.Continuous)
            return await new Continuous.ContinuousDrill(_options, _store, _logger, _time, _events).RunAsync(backupIdOrLatest, progress, cancellationToken);
        progress ??= NullProgress.Instance;
        var started = _time.GetTimestamp();
        var catalog = new BackupCatalog(_store);
        var (id, selection) = await catalog.ResolveWithSkippedAsync(backupIdOrLatest, cancellationToken);
        using var scope = _logger.BeginScope("drill {BackupId}", id);
        if (selection?.SkippedSentence is { } skipped) LogPassedOver(id, skipped);
        var staging = Path.Combine(_restore.StagingRoot, $"{RestoreLeftovers.DrillStagingPrefix}{id}-{Guid.NewGuid():N}"[..46]);
        FileStream? stagingLock = null;
        try
        {
            var manifest = await catalog.ReadManifestAsync(id, cancellationToken);
            // What a killed drill left (its staging, with the roles' hashes and the config's keys) goes first.
            RestoreLeftovers.RemoveUnowned(_restore.StagingRoot, RestoreLeftovers.DrillStagingPrefix, _logger);
            SpaceCheck.CheckStaging(_restore.StagingRoot, manifest, RestoreService.StagedArtifacts(manifest));
            // Private from creation (0700): the drill stages the same secrets a restore does.
            stagingLock = RestoreLeftovers.CreateOwnedDirectory(staging);
            progress.Phase("download and verify");
            var files = new Dictionary<string, string>();
            foreach (var artifact in RestoreService.StagedArtifacts(manifest))
                files[artifact.Name] = await _restore.DownloadAsync(manifest, artifact, staging, progress, cancellationToken);
            await _restore.CheckDumpReadableAsync(id, files[BackupLayout.DatabaseArtifact], cancellationToken);

            progress.Phase("extract config");
            var roots = manifest.ConfigDirectories.Select(d => new ArchiveRoot(d.Path, d.EntryPrefix)).ToList();
            var targets = new Dictionary<string, string>(StringComparer.Ordinal);
            for (var i = 0; i < roots.Count; i++)
            {
                var target = Path.Combine(staging, "config", i.ToString(System.Globalization.CultureInfo.InvariantCulture));
                Directory.CreateDirectory(target);
                targets[roots[i].EntryPrefix] = target;
            }
            ArchiveStats stats;
            await using (var archive = File.OpenRead(files[BackupLayout.ConfigArtifact]))
                stats = await ConfigArchiveReader.ExtractAsync(archive, roots, targets, restoreOwnership: Environment.IsPrivilegedProcess, cancellationToken);
            foreach (var omission in stats.NotKept) LogConfigNotKept(id, omission.Describe());

            progress.Phase("load scratch database");
            var properties = await LoadScratchAsync(manifest, files[BackupLayout.DatabaseArtifact], progress, cancellationToken);
            await _restore.CheckFingerprintAsync(manifest, DrillDatabase, cancellationToken);
            // The database's own properties must apply and read back as recorded, as in a restore.
            if (properties is not null) await RestoredDatabase.GivePropertiesAsync(_postgres, DrillDatabase, properties, cancellationToken);
            var rows = manifest.Fingerprint?.RowCounts.Values.Sum() ?? 0;
            var tables = manifest.Fingerprint?.RowCounts.Count ?? 0;

            // A passed drill is the strongest proof a set restores; retention keeps the newest such set.
            await Retention.VerificationRecord.WriteAsync(_store, id, "drill", _time, cancellationToken);
            var elapsed = _time.GetElapsedTime(started);
            LogPassed(id, tables, rows, stats.Files, elapsed.TotalSeconds);
            _events.DrillFinished(id, true, elapsed);
            return new DrillReport(id, true, elapsed, tables, rows, stats.Files, null);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            var elapsed = _time.GetElapsedTime(started);
            LogFailed(ex, id, ex.Message);
            if (ex is ArtifactCorruptException) await CorruptionRecord.TryWriteAsync(_store, id, "drill", ex.Message, _time, _logger, CancellationToken.None);
            _events.DrillFinished(id, false, elapsed);
            return new DrillReport(id, false, elapsed, 0, 0, 0, ex.Message) { SetIsBad = ex is ArtifactCorruptException or StoreObjectNotFoundException };
        }
        finally
        {
            try { await _restore.DropDatabaseAsync(DrillDatabase, CancellationToken.None); }
            catch (Exception ex) { LogCleanupFailed(ex, DrillDatabase); }
            stagingLock?.Dispose();
            try { Archive.Internal.UnixFileSystem.DeleteTree(staging); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { LogCleanupFailed(ex, staging); }
        }
    }

    /// <summary>
    /// Loads the dump without owners or grants: a drill proves the data comes back, and must not
    /// depend on (or add) the roles of the server it happens to run on. Of the database's own
    /// properties it returns those this server can take (what names a role or a tablespace it
    /// does not have is left out, and listed in one warning).
    /// </summary>
    private async Task<DatabaseProperties?> LoadScratchAsync(BackupManifest manifest, string dumpPath, IOperationProgress progress, CancellationToken cancellationToken)
    {
        await _restore.DropDatabaseAsync(DrillDatabase, cancellationToken);
        var pg = manifest.Postgres;
        var (ownerExists, roles, tablespaceExists) = await RestoredDatabase.WhatExistsAsync(_postgres, _options.Database.MaintenanceDatabase, pg.Owner, pg.Properties?.Tablespace, cancellationToken);
        await RestoredDatabase.CreateAsync(_postgres, _options.Database.MaintenanceDatabase, DrillDatabase, pg, ownerExists, tablespaceExists, cancellationToken);
        await _restore.Loader().LoadAsync(manifest, dumpPath, DrillDatabase, ["--no-owner", "--no-acl"], progress, cancellationToken);
        if (pg.Properties is null) return null;
        var (kept, leftOut) = pg.Properties.WithoutMissingRoles(roles.Contains);
        var notChecked = leftOut.ToList();
        if (!ownerExists) notChecked.Add($"the owner {pg.Owner} (no such role on this server)");
        if (!tablespaceExists)
        {
            notChecked.Add($"the tablespace {pg.Properties.Tablespace} (no such tablespace on this server)");
            kept = kept with { Tablespace = null };
        }
        if (notChecked.Count > 0) LogPropertiesNotChecked(manifest.BackupId, string.Join("; ", notChecked));
        return kept;
    }

    [LoggerMessage(5130, LogLevel.Warning, "Drill of backup {BackupId}: these database properties were not checked, because this server lacks what they name: {What}")]
    private partial void LogPropertiesNotChecked(string backupId, string what);

    [LoggerMessage(5100, LogLevel.Information, "Drill of backup {BackupId} passed: {Tables} tables and {Rows} rows match the fingerprint, {Files} config files extracted, in {Seconds:F1} s")]
    private partial void LogPassed(string backupId, int tables, long rows, long files, double seconds);

    [LoggerMessage(5101, LogLevel.Error, "Drill of backup {BackupId} FAILED: {Reason}")]
    private partial void LogFailed(Exception ex, string backupId, string reason);

    [LoggerMessage(5150, LogLevel.Warning, "Drill of backup {BackupId}: the extracted config could not keep {NotKept}")]
    private partial void LogConfigNotKept(string backupId, string notKept);

    [LoggerMessage(8011, LogLevel.Warning, "Drilling backup {BackupId}, the newest restorable set: {Skipped}")]
    private partial void LogPassedOver(string backupId, string skipped);

    [LoggerMessage(5102, LogLevel.Warning, "Drill could not clean up {What}")]
    private partial void LogCleanupFailed(Exception ex, string what);
}
