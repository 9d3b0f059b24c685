using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RegistryDR.Aws;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Worker;

namespace RegistryDR.Agent;

/// <summary>
/// Part of the worker: takes one final backup when Auto Scaling is about to terminate this node (a
/// rolling update, a scale-in, a rebalance, an operator's terminate), so that a planned
/// replacement loses no push acknowledged before the node was told to go.
/// </summary>
/// <remarks>
/// <para>How termination is noticed: the stack's terminating lifecycle hook
/// (<c>Agent:TerminationHookName</c>) holds the instance in <c>Terminating:Wait</c>, and
/// instance metadata's <c>autoscaling/target-lifecycle-state</c> then reads <c>Terminated</c>
/// ("Retrieve the target lifecycle state through instance metadata", Amazon EC2 Auto Scaling User
/// Guide). The worker reads it every <c>Agent:TargetLifecycleStatePollInterval</c>.</para>
/// <para>Then: scheduled backups stop; the final backup waits for a running one to end (one at a
/// time, <see cref="NodeRetirement.BackupGate"/>) and then starts, so its snapshot is taken after
/// the notice; while it runs a heartbeat is recorded every <c>Agent:HeartbeatInterval</c>; then
/// <c>CompleteLifecycleAction</c> CONTINUE. For a terminating hook CONTINUE and ABANDON both let
/// the instance terminate ("Amazon EC2 Auto Scaling lifecycle hooks"); CONTINUE is sent, also when
/// the final backup failed, because ABANDON would skip any other terminating hook the group has and,
/// under an instance lifecycle policy that retains instances on an abandoned terminating hook,
/// would keep this instance instead of replacing it. A failed final backup is logged as critical:
/// the newest older set is what the replacement restores.</para>
/// <para>Off EC2, or on an instance in no Auto Scaling group, nothing happens (logged once).</para>
/// </remarks>
internal sealed partial class TerminationWatcher(
    RegistryDrOptions options, IInstanceMetadata metadata, Func<string, IAwsControlPlane> controlPlane, BackupService backups,
    NodeRetirement retirement, TimeProvider time, ILogger<TerminationWatcher> logger) : BackgroundService
{
    /// <summary>The target lifecycle state that means the instance is being terminated.</summary>
    internal const string Terminated = "Terminated";

    /// <summary>How long to wait after instance metadata could not be read before asking again.</summary>
    internal static readonly TimeSpan UnreachableRetry = TimeSpan.FromMinutes(1);

    private AgentOptions Agent => options.Agent;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (string.IsNullOrEmpty(Agent.TerminationHookName)) return;
        var saidUnreachable = false;
        var saidNoGroup = false;
        try
        {
            while (true)
            {
                var wait = Agent.TargetLifecycleStatePollInterval;
                try
                {
                    var target = await metadata.GetTargetLifecycleStateAsync(stoppingToken);
                    if (target == Terminated)
                    {
                        await RetireAsync(stoppingToken);
                        return;
                    }
                    if (target is null && !saidNoGroup)
                    {
                        saidNoGroup = true;
                        LogNoGroup();
                    }
                    saidUnreachable = false;
                }
                catch (InstanceMetadataUnavailableException ex)
                {
                    // Off EC2 this is every poll: say it once, and ask less often.
                    if (!saidUnreachable) LogUnreachable(ex.Message, UnreachableRetry);
                    saidUnreachable = true;
                    wait = UnreachableRetry;
                }
                await Task.Delay(wait, time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task RetireAsync(CancellationToken stoppingToken)
    {
        if (!retirement.BeginRetiring()) return;
        LogTerminating(Agent.TerminationHookName!);
        LifecycleReporter? reporter = null;
        LifecycleAction? action = null;
        try
        {
            var resolved = await new NodeIdentityResolver(Agent, metadata, controlPlane, logger).ResolveAsync(stoppingToken);
            reporter = new LifecycleReporter(resolved.Aws, resolved.Identity, logger);
            action = reporter.ActionFor(Agent.TerminationHookName);
        }
        catch (Exception ex) when (ex is InstanceMetadataUnavailableException or AwsApiException or ArgumentException)
        {
            // The final backup matters more than the hook: without it the hook times out and Auto Scaling goes on.
            LogNoIdentity(ex.Message);
        }

        using var heartbeatStop = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var heartbeats = reporter is null || action is null ? Task.CompletedTask : reporter.HeartbeatAsync(action, Agent.HeartbeatInterval, time, heartbeatStop.Token);
        var started = time.GetTimestamp();
        try
        {
            // Never released: this node takes no backup after its final one.
            await retirement.BackupGate.WaitAsync(stoppingToken);
            LogFinalBackupStarting();
            var manifest = await backups.RunAsync(cancellationToken: stoppingToken);
            LogFinalBackup(manifest.BackupId, time.GetElapsedTime(started).TotalSeconds);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            LogFinalBackupCancelled();
        }
        catch (Exception ex)
        {
            LogFinalBackupFailed(ex, ex.Message);
        }
        finally
        {
            await heartbeatStop.CancelAsync();
            await heartbeats;
        }
        if (reporter is not null)
            await reporter.CompleteAsync(action, LifecycleActionResult.Continue, terminating: true, CancellationToken.None);
    }

    [LoggerMessage(4040, LogLevel.Warning, "Auto Scaling is terminating this instance (target lifecycle state Terminated): taking a final backup, then completing lifecycle hook {Hook}; no scheduled backup runs from now on")]
    private partial void LogTerminating(string hook);

    [LoggerMessage(4041, LogLevel.Information, "Final backup starting")]
    private partial void LogFinalBackupStarting();

    [LoggerMessage(4042, LogLevel.Information, "Final backup {BackupId} complete in {Seconds:F1} s: the replacement restores it")]
    private partial void LogFinalBackup(string backupId, double seconds);

    [LoggerMessage(4043, LogLevel.Critical, "FINAL BACKUP FAILED before termination: pushes since the previous backup are not in the store; the replacement restores the newest older set. {Reason}")]
    private partial void LogFinalBackupFailed(Exception ex, string reason);

    [LoggerMessage(4044, LogLevel.Error, "Final backup cancelled because the worker is stopping; the replacement restores the newest older set")]
    private partial void LogFinalBackupCancelled();

    [LoggerMessage(4045, LogLevel.Error, "Could not find this instance's Auto Scaling group to complete the terminating hook ({Reason}); taking the final backup anyway, the hook will time out")]
    private partial void LogNoIdentity(string reason);

    [LoggerMessage(4046, LogLevel.Information, "This instance is in no Auto Scaling group (no autoscaling/target-lifecycle-state in instance metadata): no final backup on termination unless it joins one")]
    private partial void LogNoGroup();

    [LoggerMessage(4047, LogLevel.Information, "Instance metadata is not reachable ({Reason}): not watching for Auto Scaling termination; asking again every {Retry}")]
    private partial void LogUnreachable(string reason, TimeSpan retry);
}
