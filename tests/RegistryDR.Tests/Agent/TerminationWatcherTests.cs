using Microsoft.Extensions.Logging;
using RegistryDR.Agent;
using RegistryDR.Aws;
using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure.AwsStandIns;
using RegistryDR.Worker;

namespace RegistryDR.Tests.Agent;

/// <summary>
/// The worker's termination watch: when Auto Scaling is about to terminate the node, one final
/// backup, heartbeats while it runs, CONTINUE for the terminating hook, and no scheduled backup after.
/// Time (the metadata polls, the heartbeats, the hooks' timeouts) is a ManualTimeProvider.
/// </summary>
[TestClass]
public sealed class TerminationWatcherTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>Holds the manifest's upload (the last step of a backup) until released, and counts every upload.</summary>
    private sealed class GatedStore(IBackupStore inner, bool failManifest = false) : RegistryDR.Tests.Infrastructure.ForwardingStore(inner)
    {
        public readonly TaskCompletionSource ManifestReached = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Puts;

        public override string Description => Inner.Description;

        public override async Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Puts);
            if (key.EndsWith(BackupManifest.FileName, StringComparison.Ordinal))
            {
                ManifestReached.TrySetResult();
                await Release.Task.WaitAsync(cancellationToken);
                if (failManifest) throw new StoreUnavailableException($"{Description} refused '{key}' (test).");
            }
            return await Inner.PutAsync(key, content, cancellationToken);
        }

        public override Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken) => Inner.OpenReadAsync(key, cancellationToken);
        public override IAsyncEnumerable<StoreItem> ListAsync(string prefix, CancellationToken cancellationToken) => Inner.ListAsync(prefix, cancellationToken);
        public override Task DeleteAsync(string key, CancellationToken cancellationToken) => Inner.DeleteAsync(key, cancellationToken);
        public override Task CheckAccessAsync(CancellationToken cancellationToken) => Inner.CheckAccessAsync(cancellationToken);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"not within {Bound}: {what}");
            await Task.Delay(20);
        }
    }

    private static async Task<(TerminationWatcher Watcher, NodeRetirement Retirement)> StartWatcherAsync(AgentTestRig rig, IBackupStore store)
    {
        rig.Node.Options.Agent.HeartbeatInterval = TimeSpan.FromSeconds(60);
        rig.Node.Options.Agent.TargetLifecycleStatePollInterval = TimeSpan.FromSeconds(5);
        var retirement = new NodeRetirement();
        var watcher = new TerminationWatcher(rig.Node.Options, new InstanceMetadataClient(rig.Imds.Endpoint), rig.ControlPlane,
            new BackupService(rig.Node.Options, store, rig.Logs.CreateLogger<BackupService>(), TimeProvider.System),
            retirement, rig.Clock, rig.Logs.CreateLogger<TerminationWatcher>());
        await watcher.StartAsync(CancellationToken.None);
        // Polled once at start, and now waiting for the next poll.
        await WaitUntilAsync(() => rig.Imds.TargetLifecycleStateRequests >= 1 && rig.Clock.PendingTimers >= 1, "the first poll");
        return (watcher, retirement);
    }

    private static async Task InServiceAsync(AgentTestRig rig)
    {
        rig.Groups.Launch(AgentTestRig.GroupName, rig.InstanceId);
        await rig.ControlPlane(AgentTestRig.Region).CompleteLifecycleActionAsync(
            new LifecycleAction(AgentTestRig.GroupName, AgentTestRig.LaunchHook, rig.InstanceId), LifecycleActionResult.Continue, CancellationToken.None);
    }

    [TestMethod]
    public async Task Terminating_FinalBackupWithHeartbeats_ThenContinue_AndNothingScheduledAfter()
    {
        await using var rig = await AgentTestRig.StartAsync();
        await InServiceAsync(rig);
        var store = new GatedStore(rig.Node.CreateStore());
        var (watcher, retirement) = await StartWatcherAsync(rig, store);
        Assert.AreEqual(0, store.Puts, "no backup while the instance is in service");

        rig.Groups.Terminate(rig.InstanceId);
        Assert.AreEqual("Terminating:Wait", rig.Groups.LifecycleState(rig.InstanceId));
        rig.Clock.Advance(TimeSpan.FromSeconds(5));
        await store.ManifestReached.Task.WaitAsync(Bound);
        Assert.IsTrue(retirement.IsRetiring);

        // The final backup takes two heartbeat intervals: the terminating hook hears twice.
        for (var n = 1; n <= 2; n++)
        {
            rig.Clock.Advance(TimeSpan.FromSeconds(60));
            await WaitUntilAsync(() => rig.CallsOf("RecordLifecycleActionHeartbeat").Count == n, $"heartbeat {n}");
        }
        store.Release.TrySetResult();
        await watcher.ExecuteTask!.WaitAsync(Bound);

        var heartbeats = rig.CallsOf("RecordLifecycleActionHeartbeat");
        Assert.IsTrue(heartbeats.All(h => h.Accepted && h.Parameters["LifecycleHookName"] == AgentTestRig.TerminateHook && h.Parameters["InstanceId"] == rig.InstanceId));
        var complete = rig.CallsOf("CompleteLifecycleAction").Last();
        Assert.AreEqual(AgentTestRig.TerminateHook, complete.Parameters["LifecycleHookName"]);
        Assert.AreEqual("CONTINUE", complete.Parameters["LifecycleActionResult"]);
        Assert.IsTrue(complete.Accepted);
        Assert.AreEqual("Terminated", rig.Groups.LifecycleState(rig.InstanceId));
        Assert.AreEqual(new AutoScalingModel.FinishedAction(rig.InstanceId, AgentTestRig.TerminateHook, "CONTINUE", false, rig.Clock.GetUtcNow()), rig.Groups.FinishedActions[^1]);

        var sets = (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Where(s => s.IsComplete).Select(s => s.BackupId).ToList();
        Assert.HasCount(2, sets);
        Assert.AreEqual(rig.BackupId, sets[1]);
        Assert.IsGreaterThan(0, string.CompareOrdinal(sets[0], rig.BackupId), "the final backup is the newest set");
        StringAssert.Contains(rig.Logs.Text, $"Final backup {sets[0]} complete");
        // Retired for good: the gate stays shut, and a scheduled fire would find the node retiring.
        Assert.IsFalse(retirement.BackupGate.Wait(0));
    }

    [TestMethod]
    public async Task FinalBackupFails_LoggedAsCritical_TheHookIsStillCompleted_TheOlderSetRemains()
    {
        await using var rig = await AgentTestRig.StartAsync();
        await InServiceAsync(rig);
        var store = new GatedStore(rig.Node.CreateStore(), failManifest: true);
        store.Release.TrySetResult();
        var (watcher, _) = await StartWatcherAsync(rig, store);

        rig.Groups.Terminate(rig.InstanceId);
        rig.Clock.Advance(TimeSpan.FromSeconds(5));
        await watcher.ExecuteTask!.WaitAsync(Bound);

        var critical = rig.Logs.Entries.Single(e => e.Level == LogLevel.Critical);
        StringAssert.StartsWith(critical.Message, "FINAL BACKUP FAILED before termination: pushes since the previous backup are not in the store; the replacement restores the newest older set.");
        Assert.AreEqual("CONTINUE", rig.CallsOf("CompleteLifecycleAction").Last().Parameters["LifecycleActionResult"]);
        Assert.AreEqual("Terminated", rig.Groups.LifecycleState(rig.InstanceId));
        var complete = (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Where(s => s.IsComplete).Select(s => s.BackupId).ToList();
        CollectionAssert.AreEqual(new[] { rig.BackupId }, complete);
    }

    [TestMethod]
    public async Task ARunningBackup_IsWaitedFor_ThenTheFinalOneStarts()
    {
        await using var rig = await AgentTestRig.StartAsync();
        await InServiceAsync(rig);
        var store = new GatedStore(rig.Node.CreateStore());
        store.Release.TrySetResult();
        var (watcher, retirement) = await StartWatcherAsync(rig, store);
        // A scheduled backup holds the gate (BackupJob does exactly this while it runs).
        await retirement.BackupGate.WaitAsync();

        rig.Groups.Terminate(rig.InstanceId);
        rig.Clock.Advance(TimeSpan.FromSeconds(5));
        await WaitUntilAsync(() => retirement.IsRetiring, "termination noticed");
        await WaitUntilAsync(() => rig.Logs.Text.Contains("Auto Scaling is terminating this instance", StringComparison.Ordinal), "the notice logged");
        Assert.AreEqual(0, store.Puts, "no second backup beside the running one");
        Assert.IsFalse(watcher.ExecuteTask!.IsCompleted);

        retirement.BackupGate.Release();
        await watcher.ExecuteTask.WaitAsync(Bound);
        Assert.IsGreaterThan(0, store.Puts);
        Assert.HasCount(2, (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Where(s => s.IsComplete).ToList());
        Assert.AreEqual("Terminated", rig.Groups.LifecycleState(rig.InstanceId));
    }

    [TestMethod]
    public async Task NotInAnAutoScalingGroup_NothingHappens()
    {
        await using var rig = await AgentTestRig.StartAsync();
        rig.Imds.TargetLifecycleState = () => null; // 404: the item only exists for Auto Scaling instances
        var store = new GatedStore(rig.Node.CreateStore());
        var (watcher, retirement) = await StartWatcherAsync(rig, store);

        for (var n = 2; n <= 4; n++)
        {
            rig.Clock.Advance(TimeSpan.FromSeconds(5));
            await WaitUntilAsync(() => rig.Imds.TargetLifecycleStateRequests == n && rig.Clock.PendingTimers == 1, $"poll {n}");
        }
        await watcher.StopAsync(CancellationToken.None);

        Assert.AreEqual(0, rig.AutoScaling.RequestCount);
        Assert.AreEqual(0, store.Puts);
        Assert.IsFalse(retirement.IsRetiring);
        Assert.AreEqual(1, rig.Logs.Entries.Count(e => e.Message.StartsWith("This instance is in no Auto Scaling group", StringComparison.Ordinal)));
    }
}
