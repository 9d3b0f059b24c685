using Microsoft.Extensions.Logging;
using RegistryDR.Aws;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Agent;

public sealed record BootstrapResult(NodeStatus Status, string? BackupId, IReadOnlyList<string> SkippedBackups, InstanceIdentity Identity);

/// <summary>
/// Runs once on a fresh instance: finds who it is, restores the newest backup that verifies
/// (falling back to older ones when a set is corrupt), starts the registry, and only then tells
/// Auto Scaling (CONTINUE) and CloudFormation (SUCCESS). Any failure is reported as ABANDON and
/// FAILURE, and the node is marked so that it never writes a backup.
/// </summary>
public sealed partial class BootstrapAgent
{
    private readonly RegistryDrOptions _options;
    private readonly IBackupStore _store;
    private readonly IInstanceMetadata _metadata;
    private readonly Func<InstanceIdentity, IAwsControlPlane> _controlPlane;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly HttpClient? _http;
    private readonly Monitoring.IOperationEvents? _events;

    public BootstrapAgent(RegistryDrOptions options, IBackupStore store, IInstanceMetadata metadata,
        Func<InstanceIdentity, IAwsControlPlane> controlPlane, ILoggerFactory loggers, TimeProvider time, HttpClient? http = null,
        Monitoring.IOperationEvents? events = null)
    {
        _events = events;
        _options = options;
        _store = store;
        _metadata = metadata;
        _controlPlane = controlPlane;
        _loggers = loggers;
        _logger = loggers.CreateLogger<BootstrapAgent>();
        _time = time;
        _http = http;
    }

    private AgentOptions Agent => _options.Agent;

    public async Task<BootstrapResult> RunAsync(CancellationToken cancellationToken)
    {
        var identity = await ResolveIdentityAsync(cancellationToken);
        LogIdentity(identity.InstanceId, identity.Region, identity.StackName ?? "(none)", identity.AutoScalingGroupName ?? "(none)");
        NodeStateFile.Write(Agent.StateFile, new NodeState(NodeStatus.Restoring, _time.GetUtcNow(), null, identity.InstanceId, null));
        var aws = _controlPlane(identity);
        var lifecycle = LifecycleFor(identity);

        using var heartbeatStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var heartbeats = lifecycle is null ? Task.CompletedTask : HeartbeatAsync(aws, lifecycle, heartbeatStop.Token);
        var skipped = new List<string>();
        try
        {
            var (status, backupId, generation) = await RestoreNewestValidAsync(identity, skipped, cancellationToken);
            await heartbeatStop.CancelAsync();
            await heartbeats;
            NodeStateFile.Write(Agent.StateFile, new NodeState(status, _time.GetUtcNow(), backupId, identity.InstanceId,
                skipped.Count == 0 ? null : $"skipped corrupt sets: {string.Join(", ", skipped)}") { Generation = generation.Number });
            await SignalAsync(aws, identity, lifecycle, success: true);
            LogSucceeded(status, backupId ?? "(none)");
            return new BootstrapResult(status, backupId, skipped, identity);
        }
        catch (Exception ex)
        {
            await heartbeatStop.CancelAsync();
            try { await heartbeats; } catch (OperationCanceledException) { }
            NodeStateFile.Write(Agent.StateFile, new NodeState(NodeStatus.Failed, _time.GetUtcNow(), null, identity.InstanceId, ex.Message));
            LogFailed(ex, ex.Message);
            try
            {
                await SignalAsync(aws, identity, lifecycle, success: false);
            }
            catch (Exception signalError)
            {
                LogSignalFailed(signalError, signalError.Message);
            }
            if (ex is OperationCanceledException && cancellationToken.IsCancellationRequested) throw;
            throw new BootstrapFailedException(ex.Message, ex);
        }
    }

    private async Task<InstanceIdentity> ResolveIdentityAsync(CancellationToken cancellationToken)
    {
        var fromConfig = new InstanceIdentity(Agent.InstanceId ?? "", Agent.Region ?? "", Agent.StackName, Agent.AutoScalingGroupName);
        var complete = fromConfig.InstanceId.Length > 0 && fromConfig.Region.Length > 0 &&
                       (string.IsNullOrEmpty(Agent.SignalResource) || fromConfig.StackName is not null) &&
                       (string.IsNullOrEmpty(Agent.LifecycleHookName) || fromConfig.AutoScalingGroupName is not null);
        if (complete) return fromConfig;
        var imds = await _metadata.GetIdentityAsync(cancellationToken);
        return new InstanceIdentity(
            fromConfig.InstanceId.Length > 0 ? fromConfig.InstanceId : imds.InstanceId,
            fromConfig.Region.Length > 0 ? fromConfig.Region : imds.Region,
            fromConfig.StackName ?? imds.StackName,
            fromConfig.AutoScalingGroupName ?? imds.AutoScalingGroupName);
    }

    private LifecycleAction? LifecycleFor(InstanceIdentity identity)
    {
        if (string.IsNullOrEmpty(Agent.LifecycleHookName)) return null;
        if (identity.AutoScalingGroupName is null)
        {
            LogNoGroup(Agent.LifecycleHookName);
            return null;
        }
        return new LifecycleAction(identity.AutoScalingGroupName, Agent.LifecycleHookName, identity.InstanceId);
    }

    private async Task<(NodeStatus, string?, Fencing.Generation)> RestoreNewestValidAsync(InstanceIdentity identity, List<string> skipped, CancellationToken cancellationToken)
    {
        if (_options.Database.Mode == Continuous.DatabaseMode.Continuous)
            return await Continuous.ContinuousBootstrap.RestoreAsync(_options, _store, _logger, _time, _http, _events, identity.InstanceId, skipped, cancellationToken);
        var catalog = new BackupCatalog(_store);
        var sets = await catalog.ListAsync(cancellationToken);
        var complete = sets.Where(s => s.IsComplete).ToList();
        if (complete.Count == 0 && !Agent.AllowFirstBoot)
            throw new BackupNotFoundException(
                $"The store {_store.Description} holds no complete backup ({sets.Count} incomplete). Refusing to start an empty registry: " +
                "if this is the very first deploy, set Agent:AllowFirstBoot=true (the template's AllowFirstBoot parameter); otherwise check Store:Url.");
        // Fence off whichever node wrote before: from here on only this node may write backups,
        // so a zombie of the old node cannot publish a set the next replacement would restore.
        var generation = await new Fencing.GenerationLedger(_store, _time).TakeNextAsync(
            complete.Count == 0 ? "first-boot" : "restore", identity.InstanceId, complete.FirstOrDefault()?.BackupId, cancellationToken);
        LogGeneration(generation.Number);
        if (complete.Count == 0)
        {
            if (!Agent.AllowFirstBoot)
                throw new BackupNotFoundException(
                    $"The store {_store.Description} holds no complete backup ({sets.Count} incomplete). Refusing to start an empty registry: " +
                    "if this is the very first deploy, set Agent:AllowFirstBoot=true (the template's AllowFirstBoot parameter); otherwise check Store:Url.");
            LogFirstBoot(_store.Description);
            var registry = new RegistryController(_options.Registry, _logger, _time, _http);
            await registry.StartAsync(cancellationToken);
            await registry.WaitUntilHealthyAsync(cancellationToken);
            return (NodeStatus.FirstBoot, null, generation);
        }

        var restore = new RestoreService(_options, _store, _loggers.CreateLogger<RestoreService>(), _time, _http, _events);
        foreach (var set in complete)
        {
            try
            {
                await restore.RestoreAsync(new RestoreRequest(set.BackupId, TakeGeneration: false), cancellationToken: cancellationToken);
                if (skipped.Count > 0) LogRestoredOlder(set.BackupId, skipped.Count, string.Join(", ", skipped));
                return (NodeStatus.Restored, set.BackupId, generation);
            }
            catch (RestoreFailedException ex) when (ex.InnerException is ArtifactCorruptException or InvalidManifestException)
            {
                // Nothing on the node was touched (verification comes first), so an older set is a safe next try.
                skipped.Add(set.BackupId);
                LogFallingBack(set.BackupId, ex.InnerException!.Message);
            }
        }
        throw new BackupNotFoundException($"None of the {complete.Count} complete backups in {_store.Description} verified ({string.Join(", ", skipped)}); the node was not changed.");
    }

    private async Task HeartbeatAsync(IAwsControlPlane aws, LifecycleAction lifecycle, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(Agent.HeartbeatInterval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                try
                {
                    await aws.RecordLifecycleActionHeartbeatAsync(lifecycle, cancellationToken);
                    LogHeartbeat();
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // A missed heartbeat only shortens the hook's patience; the restore goes on.
                    LogHeartbeatFailed(ex, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task SignalAsync(IAwsControlPlane aws, InstanceIdentity identity, LifecycleAction? lifecycle, bool success)
    {
        var errors = new List<Exception>();
        if (lifecycle is not null)
        {
            try
            {
                await aws.CompleteLifecycleActionAsync(lifecycle, success ? LifecycleActionResult.Continue : LifecycleActionResult.Abandon, CancellationToken.None);
                LogLifecycleCompleted(success ? "CONTINUE" : "ABANDON", lifecycle.AutoScalingGroupName);
            }
            catch (Exception ex) { errors.Add(ex); }
        }
        if (!string.IsNullOrEmpty(Agent.SignalResource))
        {
            if (identity.StackName is null)
            {
                LogNoStack(Agent.SignalResource);
            }
            else
            {
                try
                {
                    await aws.SignalResourceAsync(identity.StackName, Agent.SignalResource, identity.InstanceId, success ? ResourceSignalStatus.Success : ResourceSignalStatus.Failure, CancellationToken.None);
                    LogSignalled(success ? "SUCCESS" : "FAILURE", identity.StackName, Agent.SignalResource);
                }
                catch (Exception ex) { errors.Add(ex); }
            }
        }
        if (errors.Count > 0)
            throw new AggregateException("Telling AWS the bootstrap result failed: " + string.Join("; ", errors.Select(e => e.Message)), errors);
    }

    [LoggerMessage(4013, LogLevel.Information, "Took fencing generation {Generation}: older nodes stop writing backups to this store")]
    private partial void LogGeneration(long generation);

    [LoggerMessage(4000, LogLevel.Information, "Bootstrap on instance {InstanceId} in {Region}, stack {Stack}, group {Group}")]
    private partial void LogIdentity(string instanceId, string region, string stack, string group);

    [LoggerMessage(4001, LogLevel.Warning, "Backup {BackupId} failed verification, falling back to the next older set: {Reason}")]
    private partial void LogFallingBack(string backupId, string reason);

    [LoggerMessage(4002, LogLevel.Warning, "Restored backup {BackupId}, which is not the newest: {Count} newer set(s) were corrupt ({Skipped})")]
    private partial void LogRestoredOlder(string backupId, int count, string skipped);

    [LoggerMessage(4003, LogLevel.Warning, "The store {Store} is empty and Agent:AllowFirstBoot is set: starting an empty registry as the first node")]
    private partial void LogFirstBoot(string store);

    [LoggerMessage(4004, LogLevel.Information, "Bootstrap succeeded: {Status}, backup {BackupId}")]
    private partial void LogSucceeded(NodeStatus status, string backupId);

    [LoggerMessage(4005, LogLevel.Critical, "Bootstrap failed; this node will not serve and will never write backups: {Reason}")]
    private partial void LogFailed(Exception ex, string reason);

    [LoggerMessage(4006, LogLevel.Error, "Could not tell AWS the bootstrap result: {Reason}")]
    private partial void LogSignalFailed(Exception ex, string reason);

    [LoggerMessage(4007, LogLevel.Information, "Lifecycle action completed with {Result} for group {Group}")]
    private partial void LogLifecycleCompleted(string result, string group);

    [LoggerMessage(4008, LogLevel.Information, "Signalled {Status} to stack {Stack} resource {Resource}")]
    private partial void LogSignalled(string status, string stack, string resource);

    [LoggerMessage(4009, LogLevel.Debug, "Lifecycle heartbeat recorded")]
    private partial void LogHeartbeat();

    [LoggerMessage(4010, LogLevel.Warning, "Lifecycle heartbeat failed: {Reason}")]
    private partial void LogHeartbeatFailed(Exception ex, string reason);

    [LoggerMessage(4011, LogLevel.Warning, "Agent:LifecycleHookName is {Hook} but the Auto Scaling group is unknown (no aws:autoscaling:groupName tag in instance metadata, no Agent:AutoScalingGroupName); no lifecycle action will be sent")]
    private partial void LogNoGroup(string hook);

    [LoggerMessage(4012, LogLevel.Warning, "Agent:SignalResource is {Resource} but the stack is unknown (no aws:cloudformation:stack-name tag, no Agent:StackName); no signal will be sent")]
    private partial void LogNoStack(string resource);
}

public sealed class BootstrapFailedException(string message, Exception inner) : Exception("Bootstrap failed: " + message, inner);
