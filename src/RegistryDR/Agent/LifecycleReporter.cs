using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using RegistryDR.Aws;

namespace RegistryDR.Agent;

/// <summary>What became of a <c>CompleteLifecycleAction</c>.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LifecycleActionOutcome>))]
public enum LifecycleActionOutcome
{
    /// <summary>Nothing was sent: no hook configured, or the instance is in no Auto Scaling group.</summary>
    NotSent,
    /// <summary>Auto Scaling accepted the result.</summary>
    Completed,
    /// <summary>
    /// "No active Lifecycle Action found": an earlier try was accepted but its answer was lost, or
    /// the instance never waited on this hook; Auto Scaling shows it in service (or could not be asked).
    /// </summary>
    AlreadyCompleted,
    /// <summary>The result was not accepted, and the instance is not in service: Auto Scaling will apply the hook's DefaultResult, or is already terminating it.</summary>
    NotCompleted,
}

/// <summary>What became of a CloudFormation <c>SignalResource</c>.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ResourceSignalOutcome>))]
public enum ResourceSignalOutcome
{
    /// <summary>Nothing was sent: no <c>Agent:SignalResource</c>, or the stack is unknown.</summary>
    NotSent,
    /// <summary>CloudFormation accepted the signal: a stack create or update was waiting for it.</summary>
    Accepted,
    /// <summary>
    /// CloudFormation refused it with ValidationError because nothing waits for it: the stack is
    /// not being created or updated (an unplanned replacement: "Stack … is in CREATE_COMPLETE
    /// state and cannot be signaled"), the update does not replace this resource, or this
    /// instance's signal was already counted. The normal case outside a create or update.
    /// </summary>
    NotWaiting,
    /// <summary>The signal could not be delivered (network, permissions, still throttled after the retries).</summary>
    Failed,
}

/// <summary>
/// Tells Auto Scaling and CloudFormation what this node did, tolerating the answers that are
/// normal over a stack's life; never throws for an AWS refusal. One instance per node identity.
/// </summary>
internal sealed partial class LifecycleReporter(IAwsControlPlane aws, InstanceIdentity identity, ILogger logger)
{
    public InstanceIdentity Identity => identity;

    /// <summary>The action for <paramref name="hookName"/> on this instance, or null (logged) when there is no hook or no group.</summary>
    public LifecycleAction? ActionFor(string? hookName)
    {
        if (string.IsNullOrEmpty(hookName)) return null;
        if (identity.AutoScalingGroupName is null)
        {
            LogNoGroup(hookName);
            return null;
        }
        return new LifecycleAction(identity.AutoScalingGroupName, hookName, identity.InstanceId);
    }

    /// <summary>
    /// <c>CompleteLifecycleAction</c> with <paramref name="result"/>. A ValidationError ("No active
    /// Lifecycle Action found with instance ID …", what a completed or timed-out action answers) is
    /// checked with <c>DescribeAutoScalingInstances</c>: when the instance is where the result would
    /// have taken it (in service after a launch CONTINUE; terminating or gone after an ABANDON or
    /// any result of a terminating hook), an earlier try was accepted; otherwise the result was not
    /// applied (<see cref="LifecycleActionOutcome.NotCompleted"/>).
    /// </summary>
    /// <param name="terminating">True for the terminating hook (autoscaling:EC2_INSTANCE_TERMINATING).</param>
    public async Task<LifecycleActionOutcome> CompleteAsync(LifecycleAction? action, LifecycleActionResult result, bool terminating, CancellationToken cancellationToken)
    {
        if (action is null) return LifecycleActionOutcome.NotSent;
        var word = result == LifecycleActionResult.Continue ? "CONTINUE" : "ABANDON";
        try
        {
            await aws.CompleteLifecycleActionAsync(action, result, cancellationToken);
            LogLifecycleCompleted(word, action.LifecycleHookName, action.AutoScalingGroupName);
            return LifecycleActionOutcome.Completed;
        }
        catch (AwsApiException ex) when (ex.IsValidationError)
        {
            AutoScalingInstance? now;
            try
            {
                now = await aws.DescribeAutoScalingInstanceAsync(action.InstanceId, cancellationToken);
            }
            catch (AwsApiException describeError)
            {
                // Unverifiable; the lost-answer retry is by far the likeliest cause, so carry on.
                LogNoActiveUnverified(action.LifecycleHookName, ex.Message, describeError.Message);
                return LifecycleActionOutcome.AlreadyCompleted;
            }
            var leaving = terminating || result == LifecycleActionResult.Abandon;
            var done = leaving ? now is null || now.IsTerminating : now is not null && now.IsInServiceOrProceeding;
            if (done)
            {
                LogNoActiveButDone(action.LifecycleHookName, now?.LifecycleState ?? "gone from the group", ex.Message);
                return LifecycleActionOutcome.AlreadyCompleted;
            }
            LogNotCompleted(word, action.LifecycleHookName, now?.LifecycleState ?? "not in the group", ex.Message);
            return LifecycleActionOutcome.NotCompleted;
        }
        catch (AwsApiException ex)
        {
            LogLifecycleFailed(ex, word, action.LifecycleHookName, ex.Message);
            return LifecycleActionOutcome.NotCompleted;
        }
    }

    /// <summary>
    /// CloudFormation <c>SignalResource</c> for <paramref name="logicalResourceId"/> with the
    /// instance id as UniqueId (as the SignalResource API Reference asks for instances and Auto
    /// Scaling groups). A ValidationError is <see cref="ResourceSignalOutcome.NotWaiting"/>,
    /// logged at information: outside a create or update, and for an update that does not replace
    /// the group, CloudFormation waits for no signal.
    /// </summary>
    public async Task<ResourceSignalOutcome> SignalAsync(string? logicalResourceId, ResourceSignalStatus status, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(logicalResourceId)) return ResourceSignalOutcome.NotSent;
        if (identity.StackName is null)
        {
            LogNoStack(logicalResourceId);
            return ResourceSignalOutcome.NotSent;
        }
        var word = status == ResourceSignalStatus.Success ? "SUCCESS" : "FAILURE";
        try
        {
            await aws.SignalResourceAsync(identity.StackName, logicalResourceId, identity.InstanceId, status, cancellationToken);
            LogSignalled(word, identity.StackName, logicalResourceId);
            return ResourceSignalOutcome.Accepted;
        }
        catch (AwsApiException ex) when (ex.IsValidationError)
        {
            LogNotWaiting(word, identity.StackName, logicalResourceId, ex.Message);
            return ResourceSignalOutcome.NotWaiting;
        }
        catch (AwsApiException ex)
        {
            LogSignalFailed(ex, word, identity.StackName, logicalResourceId, ex.Message);
            return ResourceSignalOutcome.Failed;
        }
    }

    /// <summary>Records a heartbeat for <paramref name="action"/> every <paramref name="interval"/> until cancelled; failures are logged and the loop goes on.</summary>
    public async Task HeartbeatAsync(LifecycleAction action, TimeSpan interval, TimeProvider time, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                try
                {
                    await aws.RecordLifecycleActionHeartbeatAsync(action, cancellationToken);
                    LogHeartbeat(action.LifecycleHookName);
                }
                catch (AwsApiException ex)
                {
                    // A missed heartbeat only shortens the hook's patience; the work goes on.
                    LogHeartbeatFailed(ex, action.LifecycleHookName, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(4007, LogLevel.Information, "Lifecycle action completed with {Result} for hook {Hook} of group {Group}")]
    private partial void LogLifecycleCompleted(string result, string hook, string group);

    [LoggerMessage(4008, LogLevel.Information, "Signalled {Status} to stack {Stack} resource {Resource}")]
    private partial void LogSignalled(string status, string stack, string resource);

    [LoggerMessage(4009, LogLevel.Debug, "Lifecycle heartbeat recorded for hook {Hook}")]
    private partial void LogHeartbeat(string hook);

    [LoggerMessage(4010, LogLevel.Warning, "Lifecycle heartbeat for hook {Hook} failed: {Reason}")]
    private partial void LogHeartbeatFailed(Exception ex, string hook, string reason);

    [LoggerMessage(4011, LogLevel.Warning, "Lifecycle hook {Hook} is configured but the Auto Scaling group is unknown (not in a group, DescribeAutoScalingInstances failed, no Agent:AutoScalingGroupName): no lifecycle action will be sent")]
    private partial void LogNoGroup(string hook);

    [LoggerMessage(4012, LogLevel.Warning, "Agent:SignalResource is {Resource} but the stack is unknown (no Agent:StackName, no aws:cloudformation:stack-name tag in instance metadata): no signal will be sent")]
    private partial void LogNoStack(string resource);

    [LoggerMessage(4014, LogLevel.Information, "CloudFormation is not waiting for a signal from this instance ({Status} to stack {Stack} resource {Resource} refused: {Reason}); normal outside a stack create or update, nothing to do")]
    private partial void LogNotWaiting(string status, string stack, string resource, string reason);

    [LoggerMessage(4015, LogLevel.Error, "Could not signal {Status} to stack {Stack} resource {Resource} ({Reason}); a stack create or update waiting for it fails at its timeout, this node's state does not change")]
    private partial void LogSignalFailed(Exception ex, string status, string stack, string resource, string reason);

    [LoggerMessage(4016, LogLevel.Information, "Lifecycle hook {Hook} has no active action, and the instance is {State}: an earlier try was accepted (its answer was lost) or the instance never waited on the hook ({Reason})")]
    private partial void LogNoActiveButDone(string hook, string state, string reason);

    [LoggerMessage(4017, LogLevel.Warning, "Lifecycle hook {Hook} has no active action ({Reason}) and Auto Scaling could not be asked about the instance ({DescribeError}); assuming an earlier try was accepted")]
    private partial void LogNoActiveUnverified(string hook, string reason, string describeError);

    [LoggerMessage(4018, LogLevel.Error, "{Result} for lifecycle hook {Hook} was not accepted and the instance is {State} ({Reason}): the hook's action ended without it (timed out, and Auto Scaling applied the hook's default result)")]
    private partial void LogNotCompleted(string result, string hook, string state, string reason);

    [LoggerMessage(4019, LogLevel.Error, "Could not complete lifecycle hook {Hook} with {Result} ({Reason}); Auto Scaling applies the hook's default result when its heartbeat timeout ends")]
    private partial void LogLifecycleFailed(Exception ex, string result, string hook, string reason);
}
