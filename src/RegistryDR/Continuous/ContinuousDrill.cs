using Microsoft.Extensions.Logging;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Progress;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Continuous;

/// <summary>
/// <c>drill</c> in continuous mode: everything a restore to "latest" does before it touches the
/// node — base backup streamed and checked, pg_verifybackup, WAL downloaded and checked, replayed
/// by PostgreSQL in a rehearsal server until it promotes — then the registry's database is counted
/// and everything is removed. The live server, its data directory and the config directories are
/// never touched. A passed drill marks the base backup verified.
/// </summary>
public sealed partial class ContinuousDrill(RegistryDrOptions options, IBackupStore store, ILogger logger, TimeProvider time, IOperationEvents? events = null)
{
    private readonly IOperationEvents _events = events ?? NullOperationEvents.Instance;

    public async Task<DrillReport> RunAsync(string? backupIdOrLatest, IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        progress ??= NullProgress.Instance;
        var started = time.GetTimestamp();
        var baseId = string.IsNullOrEmpty(backupIdOrLatest) || backupIdOrLatest == "latest" ? null : backupIdOrLatest;
        var label = baseId ?? "latest";
        var restore = new ContinuousRestoreService(options, store, logger, time);
        try
        {
            var (plan, staging) = await restore.StageAsync(new PointInTimeRequest(RecoveryTarget.Latest, baseId, TakeGeneration: false), progress, null, cancellationToken);
            label = plan.Base.BackupId;
            await using (staging)
            {
                progress.Phase("replay");
                Postgres.DatabaseFingerprint? counted = null;
                var recovered = await restore.RehearseAsync(plan, staging, async connection =>
                {
                    await connection.ChangeDatabaseAsync(options.Database.Name, cancellationToken);
                    counted = await Postgres.DatabaseFingerprint.CountAsync(connection, null, cancellationToken);
                }, cancellationToken);
                await ContinuousVerifier.WriteVerifiedAsync(store, plan.Base.BackupId, "drill", time, cancellationToken);
                var elapsed = time.GetElapsedTime(started);
                LogPassed(plan.Base.BackupId, plan.Segments.Count, counted!.RowCounts.Count, counted.TotalRows, recovered.LastTransactionAt?.ToString("u") ?? "none", elapsed.TotalSeconds);
                _events.DrillFinished(plan.Base.BackupId, true, elapsed);
                return new DrillReport(plan.Base.BackupId, true, elapsed, counted.RowCounts.Count, counted.TotalRows, 0, null);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            var elapsed = time.GetElapsedTime(started);
            LogFailed(ex, label, ex.Message);
            _events.DrillFinished(label, false, elapsed);
            return new DrillReport(label, false, elapsed, 0, 0, 0, ex.Message) { SetIsBad = ex is ArtifactCorruptException or CorruptWalException };
        }
    }

    [LoggerMessage(9140, LogLevel.Information, "Drill of base backup {BackupId} passed: {Segments} WAL segment(s) replayed, {Tables} tables and {Rows} rows in the recovered database, newest transaction {LastTransaction}, in {Seconds:F1} s")]
    private partial void LogPassed(string backupId, int segments, int tables, long rows, string lastTransaction, double seconds);

    [LoggerMessage(9141, LogLevel.Error, "Drill of base backup {BackupId} FAILED: {Reason}")]
    private partial void LogFailed(Exception ex, string backupId, string reason);
}
