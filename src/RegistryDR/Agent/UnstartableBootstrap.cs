using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using RegistryDR.Aws;
using RegistryDR.Configuration;

namespace RegistryDR.Agent;

/// <summary>
/// When <c>registry-dr bootstrap</c> cannot even start (its configuration is invalid), it still
/// tries to tell AWS, so that a stack create or update fails at once and the instance is abandoned
/// instead of waiting out the lifecycle hook's heartbeat timeout and the signal timeout.
/// </summary>
/// <remarks>
/// Only the <c>Agent</c> section is read, leniently: unknown keys are ignored and a value that does
/// not convert falls back to the default, because the configuration is already known to be wrong.
/// A file that cannot be parsed at all leaves the defaults (and <c>REGISTRYDR__Agent__…</c>
/// variables): the launch hook <c>registry-dr-launch</c>, the resource <c>RegistryGroup</c>, the
/// stack from the instance tag if metadata has tags. Every step is best effort and bounded (IMDS:
/// seconds; each AWS call: the client's retry bound); what could not be done is logged.
/// </remarks>
public static partial class UnstartableBootstrap
{
    /// <summary>The Agent options as well as they can be read from <paramref name="configPath"/> and the environment.</summary>
    public static AgentOptions ReadAgentOptions(string? configPath, ILogger logger)
    {
        var agent = new AgentOptions();
        IConfiguration configuration;
        try
        {
            configuration = new ConfigurationBuilder().AddRegistryDrSources(configPath).Build();
        }
        catch (Exception ex) when (ex is ConfigurationException or InvalidDataException or FormatException or IOException)
        {
            LogUnreadable(logger, ex.Message);
            configuration = new ConfigurationBuilder().AddEnvironmentVariables(RegistryDrConfiguration.EnvironmentPrefix).Build();
        }
        try
        {
            configuration.GetSection("Agent").Bind(agent);
        }
        catch (InvalidOperationException ex)
        {
            LogUnreadable(logger, ex.Message);
            agent = new AgentOptions();
        }
        var errors = new List<string>();
        AgentOptions.Validate(agent, errors);
        if (errors.Count > 0)
        {
            LogUnreadable(logger, string.Join("; ", errors));
            agent = new AgentOptions { StackName = agent.StackName, InstanceId = agent.InstanceId, Region = agent.Region, AutoScalingGroupName = agent.AutoScalingGroupName };
        }
        return agent;
    }

    /// <summary>
    /// Marks the node Failed in <c>Agent:StateFile</c> (so no backup is ever written from it), then
    /// sends ABANDON for the launch hook and FAILURE to the stack, as far as the node's identity can
    /// be found. Never throws for an AWS or metadata failure; returns what was achieved.
    /// </summary>
    public static async Task<(LifecycleActionOutcome Lifecycle, ResourceSignalOutcome Signal)> ReportAsync(
        AgentOptions agent, string reason, IInstanceMetadata metadata, Func<string, IAwsControlPlane> controlPlane, TimeProvider time, ILogger logger)
    {
        try
        {
            NodeStateFile.Write(agent.StateFile, new NodeState(NodeStatus.Failed, time.GetUtcNow(), null, agent.InstanceId, reason));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogStateNotWritten(logger, agent.StateFile, ex.Message);
        }
        NodeIdentityResolver.Resolved resolved;
        try
        {
            resolved = await new NodeIdentityResolver(agent, metadata, controlPlane, logger).ResolveAsync(CancellationToken.None);
        }
        catch (Exception ex) when (ex is InstanceMetadataUnavailableException or AwsApiException or ArgumentException)
        {
            LogNobodyToTell(logger, ex.Message);
            return (LifecycleActionOutcome.NotSent, ResourceSignalOutcome.NotSent);
        }
        var reporter = new LifecycleReporter(resolved.Aws, resolved.Identity, logger);
        var lifecycle = await reporter.CompleteAsync(reporter.ActionFor(agent.LifecycleHookName), LifecycleActionResult.Abandon, terminating: false, CancellationToken.None);
        var signal = await reporter.SignalAsync(agent.SignalResource, ResourceSignalStatus.Failure, CancellationToken.None);
        return (lifecycle, signal);
    }

    [LoggerMessage(4030, LogLevel.Warning, "Reading only the Agent settings to report the failure; using defaults where they are unusable: {Reason}")]
    private static partial void LogUnreadable(ILogger logger, string reason);

    [LoggerMessage(4031, LogLevel.Error, "Could not mark the node Failed in {StateFile}: {Reason}")]
    private static partial void LogStateNotWritten(ILogger logger, string stateFile, string reason);

    [LoggerMessage(4032, LogLevel.Error, "Could not tell AWS that the bootstrap cannot start (this instance's identity is unknown: {Reason}); the launch hook and the stack will time out")]
    private static partial void LogNobodyToTell(ILogger logger, string reason);
}
