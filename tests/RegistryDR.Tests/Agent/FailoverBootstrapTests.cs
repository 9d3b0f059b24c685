using Microsoft.Extensions.Logging;
using RegistryDR.Agent;
using RegistryDR.Configuration;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Agent;

/// <summary>
/// A failover node (Agent:Role=failover) takes the store over with a new fencing epoch, and checks
/// the restored registry afterwards without ever failing the boot on what the check finds.
/// </summary>
[TestClass]
public sealed class FailoverBootstrapTests
{
    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task FailoverNode_TakesANewEpoch_AndARegistryCheckThatCannotRun_IsRecorded_NotABootFailure()
    {
        await using var rig = await AgentTestRig.StartAsync();
        rig.Groups.Launch(AgentTestRig.GroupName, rig.InstanceId);
        var port = DockerRegistryProcess.FreePort(); // nothing listens there: the registry check cannot run
        rig.Node.Options.Agent.Role = AgentRole.Failover;
        rig.Node.Options.Agent.CheckRegistryAfterRestore = $"http://127.0.0.1:{port}";
        rig.Node.Options.Agent.CheckRegistryTimeout = TimeSpan.FromSeconds(30);

        var result = await rig.Agent().RunAsync(CancellationToken.None);

        Assert.AreEqual(NodeStatus.Restored, result.Status);
        Assert.AreEqual(rig.BackupId, result.BackupId);
        Assert.AreEqual(LifecycleActionOutcome.Completed, result.Lifecycle);
        Assert.AreEqual("InService", rig.Groups.LifecycleState(rig.InstanceId));
        // The takeover opened epoch 1 and names this node's region.
        Assert.AreEqual(1_000_001, rig.State.Generation);
        var taken = await new RegistryDR.Fencing.GenerationLedger(rig.Node.CreateStore(), TimeProvider.System).CurrentAsync(CancellationToken.None);
        Assert.AreEqual((1_000_001L, "takeover", AgentTestRig.Region, rig.BackupId), (taken!.Number, taken.Reason, taken.Region, taken.RestoredFrom));

        var check = result.RegistryCheck!;
        Assert.AreEqual(($"http://127.0.0.1:{port}/", false, 0, 0), (check.Registry, check.Complete, check.MissingBlobs, check.Repositories.Count));
        StringAssert.Contains(check.Error, $"127.0.0.1:{port}");
        Assert.AreEqual(check, rig.State.RegistryCheck! with { Repositories = check.Repositories });
        CollectionAssert.AreEqual(check.Repositories.ToList(), rig.State.RegistryCheck!.Repositories.ToList());
        var warning = rig.Logs.Entries.Single(e => e.Message.StartsWith("The registry check of ", StringComparison.Ordinal));
        Assert.AreEqual(LogLevel.Warning, warning.Level);
        Assert.AreEqual($"The registry check of http://127.0.0.1:{port}/ after the restore could not finish (the boot goes on; run registry-dr check-registry by hand): {check.Error}", warning.Message);
    }

    [TestMethod]
    public void TheMissingBlobGauge_ComesFromTheRecordedCheck()
    {
        var check = new RegistryCheckSummary(DateTimeOffset.UnixEpoch, "http://127.0.0.1:5000/", true, 3, ["apps/worker: tags 2.0 cannot be pulled"], null);
        var text = RegistryDR.Monitoring.PrometheusExposition.Render(new RegistryDR.Monitoring.OperationMetrics(TimeProvider.System).Read(), DateTimeOffset.UnixEpoch, "test", registryCheck: check);
        StringAssert.Contains(text, "\n# TYPE registrydr_registry_missing_blobs gauge\nregistrydr_registry_missing_blobs 3\n");
        StringAssert.Contains(text, "\n# TYPE registrydr_registry_check_complete gauge\nregistrydr_registry_check_complete 1\n");
        var none = RegistryDR.Monitoring.PrometheusExposition.Render(new RegistryDR.Monitoring.OperationMetrics(TimeProvider.System).Read(), DateTimeOffset.UnixEpoch, "test");
        Assert.IsFalse(none.Contains("\nregistrydr_registry_missing_blobs ", StringComparison.Ordinal), "absent until a check ran");
    }
}
