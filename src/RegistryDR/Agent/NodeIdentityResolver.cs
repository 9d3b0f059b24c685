using Microsoft.Extensions.Logging;
using RegistryDR.Aws;
using RegistryDR.Configuration;

namespace RegistryDR.Agent;

/// <summary>
/// Who this node is, for the bootstrap agent and the worker's termination watch: instance id and
/// region from <c>Agent:</c> settings or instance metadata; the Auto Scaling group from
/// <c>Agent:AutoScalingGroupName</c>, else <c>DescribeAutoScalingInstances</c> for this instance, else
/// the instance tag when metadata has tags; the stack from <c>Agent:StackName</c>, else the tag.
/// </summary>
/// <remarks>
/// Instance tags in metadata are only a fallback: turning <c>InstanceMetadataTags</c> on makes
/// launches fail when any tag key holds a space or '/', and the stack's propagated tags are not
/// ours to police.
/// </remarks>
internal sealed partial class NodeIdentityResolver(AgentOptions agent, IInstanceMetadata metadata, Func<string, IAwsControlPlane> controlPlane, ILogger logger)
{
    /// <summary>The node, and what Auto Scaling said about it (null when it was not asked — the group is configured — or the instance is in no group).</summary>
    public sealed record Resolved(InstanceIdentity Identity, IAwsControlPlane Aws, AutoScalingInstance? AutoScaling);

    /// <exception cref="InstanceMetadataUnavailableException">Instance id or region are not configured and metadata cannot be read.</exception>
    public async Task<Resolved> ResolveAsync(CancellationToken cancellationToken)
    {
        InstanceIdentity? imds = null;
        if (string.IsNullOrEmpty(agent.InstanceId) || string.IsNullOrEmpty(agent.Region) ||
            (agent.StackName is null && !string.IsNullOrEmpty(agent.SignalResource)))
        {
            try
            {
                imds = await metadata.GetIdentityAsync(cancellationToken);
            }
            catch (InstanceMetadataUnavailableException) when (!string.IsNullOrEmpty(agent.InstanceId) && !string.IsNullOrEmpty(agent.Region))
            {
                // Only the stack tag was wanted from metadata; without it no signal is sent (logged by the caller).
            }
        }
        var instanceId = string.IsNullOrEmpty(agent.InstanceId) ? imds!.InstanceId : agent.InstanceId;
        var region = string.IsNullOrEmpty(agent.Region) ? imds!.Region : agent.Region;
        var aws = controlPlane(region);

        AutoScalingInstance? described = null;
        var group = agent.AutoScalingGroupName;
        var wantsGroup = !string.IsNullOrEmpty(agent.LifecycleHookName) || !string.IsNullOrEmpty(agent.TerminationHookName);
        if (wantsGroup && group is null)
        {
            try
            {
                described = await aws.DescribeAutoScalingInstanceAsync(instanceId, cancellationToken);
                if (described is null) LogNotInAGroup(instanceId);
            }
            catch (AwsApiException ex)
            {
                // Not fatal by itself: a configured group or the tag may still name it.
                LogDescribeFailed(ex, instanceId, ex.Message);
            }
            group ??= described?.AutoScalingGroupName ?? imds?.AutoScalingGroupName;
        }
        return new Resolved(new InstanceIdentity(instanceId, region, agent.StackName ?? imds?.StackName, group), aws, described);
    }

    [LoggerMessage(4020, LogLevel.Information, "Instance {InstanceId} is in no Auto Scaling group (DescribeAutoScalingInstances returned nothing for it): no lifecycle action will be sent")]
    private partial void LogNotInAGroup(string instanceId);

    [LoggerMessage(4021, LogLevel.Warning, "Could not ask Auto Scaling which group instance {InstanceId} is in (the role needs autoscaling:DescribeAutoScalingInstances): {Reason}")]
    private partial void LogDescribeFailed(Exception ex, string instanceId, string reason);
}
