namespace RegistryDR.Aws;

/// <summary>
/// Who this instance is. The stack and group names, when they come from instance metadata, come
/// from instance tags, which are only there when the launch template enables
/// <c>InstanceMetadataTags</c>; RegistryDR does not need that (the group comes from
/// <c>DescribeAutoScalingInstances</c>, the stack from <c>Agent:StackName</c>), so they may be null.
/// </summary>
public sealed record InstanceIdentity(string InstanceId, string Region, string? StackName, string? AutoScalingGroupName);

/// <summary>Reads <see cref="InstanceIdentity"/>; a seam so the agent can run off EC2 with configured values.</summary>
public interface IInstanceMetadata
{
    Task<InstanceIdentity> GetIdentityAsync(CancellationToken cancellationToken);

    /// <summary>
    /// <c>/latest/meta-data/autoscaling/target-lifecycle-state</c>: the state Auto Scaling is moving
    /// this instance to (<c>InService</c>, <c>Terminated</c>, <c>Standby</c>, <c>Detached</c>, or a
    /// <c>Warmed:*</c> state), as "Retrieve the target lifecycle state through instance metadata" in
    /// the Amazon EC2 Auto Scaling User Guide describes. Null when the item is absent (404: the
    /// instance is in no Auto Scaling group).
    /// </summary>
    /// <exception cref="InstanceMetadataUnavailableException">Metadata could not be read at all.</exception>
    Task<string?> GetTargetLifecycleStateAsync(CancellationToken cancellationToken);
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
