namespace RegistryDR.Aws;

/// <summary>
/// Identifies a pending Auto Scaling lifecycle action: by instance, or by the token from the
/// lifecycle notification when there is one (the token is sent as well as the instance then).
/// </summary>
public sealed record LifecycleAction(string AutoScalingGroupName, string LifecycleHookName, string InstanceId, string? LifecycleActionToken = null);

public enum LifecycleActionResult
{
    Continue,
    Abandon,
}

public enum ResourceSignalStatus
{
    Success,
    Failure,
}

/// <summary>
/// One instance as <c>DescribeAutoScalingInstances</c> reports it (AutoScalingInstanceDetails in
/// the Amazon EC2 Auto Scaling API Reference).
/// </summary>
/// <param name="LifecycleState">e.g. <c>Pending:Wait</c>, <c>InService</c>, <c>Terminating:Wait</c>; see "Amazon EC2 Auto Scaling instance lifecycle".</param>
/// <param name="HealthStatus"><c>HEALTHY</c> or <c>UNHEALTHY</c>.</param>
public sealed record AutoScalingInstance(string InstanceId, string AutoScalingGroupName, string LifecycleState, string HealthStatus)
{
    /// <summary>The launch lifecycle action is over and the instance is (about to be) in service.</summary>
    public bool IsInServiceOrProceeding => LifecycleState is "InService" or "Pending:Proceed";

    /// <summary>The group is terminating the instance (after an ABANDON, a hook's time-out with DefaultResult ABANDON, a scale-in or a replacement).</summary>
    public bool IsTerminating => LifecycleState.StartsWith("Terminat", StringComparison.Ordinal);
}

/// <summary>
/// The only AWS control-plane calls RegistryDR makes. One interface so the official SDK clients
/// (AWSSDK.AutoScaling, AWSSDK.CloudFormation) can replace <see cref="AwsQueryControlPlane"/> in
/// one place once they can be referenced. Every call retries throttling and server errors within
/// the bound its implementation states, then throws <see cref="AwsApiException"/>.
/// </summary>
public interface IAwsControlPlane
{
    Task CompleteLifecycleActionAsync(LifecycleAction action, LifecycleActionResult result, CancellationToken cancellationToken);

    Task RecordLifecycleActionHeartbeatAsync(LifecycleAction action, CancellationToken cancellationToken);

    Task SignalResourceAsync(string stackName, string logicalResourceId, string uniqueId, ResourceSignalStatus status, CancellationToken cancellationToken);

    /// <summary>
    /// <c>DescribeAutoScalingInstances</c> with <c>InstanceIds = [instanceId]</c>: the group the
    /// instance belongs to and its lifecycle state, or null when it is in no Auto Scaling group
    /// (the API ignores unknown ids rather than failing).
    /// </summary>
    Task<AutoScalingInstance?> DescribeAutoScalingInstanceAsync(string instanceId, CancellationToken cancellationToken);
}

/// <summary>
/// An AWS API call failed: the service answered with an error (<see cref="ErrorCode"/> and
/// <see cref="StatusCode"/> from its answer), or it could not be reached or no credentials
/// could be found (then <see cref="StatusCode"/> is 0). The message never carries credentials
/// or signatures.
/// </summary>
public sealed class AwsApiException : Exception
{
    internal AwsApiException(string message, string? errorCode, int statusCode, Exception? innerException = null)
        : base(message, innerException)
    {
        ErrorCode = errorCode;
        StatusCode = statusCode;
    }

    /// <summary>The service's error code, e.g. <c>ValidationError</c>; null when there was no error document.</summary>
    public string? ErrorCode { get; }

    /// <summary>The HTTP status, or 0 when no answer was had.</summary>
    public int StatusCode { get; }

    /// <summary>
    /// The service refused the request as invalid in the current state (HTTP 400,
    /// <c>ValidationError</c>): for example "No active Lifecycle Action found with instance ID …"
    /// or "Stack … is in CREATE_COMPLETE state and cannot be signaled". Retrying cannot change it.
    /// </summary>
    public bool IsValidationError => ErrorCode == "ValidationError";
}
