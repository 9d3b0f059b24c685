using Quartz;
using RegistryDR.Monitoring;

namespace RegistryDR.Worker;

/// <summary>Counts the backup fires that came due while the previous backup still ran (collapsed into one catch-up by the misfire policy).</summary>
internal sealed class MisfireListener(IOperationEvents events) : ITriggerListener
{
    public string Name => "registry-dr-misfires";

    public ValueTask TriggerMisfired(ITrigger trigger, IScheduler scheduler, CancellationToken cancellationToken = default)
    {
        if (Equals(trigger.JobKey, BackupJob.Key)) events.ScheduleMissed();
        return ValueTask.CompletedTask;
    }
}
