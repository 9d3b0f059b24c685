using Microsoft.Extensions.Logging;
using Quartz;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;

namespace RegistryDR.Worker;

/// <summary>
/// Fires on the backup schedule, next to <see cref="BackupJob"/> but independent of it. Quartz
/// holds a backup fire back while the previous backup still runs (one at a time), and reports
/// that as a misfire only once the run ends, so a run that never ends would never be reported.
/// This job does not wait for it: at every fire it finds a backup that started before the fire
/// still running, and says so (which set, which phase, for how long) in the log and in
/// <c>registrydr_backup_overruns_total</c> / <c>registrydr_backup_running_seconds</c>.
/// </summary>
/// <remarks>
/// It does not cancel anything itself: the backup has its own deadline, <c>Backup:Timeout</c>,
/// which cancels it like a SIGTERM. A run still going well after that deadline ignored its
/// cancellation, and only restarting the worker ends it; this job says so, critically.
/// </remarks>
public sealed partial class BackupWatchJob(BackupService backups, RegistryDrOptions options, IOperationEvents events, TimeProvider time, ILogger<BackupWatchJob> logger) : IJob
{
    public static readonly JobKey Key = new("backup-watch", "registry-dr");

    /// <summary>How long past <c>Backup:Timeout</c> a run may take to wind down (delete its partial set) before it counts as stuck.</summary>
    internal static readonly TimeSpan WindDown = TimeSpan.FromMinutes(5);

    public ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken)
    {
        // A run that started for this very fire is on time; only one from before it overstays.
        if (backups.Running is not { } run || run.StartedAt >= context.ScheduledFireTimeUtc) return ValueTask.CompletedTask;
        var running = time.GetUtcNow() - run.StartedAt;
        var phase = run.Phase;
        events.BackupOverran(run.BackupId, phase, running);
        if (running > options.Backup.Timeout + WindDown)
            LogStuck(run.BackupId, running.TotalMinutes, phase, run.StartedAt, options.Backup.Timeout);
        else
            LogOverran(run.BackupId, running.TotalMinutes, phase, run.StartedAt, options.Backup.Timeout);
        return ValueTask.CompletedTask;
    }

    [LoggerMessage(8000, LogLevel.Warning, "A scheduled backup is due but backup {BackupId} is still running: {Minutes:F1} minutes, now in phase '{Phase}' (started {StartedAt:u}); this fire waits for it. Backup:Timeout ({Timeout}) stops it if it goes on")]
    private partial void LogOverran(string backupId, double minutes, string phase, DateTimeOffset startedAt, TimeSpan timeout);

    [LoggerMessage(8001, LogLevel.Critical, "Backup {BackupId} is STUCK: running {Minutes:F1} minutes, in phase '{Phase}' (started {StartedAt:u}), and did not stop when its Backup:Timeout ({Timeout}) passed. No backup can run until it ends: restart the worker (systemctl restart registry-dr)")]
    private partial void LogStuck(string backupId, double minutes, string phase, DateTimeOffset startedAt, TimeSpan timeout);
}
