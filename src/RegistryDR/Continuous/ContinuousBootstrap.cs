using Microsoft.Extensions.Logging;
using RegistryDR.Agent;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Continuous;

/// <summary>
/// The bootstrap agent's restore in continuous mode: fence, then restore to the end of the archived
/// WAL from the newest base backup that passes its checks (older ones are tried when a newer one is
/// corrupt: the WAL carries them to the same end). With no base backup at all it refuses, unless
/// <c>Agent:AllowFirstBoot</c> makes this node's own cluster the original.
/// </summary>
/// <remarks>
/// The generation is taken and recorded in the node state as one step
/// (<see cref="Fencing.GenerationLedger.TakeAndRecordAsync"/>), as in logical mode: a failover node
/// (<c>Agent:Role=failover</c>) opens a new epoch, and a node taking over a store another region wrote
/// last does too, so nothing the previous region archives or backs up later (directly or through
/// replication) is ever newer. It records the base backup the restore plans to start from
/// (<c>RestoredFrom</c>): base backups of an older epoch newer than it are FENCED (retention,
/// <see cref="Fencing.TakeoverHistory"/>).
/// </remarks>
public static partial class ContinuousBootstrap
{
    /// <param name="region">This node's AWS region (instance metadata), recorded in the generation; null when unknown.</param>
    public static async Task<(NodeStatus, string?, Fencing.Generation)> RestoreAsync(RegistryDrOptions options, IBackupStore store, ILogger logger, TimeProvider time,
        HttpClient? http, IOperationEvents? events, string instanceId, List<string> skipped, CancellationToken cancellationToken, string? region = null)
    {
        var complete = (await new ContinuousCatalog(store).ListBaseBackupsAsync(cancellationToken)).Where(s => s.IsComplete).ToList();
        if (complete.Count == 0 && !options.Agent.AllowFirstBoot)
            throw new BackupNotFoundException(
                $"The store {store.Description} holds no complete base backup. Refusing to start an empty registry: " +
                "if this is the very first deploy, set Agent:AllowFirstBoot=true (the template's AllowFirstBoot parameter); otherwise check Store:Url and Database:Mode.");
        var service = new ContinuousRestoreService(options, store, logger, time, http, events);
        string? restoredFrom = null;
        if (complete.Count > 0)
        {
            // Read-only: the restore plans again after fencing, from the archive as it is then.
            try { restoredFrom = (await service.PlanAsync(new PointInTimeRequest(RecoveryTarget.Latest, TakeGeneration: false), cancellationToken)).Plan.Base.BackupId; }
            catch (RecoveryPlanException) { restoredFrom = complete[0].BackupId; /* the restore below says why it cannot */ }
        }
        // Fence first: the node being replaced archives nothing more from here on, so the end of
        // the archive read below is the end of its history.
        var takeOver = options.Agent.Role == Configuration.AgentRole.Failover;
        var generation = await new Fencing.GenerationLedger(store, time).TakeAndRecordAsync(options.Agent.StateFile,
            complete.Count == 0 ? "first-boot" : takeOver ? "takeover" : "restore", instanceId, restoredFrom, cancellationToken, region, takeOver);
        LogGeneration(logger, generation.Number);
        if (complete.Count == 0)
        {
            LogFirstBoot(logger, store.Description);
            var registry = new RegistryController(options.Registry, logger, time, http);
            await registry.StartAsync(cancellationToken);
            await registry.WaitUntilHealthyAsync(cancellationToken);
            return (NodeStatus.FirstBoot, null, generation);
        }
        var result = await service.RestoreAsync(new PointInTimeRequest(RecoveryTarget.Latest, TakeGeneration: false), cancellationToken: cancellationToken);
        skipped.AddRange(result.Plan.SkippedBases);
        return (NodeStatus.Restored, result.Plan.Base.BackupId, generation);
    }

    [LoggerMessage(9160, LogLevel.Information, "Took fencing generation {Generation}: older nodes stop archiving WAL and writing base backups to this store")]
    private static partial void LogGeneration(ILogger logger, long generation);

    [LoggerMessage(9161, LogLevel.Warning, "The store {Store} holds no base backup and Agent:AllowFirstBoot is set: this node's PostgreSQL cluster becomes the original")]
    private static partial void LogFirstBoot(ILogger logger, string store);
}
