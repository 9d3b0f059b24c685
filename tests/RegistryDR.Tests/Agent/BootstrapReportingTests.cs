using RegistryDR.Agent;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Agent;

/// <summary>
/// What the bootstrap agent tells Auto Scaling and CloudFormation over a stack's life, against
/// stand-ins that answer as the services do, and what it makes of their answers.
/// </summary>
[TestClass]
public sealed class BootstrapReportingTests
{
    /// <summary>Runs <paramref name="onFirstRead"/> when the restore first reads from the store.</summary>
    private sealed class ClockAdvancingStore(RegistryDR.Stores.IBackupStore inner, Action onFirstRead) : RegistryDR.Tests.Infrastructure.ForwardingStore(inner)
    {
        private int _reads;
        public override string Description => Inner.Description;
        public override Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken) => Inner.PutAsync(key, content, cancellationToken);
        public override Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref _reads) == 1) onFirstRead();
            return Inner.OpenReadAsync(key, cancellationToken);
        }
        public override IAsyncEnumerable<RegistryDR.Stores.StoreItem> ListAsync(string prefix, CancellationToken cancellationToken) => Inner.ListAsync(prefix, cancellationToken);
        public override Task DeleteAsync(string key, CancellationToken cancellationToken) => Inner.DeleteAsync(key, cancellationToken);
        public override Task CheckAccessAsync(CancellationToken cancellationToken) => Inner.CheckAccessAsync(cancellationToken);
        public override Task<bool> TryCreateAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken) => Inner.TryCreateAsync(key, content, cancellationToken);
        public override bool CreateIsAtomic => Inner.CreateIsAtomic;
    }

    [TestMethod]
    public async Task StackCreate_NoInstanceTags_GroupFromDescribe_StackFromConfig_BothAccepted()
    {
        await using var rig = await AgentTestRig.StartAsync();
        rig.Stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        rig.Groups.Launch(AgentTestRig.GroupName, rig.InstanceId);

        var result = await rig.Agent().RunAsync(CancellationToken.None);

        Assert.AreEqual(NodeStatus.Restored, result.Status);
        Assert.AreEqual(rig.BackupId, result.BackupId);
        Assert.AreEqual(new RegistryDR.Aws.InstanceIdentity(rig.InstanceId, AgentTestRig.Region, AgentTestRig.StackName, AgentTestRig.GroupName), result.Identity);
        Assert.AreEqual(LifecycleActionOutcome.Completed, result.Lifecycle);
        Assert.AreEqual(ResourceSignalOutcome.Accepted, result.Signal);
        // The group came from DescribeAutoScalingInstances for this instance, not from tags.
        var describe = rig.CallsOf("DescribeAutoScalingInstances").Single();
        Assert.AreEqual(rig.InstanceId, describe.Parameters["InstanceIds.member.1"]);
        Assert.AreEqual(4, rig.Imds.MetadataRequests, "instance id, region and the two optional tags (both 404) were read, nothing else");
        var complete = rig.CallsOf("CompleteLifecycleAction").Single();
        Assert.AreEqual(AgentTestRig.GroupName, complete.Parameters["AutoScalingGroupName"]);
        Assert.AreEqual("CONTINUE", complete.Parameters["LifecycleActionResult"]);
        var signal = rig.CallsOf("SignalResource").Single();
        Assert.AreEqual(AgentTestRig.StackName, signal.Parameters["StackName"]);
        Assert.AreEqual(rig.InstanceId, signal.Parameters["UniqueId"]);
        Assert.IsTrue(complete.Accepted && signal.Accepted);
        // Completed first, then signalled: CloudFormation hears of an instance already in service.
        Assert.AreEqual("InService", rig.Groups.LifecycleState(rig.InstanceId));
        Assert.AreEqual(CloudFormationModel.CreateComplete, rig.Stack.Status);
        Assert.AreEqual(NodeStatus.Restored, rig.State.Status);
    }

    [TestMethod]
    public async Task UnplannedReplacement_SignalRefusedBecauseTheStackIsComplete_NodeStaysRestored()
    {
        await using var rig = await AgentTestRig.StartAsync();
        rig.Stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        rig.Groups.Launch(AgentTestRig.GroupName, "i-0000000000000first");
        await rig.ControlPlane(AgentTestRig.Region).SignalResourceAsync(AgentTestRig.StackName, "RegistryGroup", "i-0000000000000first", RegistryDR.Aws.ResourceSignalStatus.Success, CancellationToken.None);
        // The first node dies; the group launches a replacement on its own, outside any stack operation.
        rig.Groups.Kill("i-0000000000000first");
        rig.Groups.Launch(AgentTestRig.GroupName, rig.InstanceId);

        var result = await rig.Agent().RunAsync(CancellationToken.None);

        Assert.AreEqual(NodeStatus.Restored, result.Status);
        Assert.AreEqual(LifecycleActionOutcome.Completed, result.Lifecycle);
        Assert.AreEqual(ResourceSignalOutcome.NotWaiting, result.Signal);
        Assert.AreEqual(NodeStatus.Restored, rig.State.Status);
        Assert.AreEqual(rig.BackupId, rig.State.BackupId);
        Assert.AreEqual("InService", rig.Groups.LifecycleState(rig.InstanceId));
        var refused = rig.CallsOf("SignalResource").Single(c => c.Parameters["UniqueId"] == rig.InstanceId);
        Assert.AreEqual($"ValidationError: Stack {rig.Stack.StackId} is in CREATE_COMPLETE state and cannot be signaled", refused.Refusal);
        Assert.AreEqual(CloudFormationModel.CreateComplete, rig.Stack.Status);
        // Said at information level, not as a failure.
        var line = rig.Logs.Entries.Single(e => e.Message.StartsWith("CloudFormation is not waiting for a signal", StringComparison.Ordinal));
        Assert.AreEqual(Microsoft.Extensions.Logging.LogLevel.Information, line.Level);
        Assert.IsFalse(rig.Logs.Entries.Any(e => e.Level >= Microsoft.Extensions.Logging.LogLevel.Error), rig.Logs.Text);
    }

    [TestMethod]
    public async Task CompleteLifecycleAction_FirstAnswerLost_RetryFindsNoActiveAction_IsCompleted()
    {
        await using var rig = await AgentTestRig.StartAsync();
        rig.Stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        rig.Groups.Launch(AgentTestRig.GroupName, rig.InstanceId);
        rig.AutoScaling.FailNext(1, InjectedFailure.AnswerLost, "CompleteLifecycleAction");

        var result = await rig.Agent().RunAsync(CancellationToken.None);

        Assert.AreEqual(NodeStatus.Restored, result.Status);
        Assert.AreEqual(LifecycleActionOutcome.AlreadyCompleted, result.Lifecycle, rig.Logs.Text);
        Assert.AreEqual(ResourceSignalOutcome.Accepted, result.Signal);
        var completions = rig.CallsOf("CompleteLifecycleAction");
        Assert.HasCount(2, completions);
        Assert.IsNull(completions[0].Refusal, "the first try was carried out; only its answer was lost");
        Assert.AreEqual($"ValidationError: No active Lifecycle Action found with instance ID {rig.InstanceId}", completions[1].Refusal);
        Assert.HasCount(1, rig.Groups.FinishedActions);
        Assert.AreEqual("InService", rig.Groups.LifecycleState(rig.InstanceId));
        Assert.AreEqual(CloudFormationModel.CreateComplete, rig.Stack.Status);
        Assert.AreEqual(NodeStatus.Restored, rig.State.Status);
    }

    [TestMethod]
    public async Task ThrottledCalls_AreRetried_ThenAccepted()
    {
        await using var rig = await AgentTestRig.StartAsync();
        rig.Stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        rig.Groups.Launch(AgentTestRig.GroupName, rig.InstanceId);
        rig.AutoScaling.FailNext(3, InjectedFailure.Throttling, "CompleteLifecycleAction");
        rig.CloudFormation.FailNext(3, InjectedFailure.RequestLimitExceeded, "SignalResource");

        var result = await rig.Agent().RunAsync(CancellationToken.None);

        Assert.AreEqual(LifecycleActionOutcome.Completed, result.Lifecycle);
        Assert.AreEqual(ResourceSignalOutcome.Accepted, result.Signal);
        Assert.HasCount(1, rig.CallsOf("CompleteLifecycleAction"), "throttled tries never reach the service's state");
        Assert.AreEqual(CloudFormationModel.CreateComplete, rig.Stack.Status);
        Assert.AreEqual(4, rig.CloudFormation.RequestCount);
    }

    [TestMethod]
    public async Task LaunchHookTimedOut_ContinueNotAccepted_SignalsFailure_NodeStateStaysRestored()
    {
        await using var rig = await AgentTestRig.StartAsync();
        rig.Stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        rig.Groups.Launch(AgentTestRig.GroupName, rig.InstanceId);
        // The restore outlives the hook (no heartbeat got through): once it has begun reading the
        // backup, the hook's 1800 s pass and DefaultResult ABANDON is applied.
        var store = new ClockAdvancingStore(rig.Node.CreateStore(), () => rig.Clock.Advance(TimeSpan.FromSeconds(1800)));

        var ex = await Assert.ThrowsExactlyAsync<LifecycleActionNotCompletedException>(() => rig.Agent(store).RunAsync(CancellationToken.None));

        Assert.AreEqual(NodeStatus.Restored, ex.Result.Status);
        Assert.AreEqual(LifecycleActionOutcome.NotCompleted, ex.Result.Lifecycle);
        Assert.AreEqual(ResourceSignalOutcome.Accepted, ex.Result.Signal);
        StringAssert.StartsWith(ex.Message, $"Restored backup {rig.BackupId}, but Auto Scaling did not accept CONTINUE for lifecycle hook registry-dr-launch of group {AgentTestRig.GroupName}");
        Assert.AreEqual("FAILURE", rig.CallsOf("SignalResource").Single().Parameters["Status"]);
        Assert.AreEqual(CloudFormationModel.RollbackInProgress, rig.Stack.Status, "the create fails now, not at its 60-minute timeout");
        Assert.AreEqual(NodeStatus.Restored, rig.State.Status);
    }

    [TestMethod]
    public async Task EmptyStore_AbandonAndFailure_DuringAnUnplannedReplacement_TheRefusedSignalIsNotAnError()
    {
        await using var rig = await AgentTestRig.StartAsync();
        rig.Node.Options.Store.Url = "file://" + Path.Combine(rig.StoreDirectory.Path, "empty");
        Directory.CreateDirectory(Path.Combine(rig.StoreDirectory.Path, "empty"));
        rig.Stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        await rig.ControlPlane(AgentTestRig.Region).SignalResourceAsync(AgentTestRig.StackName, "RegistryGroup", "i-0000000000000first", RegistryDR.Aws.ResourceSignalStatus.Success, CancellationToken.None);
        rig.Groups.Launch(AgentTestRig.GroupName, rig.InstanceId);

        var ex = await Assert.ThrowsExactlyAsync<BootstrapFailedException>(() =>
            new BootstrapAgent(rig.Node.Options, RegistryDR.Stores.BackupStoreFactory.Create(rig.Node.Options.Store), new RegistryDR.Aws.InstanceMetadataClient(rig.Imds.Endpoint),
                rig.ControlPlane, rig.Logs, TimeProvider.System).RunAsync(CancellationToken.None));

        StringAssert.Contains(ex.Message, "holds no complete backup");
        Assert.AreEqual(NodeStatus.Failed, rig.State.Status);
        Assert.AreEqual("ABANDON", rig.CallsOf("CompleteLifecycleAction").Single().Parameters["LifecycleActionResult"]);
        Assert.AreEqual("Terminated", rig.Groups.LifecycleState(rig.InstanceId));
        var failure = rig.CallsOf("SignalResource").Last();
        Assert.AreEqual("FAILURE", failure.Parameters["Status"]);
        Assert.AreEqual($"ValidationError: Stack {rig.Stack.StackId} is in CREATE_COMPLETE state and cannot be signaled", failure.Refusal);
    }
}
