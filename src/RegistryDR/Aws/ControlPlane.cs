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
/// The only AWS control-plane calls the bootstrap agent makes. One interface so the official
/// SDK clients (AWSSDK.AutoScaling, AWSSDK.CloudFormation) can replace
/// <see cref="AwsQueryControlPlane"/> in one place once they can be referenced.
/// </summary>
public interface IAwsControlPlane
{
    Task CompleteLifecycleActionAsync(LifecycleAction action, LifecycleActionResult result, CancellationToken cancellationToken);

    Task RecordLifecycleActionHeartbeatAsync(LifecycleAction action, CancellationToken cancellationToken);

    Task SignalResourceAsync(string stackName, string logicalResourceId, string uniqueId, ResourceSignalStatus status, CancellationToken cancellationToken);
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
}
