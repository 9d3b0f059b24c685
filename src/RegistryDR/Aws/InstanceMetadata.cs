namespace RegistryDR.Aws;

/// <summary>
/// Who this instance is, as EC2 instance metadata tells it. The stack and group names come
/// from instance tags, which are only in metadata when the launch template allows it, so they
/// may be null even inside a stack's Auto Scaling group.
/// </summary>
public sealed record InstanceIdentity(string InstanceId, string Region, string? StackName, string? AutoScalingGroupName);

/// <summary>Reads <see cref="InstanceIdentity"/>; a seam so the agent can run off EC2 with configured values.</summary>
public interface IInstanceMetadata
{
    Task<InstanceIdentity> GetIdentityAsync(CancellationToken cancellationToken);
}

/// <summary>
/// Instance metadata could not be read: not on EC2, IMDS turned off or v1-only, a hop limit
/// that drops the answers, or an unexpected answer. The message says which and what to do.
/// </summary>
public sealed class InstanceMetadataUnavailableException : Exception
{
    internal InstanceMetadataUnavailableException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}
