using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Quartz;
using RegistryDR.Backup;

namespace RegistryDR.Worker;

/// <summary>
/// One scheduled backup. Quartz never runs two of these at once in the process
/// (<see cref="DisallowConcurrentExecutionAttribute"/>); a fire that comes due while one is
/// running waits, and the cron trigger's FireAndProceed misfire policy collapses any number
/// of missed fires into a single catch-up run rather than a burst.
/// </summary>
[DisallowConcurrentExecution]
public sealed partial class BackupJob(BackupService backups, Retention.Pruner pruner, RegistryDR.Configuration.RegistryDrOptions options, IHostApplicationLifetime lifetime,
    NodeRetirement retirement, ILogger<BackupJob> logger) : IJob
{
    public static readonly JobKey Key = new("backup", "registry-dr");

    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken)
    {
        // Stop promptly on SIGTERM: a cancelled backup removes its partial set and writes no manifest.
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, context.CancellationToken, lifetime.ApplicationStopping);
        if (retirement.IsRetiring)
        {
            LogRetired();
            return;
        }
        try
        {
            await retirement.BackupGate.WaitAsync(linked.Token);
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
            LogCancelled();
            return;
        }
        try
        {
            // Termination may have been noticed while this fire waited for the gate (held by the final backup).
            if (retirement.IsRetiring)
            {
                LogRetired();
                return;
            }
            await RunAndPruneAsync(context, linked);
        }
        finally
        {
            retirement.BackupGate.Release();
        }
    }

    private async Task RunAndPruneAsync(IJobExecutionContext context, CancellationTokenSource linked)
    {
        try
        {
            var manifest = await backups.RunAsync(cancellationToken: linked.Token);
            context.Result = manifest.BackupId;
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
            LogCancelled();
            return;
        }
        catch (Exception ex)
        {
            // Logged with its reason by BackupService; the job itself must not throw, or Quartz
            // would treat the trigger as broken. The next fire tries again. Never prune after a
            // failure: the sets that exist are all there is.
            LogWillRetry(ex.GetType().Name, context.NextFireTimeUtc);
            return;
        }
        if (!options.Retention.PruneAfterBackup) return;
        try
        {
            await pruner.PruneAsync(dryRun: false, linked.Token);
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
            LogCancelled();
        }
        catch (Exception ex)
        {
            // The pruner logged each set it could not delete; they are tried again after the next backup.
            LogPruneFailed(ex.Message);
        }
    }

    [LoggerMessage(3003, LogLevel.Information, "Scheduled backup skipped: Auto Scaling is terminating this node and its final backup is (or was) taken")]
    private partial void LogRetired();

    [LoggerMessage(3000, LogLevel.Warning, "Scheduled backup cancelled because the worker is stopping")]
    private partial void LogCancelled();

    [LoggerMessage(3002, LogLevel.Warning, "Pruning after the backup failed: {Reason}")]
    private partial void LogPruneFailed(string reason);

    [LoggerMessage(3001, LogLevel.Warning, "Scheduled backup failed ({Error}); the next attempt is at {NextFire:u}")]
    private partial void LogWillRetry(string error, DateTimeOffset? nextFire);
}
