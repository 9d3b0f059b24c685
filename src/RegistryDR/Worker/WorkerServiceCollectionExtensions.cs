using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Quartz;
using RegistryDR.Monitoring;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Continuous;
using RegistryDR.Stores;

namespace RegistryDR.Worker;

public static class WorkerServiceCollectionExtensions
{
    /// <summary>
    /// Registers the scheduled backup: the store, <see cref="BackupService"/>, Quartz with one
    /// cron trigger, and the catch-up check. <paramref name="options"/> must already be validated.
    /// </summary>
    public static IServiceCollection AddRegistryDrWorker(this IServiceCollection services, RegistryDrOptions options, IBackupStore? store = null)
    {
        services.AddSingleton(options);
        // Monitoring (AddRegistryDrMonitoring, called first) replaces this; without it events go nowhere.
        services.TryAddSingleton<IOperationEvents>(NullOperationEvents.Instance);
        services.AddSingleton(TimeProvider.System);
        if (store is not null) services.AddSingleton(store);
        else services.AddSingleton(sp => BackupStoreFactory.Open(options.Store, null,
            sp.GetService<IOperationEvents>(), sp.GetService<Microsoft.Extensions.Logging.ILoggerFactory>()?.CreateLogger("RegistryDR.Stores"), sp.GetService<TimeProvider>()));
        services.AddHostedService<ScheduleAnnouncement>();
        services.AddSingleton<BackupService>();
        services.AddSingleton<NodeRetirement>();
        // The termination watch (final backup before Auto Scaling terminates the node). Tests
        // register their own metadata and AWS clients before calling this.
        services.TryAddSingleton<RegistryDR.Aws.IInstanceMetadata>(_ => new RegistryDR.Aws.InstanceMetadataClient(options.Agent.MetadataEndpoint));
        services.TryAddSingleton<Func<string, RegistryDR.Aws.IAwsControlPlane>>(_ => region =>
            RegistryDR.Aws.AwsQueryControlPlane.FromDefaultCredentials(region, options.Agent.AutoScalingEndpoint, options.Agent.CloudFormationEndpoint));
        services.AddSingleton<AbandonedSetCleaner>();
        services.AddSingleton<RegistryDR.Restore.DrillService>();
        services.AddSingleton(options.Retention);
        services.AddSingleton<Retention.Pruner>();
        services.AddQuartz(q =>
        {
            q.UseInMemoryStore();
            q.AddTriggerListener<MisfireListener>([]);
            q.AddJob<BackupJob>(j => j.WithIdentity(BackupJob.Key).StoreDurably().WithDescription("Back up the registry's database and config"));
            q.AddTrigger(t => t
                .ForJob(BackupJob.Key)
                .WithIdentity("backup-schedule", "registry-dr")
                .WithCronSchedule(options.Schedule.Cron, c => c.InTimeZone(TimeZoneInfo.Utc).WithMisfireInstruction(CronTriggerMisfireInstruction.FireAndProceed)));
            // The watch fires with every backup fire but is never held back by a running backup,
            // so a run that hangs is reported at the next fire (BackupWatchJob).
            q.AddJob<BackupWatchJob>(j => j.WithIdentity(BackupWatchJob.Key).StoreDurably().WithDescription("Report a backup that is still running when the next one is due"));
            q.AddTrigger(t => t
                .ForJob(BackupWatchJob.Key)
                .WithIdentity("backup-watch-schedule", "registry-dr")
                .WithCronSchedule(options.Schedule.Cron, c => c.InTimeZone(TimeZoneInfo.Utc).WithMisfireInstruction(CronTriggerMisfireInstruction.DoNothing)));
            if (!string.IsNullOrEmpty(options.Schedule.DrillCron))
            {
                q.AddJob<DrillJob>(j => j.WithIdentity(DrillJob.Key).StoreDurably().WithDescription("Rehearse a restore of the newest backup"));
                // A missed drill is simply skipped: the next day's drill proves the same thing.
                q.AddTrigger(t => t
                    .ForJob(DrillJob.Key)
                    .WithIdentity("drill-schedule", "registry-dr")
                    .WithCronSchedule(options.Schedule.DrillCron, c => c.InTimeZone(TimeZoneInfo.Utc).WithMisfireInstruction(CronTriggerMisfireInstruction.DoNothing)));
            }
        });
        // On SIGTERM the running backup is cancelled at once (BackupJob links the host's stopping
        // token); waiting for the job then only waits for it to delete its partial set, so the
        // process never exits half-way through that clean-up.
        services.AddQuartzHostedService(o => o.WaitForJobsToComplete = true);
        services.AddHostedService<CatchUpService>();
        if (!string.IsNullOrEmpty(options.Agent.TerminationHookName)) services.AddHostedService<RegistryDR.Agent.TerminationWatcher>();
        services.AddContinuousProtection(options);
        return services;
    }
}
