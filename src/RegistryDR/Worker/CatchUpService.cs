using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Quartz;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Stores;

namespace RegistryDR.Worker;

/// <summary>
/// The scheduler keeps its triggers in memory, so after the worker was down it has no record
/// of the fires it missed. The store does: if the newest complete set is older than one
/// schedule interval (or there is none), fire one backup now. One, not one per missed fire.
/// </summary>
internal sealed partial class CatchUpService(
    ISchedulerFactory schedulers, IBackupStore store, RegistryDrOptions options, TimeProvider time, ILogger<CatchUpService> logger,
    AbandonedSetCleaner cleaner, RegistryDR.Monitoring.IOperationEvents events) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await cleaner.CleanAsync(stoppingToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogCleanupFailed(ex);
        }
        try
        {
            // A restore or drill killed part-way: rolled back or finished, its staging removed.
            await RegistryDR.Restore.InterruptedRestore.TidyAsync(options, logger, time, stoppingToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogTidyFailed(ex, ex.Message);
        }
        if (!options.Schedule.CatchUpOnStart) return;
        try
        {
            var now = time.GetUtcNow();
            var interval = ScheduleInterval.Of(options.Schedule.Cron, now);
            // Only a restorable set counts as protection (RestorableSets), as in `status`.
            var newest = options.Database.Mode == Continuous.DatabaseMode.Continuous
                ? (await new Continuous.ContinuousCatalog(store).ListBaseBackupsAsync(stoppingToken)).FirstOrDefault(s => s.IsComplete)
                : (await new RestorableSets(store).SelectNewestAsync(stoppingToken)).Newest?.Set;
            if (newest is not null && now - newest.Time < interval) return;
            LogCatchingUp(newest?.BackupId ?? "none", interval);
            if (newest is not null) events.ScheduleMissed(); // fires were missed while the worker was down
            var scheduler = await schedulers.GetScheduler(stoppingToken);
            await scheduler.TriggerJob(BackupJob.Key, new JobDataMap(), stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            LogCatchUpFailed(ex);
        }
    }

    [LoggerMessage(3100, LogLevel.Information, "Newest complete backup is {BackupId}, older than one interval ({Interval}); running one catch-up backup now")]
    private partial void LogCatchingUp(string backupId, TimeSpan interval);

    [LoggerMessage(3102, LogLevel.Warning, "Could not check the store for partial sets left by a killed backup; retention will remove them")]
    private partial void LogCleanupFailed(Exception ex);

    [LoggerMessage(8040, LogLevel.Error, "Could not check this node for an interrupted restore or the leftovers of killed restores and drills: {Reason}; `registry-dr status` shows them")]
    private partial void LogTidyFailed(Exception ex, string reason);

    [LoggerMessage(3101, LogLevel.Warning, "Could not check the store for a catch-up backup; the schedule continues")]
    private partial void LogCatchUpFailed(Exception ex);
}
