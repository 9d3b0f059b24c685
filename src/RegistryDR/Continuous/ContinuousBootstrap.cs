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
public static partial class ContinuousBootstrap
{
    public static async Task<(NodeStatus, string?, Fencing.Generation)> RestoreAsync(RegistryDrOptions options, IBackupStore store, ILogger logger, TimeProvider time,
        HttpClient? http, IOperationEvents? events, string instanceId, List<string> skipped, CancellationToken cancellationToken)
    {
        var complete = (await new ContinuousCatalog(store).ListBaseBackupsAsync(cancellationToken)).Where(s => s.IsComplete).ToList();
        if (complete.Count == 0 && !options.Agent.AllowFirstBoot)
            throw new BackupNotFoundException(
                $"The store {store.Description} holds no complete base backup. Refusing to start an empty registry: " +
                "if this is the very first deploy, set Agent:AllowFirstBoot=true (the template's AllowFirstBoot parameter); otherwise check Store:Url and Database:Mode.");
        // Fence first: the node being replaced archives nothing more from here on, so the end of
        // the archive read below is the end of its history.
        var generation = await new Fencing.GenerationLedger(store, time).TakeNextAsync(complete.Count == 0 ? "first-boot" : "restore", instanceId, complete.FirstOrDefault()?.BackupId, cancellationToken);
        var state = NodeStateFile.Read(options.Agent.StateFile) ?? new NodeState(NodeStatus.Restoring, time.GetUtcNow(), null, instanceId, null);
        NodeStateFile.Write(options.Agent.StateFile, state with { Generation = generation.Number });
        LogGeneration(logger, generation.Number);
        if (complete.Count == 0)
        {
            LogFirstBoot(logger, store.Description);
            var registry = new RegistryController(options.Registry, logger, time, http);
            await registry.StartAsync(cancellationToken);
            await registry.WaitUntilHealthyAsync(cancellationToken);
            return (NodeStatus.FirstBoot, null, generation);
        }
        var result = await new ContinuousRestoreService(options, store, logger, time, http, events)
            .RestoreAsync(new PointInTimeRequest(RecoveryTarget.Latest, TakeGeneration: false), cancellationToken: cancellationToken);
        skipped.AddRange(result.Plan.SkippedBases);
        return (NodeStatus.Restored, result.Plan.Base.BackupId, generation);
    }

    [LoggerMessage(9160, LogLevel.Information, "Took fencing generation {Generation}: older nodes stop archiving WAL and writing base backups to this store")]
    private static partial void LogGeneration(ILogger logger, long generation);

    [LoggerMessage(9161, LogLevel.Warning, "The store {Store} holds no base backup and Agent:AllowFirstBoot is set: this node's PostgreSQL cluster becomes the original")]
    private static partial void LogFirstBoot(ILogger logger, string store);
}
