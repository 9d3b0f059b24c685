using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Agent;
using RegistryDR.Aws;
using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Agent;

/// <summary>A long restore keeps the launch lifecycle hook alive with heartbeats, and stops sending them once it is done.</summary>
[TestClass]
public sealed class HeartbeatTests
{
    /// <summary>Makes every download slow, so the restore outlasts several heartbeat intervals.</summary>
    private sealed class SlowReadStore(IBackupStore inner, TimeSpan delay) : RegistryDR.Tests.Infrastructure.ForwardingStore(inner)
    {
        public override string Description => Inner.Description;
        public override Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken) => Inner.PutAsync(key, content, cancellationToken);
        public override async Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken)
        {
            await Task.Delay(delay, cancellationToken);
            return await Inner.OpenReadAsync(key, cancellationToken);
        }
        public override IAsyncEnumerable<StoreItem> ListAsync(string prefix, CancellationToken cancellationToken) => Inner.ListAsync(prefix, cancellationToken);
        public override Task DeleteAsync(string key, CancellationToken cancellationToken) => Inner.DeleteAsync(key, cancellationToken);
        public override Task CheckAccessAsync(CancellationToken cancellationToken) => Inner.CheckAccessAsync(cancellationToken);
        public override Task<bool> TryCreateAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken) => Inner.TryCreateAsync(key, content, cancellationToken);
        public override bool CreateIsAtomic => Inner.CreateIsAtomic;
    }

    [TestMethod]
    public async Task ALongRestore_SendsHeartbeats_ThenCompletesTheLifecycleActionOnce()
    {
        using var storeScope = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeScope.Path);
        await new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();

        var credentials = new StandInCredentials(CephS3Server.TestAccessKey, CephS3Server.TestSecretKey);
        await using var imds = ImdsStandIn.Start("i-0abc", "eu-west-1");
        var groups = new AutoScalingModel(TimeProvider.System);
        groups.AddGroup("registry-group", new AutoScalingModel.Hook("registry-dr-launch", AutoScalingModel.Launching, TimeSpan.FromMinutes(30), "ABANDON"));
        groups.Launch("registry-group", "i-0abc");
        var stack = new CloudFormationModel("registry", "eu-west-1", TimeProvider.System);
        stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromHours(1));
        await using var autoScaling = AwsQueryStandIn.StartAutoScaling(groups, "eu-west-1", credentials);
        await using var cloudFormation = AwsQueryStandIn.StartCloudFormation(stack, "eu-west-1", credentials);
        node.Options.Agent.HeartbeatInterval = TimeSpan.FromMilliseconds(300);
        node.Options.Agent.StackName = "registry";

        var time = new TimerCountingTimeProvider();
        var agent = new BootstrapAgent(node.Options, new SlowReadStore(node.CreateStore(), TimeSpan.FromSeconds(1)),
            new InstanceMetadataClient(imds.Endpoint),
            region => new AwsQueryControlPlane(region, new Amazon.Runtime.BasicAWSCredentials(credentials.AccessKeyId, credentials.SecretAccessKey), autoScaling.Endpoint, cloudFormation.Endpoint),
            NullLoggerFactory.Instance, time);
        var result = await agent.RunAsync(CancellationToken.None);
        Assert.AreEqual(NodeStatus.Restored, result.Status);

        Assert.AreEqual("InService", groups.LifecycleState("i-0abc"));
        var heartbeats = autoScaling.Calls.Where(c => c.Action == "RecordLifecycleActionHeartbeat").ToList();
        Assert.IsTrue(heartbeats.All(h => h.Accepted), "every heartbeat found the action active");
        Assert.IsGreaterThanOrEqualTo(3, heartbeats.Count, "a restore of about 4 s with a 300 ms interval must send several heartbeats");
        Assert.IsTrue(heartbeats.All(h => h.Parameters["AutoScalingGroupName"] == "registry-group" && h.Parameters["LifecycleHookName"] == "registry-dr-launch" && h.Parameters["InstanceId"] == "i-0abc"));
        var complete = autoScaling.Calls.Where(c => c.Action == "CompleteLifecycleAction").ToList();
        Assert.HasCount(1, complete);
        Assert.AreEqual("CONTINUE", complete[0].Parameters["LifecycleActionResult"]);

        // No heartbeat after the lifecycle action was completed: the last call is the completion,
        // and the heartbeat's timer is gone (disposed), so no later heartbeat can come. This reads
        // the state instead of waiting a while to see that none came, which a slow machine passes
        // by accident; it rules out a heartbeat loop left running after RunAsync returned.
        Assert.AreEqual("CompleteLifecycleAction", autoScaling.Calls[^1].Action);
        Assert.AreEqual(0, time.PeriodicTimersAlive, "a periodic timer (the heartbeat's) outlived the agent's run");
        Assert.IsGreaterThanOrEqualTo(1, time.PeriodicTimersCreated, "the heartbeat runs on the agent's TimeProvider");
    }

    /// <summary>The system clock, counting the periodic timers made from it that are not yet disposed.</summary>
    private sealed class TimerCountingTimeProvider : TimeProvider
    {
        private int _alive, _created;
        public int PeriodicTimersAlive => Volatile.Read(ref _alive);
        public int PeriodicTimersCreated => Volatile.Read(ref _created);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var inner = System.CreateTimer(callback, state, dueTime, period);
            if (period == Timeout.InfiniteTimeSpan || period == TimeSpan.Zero) return inner;
            Interlocked.Increment(ref _created);
            Interlocked.Increment(ref _alive);
            return new Counted(inner, this);
        }

        private sealed class Counted(ITimer inner, TimerCountingTimeProvider owner) : ITimer
        {
            private int _disposed;
            public bool Change(TimeSpan dueTime, TimeSpan period) => inner.Change(dueTime, period);
            public void Dispose()
            {
                if (Interlocked.Exchange(ref _disposed, 1) == 0) Interlocked.Decrement(ref owner._alive);
                inner.Dispose();
            }
            public ValueTask DisposeAsync()
            {
                Dispose();
                return ValueTask.CompletedTask;
            }
        }
    }
}
