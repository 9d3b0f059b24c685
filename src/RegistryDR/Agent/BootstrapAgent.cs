using Microsoft.Extensions.Logging;
using RegistryDR.Aws;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Agent;

/// <summary>What the bootstrap did, and what AWS made of it.</summary>
/// <param name="Lifecycle">The launch lifecycle action's fate (CONTINUE after a restore).</param>
/// <param name="Signal">The CloudFormation signal's fate (SUCCESS after a restore).</param>
public sealed record BootstrapResult(NodeStatus Status, string? BackupId, IReadOnlyList<string> SkippedBackups, InstanceIdentity Identity,
    LifecycleActionOutcome Lifecycle = LifecycleActionOutcome.NotSent, ResourceSignalOutcome Signal = ResourceSignalOutcome.NotSent)
{
    /// <summary>The registry check run after the restore (Agent:CheckRegistryAfterRestore); null when none ran.</summary>
    public RegistryCheckSummary? RegistryCheck { get; init; }
}

/// <summary>
/// Runs once on a fresh instance: finds who it is, restores the newest backup that verifies
/// (falling back to older ones when a set is corrupt), starts the registry, and only then tells
/// Auto Scaling (CONTINUE) and CloudFormation (SUCCESS). A failed restore is reported as ABANDON
/// and FAILURE, and the node is marked so that it never writes a backup.
/// </summary>
/// <remarks>
/// <para>Order: <c>CompleteLifecycleAction</c> first, <c>SignalResource</c> second. The instance
/// enters service (and its load balancer) only on CONTINUE ("Amazon EC2 Auto Scaling lifecycle
/// hooks"), while a SUCCESS signal lets CloudFormation count the instance and go on with the
/// create or the rolling update ("CreationPolicy attribute", "UpdatePolicy attribute",
/// WaitOnResourceSignals): signalling first could report success for an instance Auto Scaling
/// then abandons. When CONTINUE is not accepted (and the instance is not in service), FAILURE is
/// signalled instead, so a waiting stack rolls back at once rather than at its timeout.</para>
/// <para>Outside a stack create or update (an unplanned replacement by the group itself)
/// CloudFormation refuses every signal with ValidationError: that is logged and the bootstrap
/// succeeds. Once the restore succeeded, no reporting error changes the node's state.</para>
/// </remarks>
public sealed partial class BootstrapAgent
{
    private readonly RegistryDrOptions _options;
    private readonly IBackupStore _store;
    private readonly IInstanceMetadata _metadata;
    private readonly Func<string, IAwsControlPlane> _controlPlane;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly HttpClient? _http;
    private readonly Monitoring.IOperationEvents? _events;

    /// <param name="controlPlane">Builds the AWS client for a region (the instance's).</param>
    public BootstrapAgent(RegistryDrOptions options, IBackupStore store, IInstanceMetadata metadata,
        Func<string, IAwsControlPlane> controlPlane, ILoggerFactory loggers, TimeProvider time, HttpClient? http = null,
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

    /// <exception cref="BootstrapFailedException">Nothing could be restored; the node is marked Failed and ABANDON/FAILURE were sent.</exception>
    /// <exception cref="LifecycleActionNotCompletedException">The restore succeeded but Auto Scaling did not accept CONTINUE.</exception>
    public async Task<BootstrapResult> RunAsync(CancellationToken cancellationToken)
    {
        var (identity, aws, _) = await new NodeIdentityResolver(Agent, _metadata, _controlPlane, _logger).ResolveAsync(cancellationToken);
        LogIdentity(identity.InstanceId, identity.Region, identity.StackName ?? "(none)", identity.AutoScalingGroupName ?? "(none)");
        // A generation a previous run took stays on record until a new one replaces it.
        NodeStateFile.Write(Agent.StateFile, new NodeState(NodeStatus.Restoring, _time.GetUtcNow(), null, identity.InstanceId, null) { Generation = NodeStateFile.Read(Agent.StateFile)?.Generation });
        var reporter = new LifecycleReporter(aws, identity, _logger);
        var launch = reporter.ActionFor(Agent.LifecycleHookName);

        using var heartbeatStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var heartbeats = launch is null ? Task.CompletedTask : reporter.HeartbeatAsync(launch, Agent.HeartbeatInterval, _time, heartbeatStop.Token);
        var skipped = new List<string>();
        NodeStatus status;
        string? backupId;
        try
        {
            Fencing.Generation generation;
            (status, backupId, generation) = await RestoreNewestValidAsync(identity, skipped, cancellationToken);
            await heartbeatStop.CancelAsync();
            await heartbeats;
            NodeStateFile.Write(Agent.StateFile, new NodeState(status, _time.GetUtcNow(), backupId, identity.InstanceId,
                skipped.Count == 0 ? null : $"skipped corrupt sets: {string.Join(", ", skipped)}") { Generation = generation.Number });
        }
        catch (Exception ex)
        {
            await heartbeatStop.CancelAsync();
            try { await heartbeats; } catch (OperationCanceledException) { }
            // The generation, if one was taken before the failure, stays on record (a Failed node never writes anyway).
            NodeStateFile.Write(Agent.StateFile, new NodeState(NodeStatus.Failed, _time.GetUtcNow(), null, identity.InstanceId, ex.Message) { Generation = NodeStateFile.Read(Agent.StateFile)?.Generation });
            LogFailed(ex, ex.Message);
            // CancellationToken.None: a stop request must not keep AWS from hearing why (each call is bounded).
            await reporter.CompleteAsync(launch, LifecycleActionResult.Abandon, terminating: false, CancellationToken.None);
            await reporter.SignalAsync(Agent.SignalResource, ResourceSignalStatus.Failure, CancellationToken.None);
            if (ex is OperationCanceledException && cancellationToken.IsCancellationRequested) throw;
            throw new BootstrapFailedException(ex.Message, ex);
        }

        // The node is restored: from here on its state stays what the restore made it.
        var lifecycle = await reporter.CompleteAsync(launch, LifecycleActionResult.Continue, terminating: false, CancellationToken.None);
        if (lifecycle == LifecycleActionOutcome.NotCompleted)
        {
            var refused = await reporter.SignalAsync(Agent.SignalResource, ResourceSignalStatus.Failure, CancellationToken.None);
            var result = new BootstrapResult(status, backupId, skipped, identity, lifecycle, refused);
            throw new LifecycleActionNotCompletedException(
                $"Restored backup {backupId ?? "(none: first boot)"}, but Auto Scaling did not accept CONTINUE for lifecycle hook {launch!.LifecycleHookName} of group {launch.AutoScalingGroupName}: " +
                "the instance will not enter service (the log above says why). The node state stays " + status + ".", result);
        }
        var signal = await reporter.SignalAsync(Agent.SignalResource, ResourceSignalStatus.Success, CancellationToken.None);
        LogSucceeded(status, backupId ?? "(none)", lifecycle, signal);
        RegistryCheckSummary? check = null;
        if (status == NodeStatus.Restored && !string.IsNullOrEmpty(Agent.CheckRegistryAfterRestore))
        {
            // After the signal: the node is in service and the check only reports (it never fails the boot).
            check = await RegistryCheckAfterRestore.RunAsync(new Registry.RegistryCheckOptions
            {
                RegistryUrl = new Uri(Agent.CheckRegistryAfterRestore),
                CredentialsFile = string.IsNullOrEmpty(Agent.CheckRegistryCredentialsFile) ? null : Agent.CheckRegistryCredentialsFile,
                Timeout = Agent.CheckRegistryTimeout,
            }, _loggers, _time, cancellationToken);
            if (NodeStateFile.Read(Agent.StateFile) is { } state) NodeStateFile.Write(Agent.StateFile, state with { RegistryCheck = check });
        }
        return new BootstrapResult(status, backupId, skipped, identity, lifecycle, signal) { RegistryCheck = check };
    }

    private async Task<(NodeStatus, string?, Fencing.Generation)> RestoreNewestValidAsync(InstanceIdentity identity, List<string> skipped, CancellationToken cancellationToken)
    {
        if (_options.Database.Mode == Continuous.DatabaseMode.Continuous)
            return await Continuous.ContinuousBootstrap.RestoreAsync(_options, _store, _logger, _time, _http, _events, identity.InstanceId, skipped, cancellationToken, identity.Region);
        // The same judgement as status and restore latest (RestorableSets): a set whose manifest is
        // invalid, or whose artifacts have not all replicated yet, is passed over, saying why.
        var judged = await new RestorableSets(_store).ListAsync(cancellationToken);
        var complete = judged.Count(j => j.Set.IsComplete);
        if (complete == 0)
        {
            if (!Agent.AllowFirstBoot)
                throw new BackupNotFoundException(
                    $"The store {_store.Description} holds no complete backup ({judged.Count} incomplete). Refusing to start an empty registry: " +
                    "if this is the very first deploy, set Agent:AllowFirstBoot=true (the template's AllowFirstBoot parameter); otherwise check Store:Url.");
            LogFirstBoot(_store.Description);
            // The node changes hands when its (empty) registry starts: take the generation and
            // record it as one step right there (GenerationLedger.TakeAndRecordAsync).
            var first = await new Fencing.GenerationLedger(_store, _time).TakeAndRecordAsync(Agent.StateFile, "first-boot", identity.InstanceId, null, cancellationToken, identity.Region);
            LogGeneration(first.Number);
            var registry = new RegistryController(_options.Registry, _logger, _time, _http);
            await registry.StartAsync(cancellationToken);
            await registry.WaitUntilHealthyAsync(cancellationToken);
            return (NodeStatus.FirstBoot, null, first);
        }

        var restore = new RestoreService(_options, _store, _loggers.CreateLogger<RestoreService>(), _time, _http, _events);
        foreach (var set in judged.Where(j => j.Set.IsComplete))
        {
            if (!set.IsRestorable)
            {
                skipped.Add(set.BackupId);
                LogFallingBack(set.BackupId, set.Describe());
                continue;
            }
            try
            {
                // RestoreService takes the generation (and records it) just before its swap, where
                // the node changes hands. A node that is booting has served nobody yet: whatever is
                // connected to its database (an image's registry started at boot) may be cut at the swap.
                var result = await restore.RestoreAsync(new RestoreRequest(set.BackupId, TerminateSessions: true)
                {
                    InstanceId = identity.InstanceId, Region = identity.Region, TakeOver = Agent.Role == Configuration.AgentRole.Failover,
                }, cancellationToken: cancellationToken);
                LogGeneration(result.Generation!.Number);
                if (skipped.Count > 0) LogRestoredOlder(set.BackupId, skipped.Count, string.Join(", ", skipped));
                return (NodeStatus.Restored, set.BackupId, result.Generation);
            }
            catch (RestoreFailedException ex) when (ex.InnerException is ArtifactCorruptException or InvalidManifestException)
            {
                // Nothing on the node was touched (verification comes first), so an older set is a safe next try.
                skipped.Add(set.BackupId);
                LogFallingBack(set.BackupId, ex.InnerException!.Message);
            }
        }
        throw new BackupNotFoundException($"None of the {complete} complete backups in {_store.Description} is restorable ({string.Join(", ", skipped)}); the node was not changed.");
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

    [LoggerMessage(4004, LogLevel.Information, "Bootstrap succeeded: {Status}, backup {BackupId}; lifecycle action {Lifecycle}, CloudFormation signal {Signal}")]
    private partial void LogSucceeded(NodeStatus status, string backupId, LifecycleActionOutcome lifecycle, ResourceSignalOutcome signal);

    [LoggerMessage(4005, LogLevel.Critical, "Bootstrap failed; this node will not serve and will never write backups: {Reason}")]
    private partial void LogFailed(Exception ex, string reason);
}

public sealed class BootstrapFailedException(string message, Exception inner) : Exception("Bootstrap failed: " + message, inner);

/// <summary>
/// The node restored (its state is <see cref="BootstrapResult.Status"/>), but Auto Scaling did not
/// accept CONTINUE for the launch hook and the instance is not in service: it will not take
/// traffic, and the group applies the hook's DefaultResult. FAILURE was signalled.
/// </summary>
public sealed class LifecycleActionNotCompletedException(string message, BootstrapResult result) : Exception(message)
{
    public BootstrapResult Result { get; } = result;
}
