using RegistryDR.Aws;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Aws;

/// <summary>
/// The Auto Scaling and CloudFormation stand-ins answer as the real services do over a stack's
/// life (the pages each behaviour follows are named in AutoScalingModel and CloudFormationModel),
/// driven through RegistryDR's own client so that what the agent sees is what is checked.
/// </summary>
[TestClass]
public sealed class AwsStandInBehaviourTests
{
    private const string Group = "registry-prod-registry";
    private const string Instance = "i-0a1b2c3d4e5f60718";
    private static readonly DateTimeOffset Start = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan HeartbeatTimeout = TimeSpan.FromSeconds(1800);

    private static AwsQueryControlPlane Client(AwsQueryStandIn? autoScaling, AwsQueryStandIn? cloudFormation, int maxAttempts = 8) =>
        new(AwsTestKeys.Region, AwsTestKeys.Sdk(AwsTestKeys.Long), autoScaling?.Endpoint, cloudFormation?.Endpoint)
        {
            MaxAttempts = maxAttempts,
            RetryBaseDelay = TimeSpan.FromMilliseconds(5),
            RetryMaxDelay = TimeSpan.FromMilliseconds(20),
        };

    private static (AutoScalingModel Model, ManualTimeProvider Clock) Groups(string defaultResult = "ABANDON")
    {
        var clock = new ManualTimeProvider(Start);
        var model = new AutoScalingModel(clock);
        model.AddGroup(Group,
            new AutoScalingModel.Hook("registry-dr-launch", AutoScalingModel.Launching, HeartbeatTimeout, defaultResult),
            new AutoScalingModel.Hook("registry-dr-terminate", AutoScalingModel.Terminating, HeartbeatTimeout, "CONTINUE"));
        return (model, clock);
    }

    private static LifecycleAction Launch => new(Group, "registry-dr-launch", Instance);

    [TestMethod]
    public async Task CompleteLifecycleAction_PutsTheInstanceInService_AndASecondCompletionFindsNoActiveAction()
    {
        var (model, _) = Groups();
        model.Launch(Group, Instance);
        await using var asg = AwsQueryStandIn.StartAutoScaling(model, AwsTestKeys.Region, AwsTestKeys.Long);
        var client = Client(asg, null);
        Assert.AreEqual("Pending:Wait", model.LifecycleState(Instance));
        Assert.AreEqual("InService", model.TargetLifecycleState(Instance));

        await client.CompleteLifecycleActionAsync(Launch, LifecycleActionResult.Continue, CancellationToken.None);
        Assert.AreEqual("InService", model.LifecycleState(Instance));

        var again = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.CompleteLifecycleActionAsync(Launch, LifecycleActionResult.Continue, CancellationToken.None));
        Assert.AreEqual(400, again.StatusCode);
        Assert.AreEqual("ValidationError", again.ErrorCode);
        Assert.AreEqual($"AutoScaling CompleteLifecycleAction failed: ValidationError (HTTP 400): No active Lifecycle Action found with instance ID {Instance}", again.Message);
        var heartbeat = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.RecordLifecycleActionHeartbeatAsync(Launch, CancellationToken.None));
        Assert.AreEqual($"AutoScaling RecordLifecycleActionHeartbeat failed: ValidationError (HTTP 400): No active Lifecycle Action found with instance ID {Instance}", heartbeat.Message);
        Assert.AreEqual(3, asg.RequestCount, "a ValidationError is not retried");
        CollectionAssert.AreEqual(new[] { new AutoScalingModel.FinishedAction(Instance, "registry-dr-launch", "CONTINUE", false, Start) }, model.FinishedActions.ToArray());
    }

    [TestMethod]
    public async Task HeartbeatTimeout_AppliesTheDefaultResult_AndHeartbeatsExtendItUpToTheGlobalTimeout()
    {
        var (model, clock) = Groups();
        model.Launch(Group, Instance);
        await using var asg = AwsQueryStandIn.StartAutoScaling(model, AwsTestKeys.Region, AwsTestKeys.Long);
        var client = Client(asg, null);

        // Each heartbeat restarts the 1800 s: 101 of them, 1700 s apart, keep the action waiting for 47.7 h.
        for (var i = 0; i < 101; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(1700));
            await client.RecordLifecycleActionHeartbeatAsync(Launch, CancellationToken.None);
        }
        Assert.AreEqual("Pending:Wait", model.LifecycleState(Instance));
        // The global timeout, min(100 × 1800 s, 48 h) = 48 h after the wait began, ends it although the last heartbeat asked for longer.
        clock.Advance(TimeSpan.FromSeconds(172800 - 101 * 1700 - 1));
        Assert.AreEqual("Pending:Wait", model.LifecycleState(Instance));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.AreEqual("Terminated", model.LifecycleState(Instance), "DefaultResult ABANDON at the global timeout terminates the launching instance");
        CollectionAssert.AreEqual(new[] { new AutoScalingModel.FinishedAction(Instance, "registry-dr-launch", "ABANDON", true, Start + AutoScalingModel.MaxGlobalTimeout) },
            model.FinishedActions.ToArray());
        Assert.AreEqual(TimeSpan.FromSeconds(6000), new AutoScalingModel.Hook("short", AutoScalingModel.Launching, TimeSpan.FromSeconds(60), "ABANDON").GlobalTimeout);
        var late = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.CompleteLifecycleActionAsync(Launch, LifecycleActionResult.Continue, CancellationToken.None));
        StringAssert.EndsWith(late.Message, $"No active Lifecycle Action found with instance ID {Instance}");

        // Without heartbeats the action ends after exactly HeartbeatTimeout, with DefaultResult CONTINUE here.
        var (quiet, quietClock) = Groups(defaultResult: "CONTINUE");
        quiet.Launch(Group, Instance);
        quietClock.Advance(HeartbeatTimeout - TimeSpan.FromSeconds(1));
        Assert.AreEqual("Pending:Wait", quiet.LifecycleState(Instance));
        quietClock.Advance(TimeSpan.FromSeconds(1));
        Assert.AreEqual("InService", quiet.LifecycleState(Instance));
        Assert.IsTrue(quiet.FinishedActions.Single().TimedOut);
    }

    [TestMethod]
    public async Task Terminating_WaitsOnTheTerminatingHook_TargetStateTerminated_DescribeShowsTheState()
    {
        var (model, _) = Groups();
        model.Launch(Group, Instance);
        await using var asg = AwsQueryStandIn.StartAutoScaling(model, AwsTestKeys.Region, AwsTestKeys.Long);
        var client = Client(asg, null);
        await client.CompleteLifecycleActionAsync(Launch, LifecycleActionResult.Continue, CancellationToken.None);
        Assert.AreEqual(new AutoScalingInstance(Instance, Group, "InService", "HEALTHY"), await client.DescribeAutoScalingInstanceAsync(Instance, CancellationToken.None));

        model.Terminate(Instance);
        Assert.AreEqual("Terminated", model.TargetLifecycleState(Instance));
        Assert.AreEqual(new AutoScalingInstance(Instance, Group, "Terminating:Wait", "HEALTHY"), await client.DescribeAutoScalingInstanceAsync(Instance, CancellationToken.None));
        await client.CompleteLifecycleActionAsync(new LifecycleAction(Group, "registry-dr-terminate", Instance), LifecycleActionResult.Continue, CancellationToken.None);
        Assert.AreEqual("Terminated", model.LifecycleState(Instance));
        // A terminated instance, and an id the group never had, are simply not in the answer.
        Assert.IsNull(await client.DescribeAutoScalingInstanceAsync(Instance, CancellationToken.None));
        Assert.IsNull(await client.DescribeAutoScalingInstanceAsync("i-0ffffffffffffffff", CancellationToken.None));
        var describe = asg.Calls.Last(c => c.Action == "DescribeAutoScalingInstances");
        CollectionAssert.AreEquivalent(new Dictionary<string, string>
        {
            ["Action"] = "DescribeAutoScalingInstances",
            ["Version"] = "2011-01-01",
            ["InstanceIds.member.1"] = "i-0ffffffffffffffff",
        }, describe.Parameters.ToDictionary());
    }

    [TestMethod]
    public async Task SignalResource_AcceptedWhileTheCreateWaits_RefusedOnceComplete_AndForASecondSignal()
    {
        var clock = new ManualTimeProvider(Start);
        var stack = new CloudFormationModel("registry-prod", AwsTestKeys.Region, clock);
        stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        await using var cfn = AwsQueryStandIn.StartCloudFormation(stack, AwsTestKeys.Region, AwsTestKeys.Long);
        var client = Client(null, cfn);

        await client.SignalResourceAsync("registry-prod", "RegistryGroup", Instance, ResourceSignalStatus.Success, CancellationToken.None);
        Assert.AreEqual(CloudFormationModel.CreateComplete, stack.Status);

        // The stack created, the group replaces a dead node: nothing waits for its signal.
        var unplanned = await Assert.ThrowsExactlyAsync<AwsApiException>(() =>
            client.SignalResourceAsync("registry-prod", "RegistryGroup", "i-0second000000000", ResourceSignalStatus.Success, CancellationToken.None));
        Assert.AreEqual("ValidationError", unplanned.ErrorCode);
        Assert.AreEqual($"CloudFormation SignalResource failed: ValidationError (HTTP 400): Stack {stack.StackId} is in CREATE_COMPLETE state and cannot be signaled", unplanned.Message);

        // An update that does not replace the group waits for no signal either.
        stack.BeginUpdate(replacing: null, 0, TimeSpan.Zero);
        var unrelated = await Assert.ThrowsExactlyAsync<AwsApiException>(() =>
            client.SignalResourceAsync(stack.StackId, "RegistryGroup", "i-0second000000000", ResourceSignalStatus.Success, CancellationToken.None));
        StringAssert.EndsWith(unrelated.Message, "Resource RegistryGroup is in CREATE_COMPLETE state and cannot be signaled");
        stack.FinishUpdateWithoutSignals();
        Assert.AreEqual(CloudFormationModel.UpdateComplete, stack.Status);

        // A rolling update waits for the new batch; the same UniqueId twice is refused.
        stack.BeginUpdate("RegistryGroup", 2, TimeSpan.FromMinutes(60));
        await client.SignalResourceAsync("registry-prod", "RegistryGroup", "i-0third0000000000", ResourceSignalStatus.Success, CancellationToken.None);
        var twice = await Assert.ThrowsExactlyAsync<AwsApiException>(() =>
            client.SignalResourceAsync("registry-prod", "RegistryGroup", "i-0third0000000000", ResourceSignalStatus.Success, CancellationToken.None));
        StringAssert.EndsWith(twice.Message, "Signal with ID i-0third0000000000 for resource RegistryGroup already exists.");
        Assert.AreEqual(CloudFormationModel.UpdateInProgress, stack.Status);
        await client.SignalResourceAsync("registry-prod", "RegistryGroup", "i-0fourth000000000", ResourceSignalStatus.Success, CancellationToken.None);
        Assert.AreEqual(CloudFormationModel.UpdateComplete, stack.Status);

        var unknown = await Assert.ThrowsExactlyAsync<AwsApiException>(() =>
            client.SignalResourceAsync("registry-other", "RegistryGroup", Instance, ResourceSignalStatus.Success, CancellationToken.None));
        StringAssert.EndsWith(unknown.Message, "Stack with id registry-other does not exist");
        CollectionAssert.AreEqual(new[] { true, false, false, true, false, true, false },
            stack.Signals.Select(s => s.Refusal is null).ToArray());
    }

    [TestMethod]
    public async Task SignalTimeoutOrFailure_RollsTheStackBack()
    {
        var clock = new ManualTimeProvider(Start);
        var stack = new CloudFormationModel("registry-prod", AwsTestKeys.Region, clock);
        stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        clock.Advance(TimeSpan.FromMinutes(60));
        Assert.AreEqual(CloudFormationModel.RollbackInProgress, stack.Status);
        Assert.AreEqual(CloudFormationModel.CreateFailed, stack.ResourceStatus("RegistryGroup"));

        var updated = new CloudFormationModel("registry-prod", AwsTestKeys.Region, clock);
        updated.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        await using var cfn = AwsQueryStandIn.StartCloudFormation(updated, AwsTestKeys.Region, AwsTestKeys.Long);
        var client = Client(null, cfn);
        await client.SignalResourceAsync("registry-prod", "RegistryGroup", Instance, ResourceSignalStatus.Success, CancellationToken.None);
        updated.BeginUpdate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        await client.SignalResourceAsync("registry-prod", "RegistryGroup", "i-0second000000000", ResourceSignalStatus.Failure, CancellationToken.None);
        Assert.AreEqual(CloudFormationModel.UpdateRollbackInProgress, updated.Status);
        Assert.AreEqual(CloudFormationModel.UpdateFailed, updated.ResourceStatus("RegistryGroup"));
    }

    [TestMethod]
    public async Task ThrottlingForAWhile_FailsCallsUntilItEnds_AndTheClientRetriesThrough()
    {
        var (model, clock) = Groups();
        model.Launch(Group, Instance);
        await using var asg = AwsQueryStandIn.StartAutoScaling(model, AwsTestKeys.Region, AwsTestKeys.Long);
        asg.ThrottleFor(TimeSpan.FromSeconds(30));

        var throttled = await Assert.ThrowsExactlyAsync<AwsApiException>(() =>
            Client(asg, null, maxAttempts: 3).CompleteLifecycleActionAsync(Launch, LifecycleActionResult.Continue, CancellationToken.None));
        Assert.AreEqual("AutoScaling CompleteLifecycleAction failed: Throttling (HTTP 400): Rate exceeded", throttled.Message);
        Assert.AreEqual(3, asg.RequestCount);
        Assert.AreEqual("Pending:Wait", model.LifecycleState(Instance));

        clock.Advance(TimeSpan.FromSeconds(30));
        asg.FailNext(4, InjectedFailure.RequestLimitExceeded, "CompleteLifecycleAction");
        await Client(asg, null).CompleteLifecycleActionAsync(Launch, LifecycleActionResult.Continue, CancellationToken.None);
        Assert.AreEqual(3 + 5, asg.RequestCount, "four RequestLimitExceeded answers, then the call that was accepted");
        Assert.AreEqual("InService", model.LifecycleState(Instance));
    }
}
