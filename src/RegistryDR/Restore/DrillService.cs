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
    string? Failure);

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
    internal string DrillDatabase => (_options.Database.Name.Length > 48 ? _options.Database.Name[..48] : _options.Database.Name) + "_rdr_drill";

    public async Task<DrillReport> RunAsync(string? backupIdOrLatest = "latest", IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        if (_options.Database.Mode == Continuous.DatabaseMode.Continuous)
            return await new Continuous.ContinuousDrill(_options, _store, _logger, _time, _events).RunAsync(backupIdOrLatest, progress, cancellationToken);
        progress ??= NullProgress.Instance;
        var started = _time.GetTimestamp();
        var catalog = new BackupCatalog(_store);
        var id = await catalog.ResolveAsync(backupIdOrLatest, cancellationToken);
        using var scope = _logger.BeginScope("drill {BackupId}", id);
        var staging = Path.Combine(_restore.StagingRoot, $"registry-dr-drill-{id}-{Guid.NewGuid():N}"[..46]);
        try
        {
            var manifest = await catalog.ReadManifestAsync(id, cancellationToken);
            Directory.CreateDirectory(staging);
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

            progress.Phase("load scratch database");
            await LoadScratchAsync(manifest, files[BackupLayout.DatabaseArtifact], progress, cancellationToken);
            await _restore.CheckFingerprintAsync(manifest, DrillDatabase, cancellationToken);
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
            _events.DrillFinished(id, false, elapsed);
            return new DrillReport(id, false, elapsed, 0, 0, 0, ex.Message);
        }
        finally
        {
            try { await _restore.DropDatabaseAsync(DrillDatabase, CancellationToken.None); }
            catch (Exception ex) { LogCleanupFailed(ex, DrillDatabase); }
            try { if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { LogCleanupFailed(ex, staging); }
        }
    }

    /// <summary>
    /// Loads the dump without owners or grants: a drill proves the data comes back, and must not
    /// depend on (or add) the roles of the server it happens to run on.
    /// </summary>
    private async Task LoadScratchAsync(BackupManifest manifest, string dumpPath, IOperationProgress progress, CancellationToken cancellationToken)
    {
        await _restore.DropDatabaseAsync(DrillDatabase, cancellationToken);
        var pg = manifest.Postgres;
        await using (var connection = await _postgres.OpenAsync(_options.Database.MaintenanceDatabase, cancellationToken))
        await using (var create = connection.CreateCommand())
        {
            create.CommandText = $"CREATE DATABASE {RestoreService.Quote(DrillDatabase)} TEMPLATE = template0 ENCODING = {RestoreService.Literal(pg.Encoding)} LC_COLLATE = {RestoreService.Literal(pg.Collate)} LC_CTYPE = {RestoreService.Literal(pg.Ctype)}";
            await create.ExecuteNonQueryAsync(cancellationToken);
        }
        await _restore.Loader().LoadAsync(manifest, dumpPath, DrillDatabase, ["--no-owner", "--no-acl"], progress, cancellationToken);
    }

    [LoggerMessage(5100, LogLevel.Information, "Drill of backup {BackupId} passed: {Tables} tables and {Rows} rows match the fingerprint, {Files} config files extracted, in {Seconds:F1} s")]
    private partial void LogPassed(string backupId, int tables, long rows, long files, double seconds);

    [LoggerMessage(5101, LogLevel.Error, "Drill of backup {BackupId} FAILED: {Reason}")]
    private partial void LogFailed(Exception ex, string backupId, string reason);

    [LoggerMessage(5102, LogLevel.Warning, "Drill could not clean up {What}")]
    private partial void LogCleanupFailed(Exception ex, string what);
}
