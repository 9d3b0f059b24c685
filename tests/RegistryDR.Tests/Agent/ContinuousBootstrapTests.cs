using RegistryDR.Agent;
using RegistryDR.Continuous;
using RegistryDR.Tests.Continuous;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Agent;

/// <summary>
/// The bootstrap agent with <c>Database:Mode=continuous</c>: a node that archives WAL is killed
/// (kill -9 of its PostgreSQL, data directory deleted) and a fresh node's bootstrap restores to
/// the end of the archive, starts the registry, signals CloudFormation and completes the launch
/// lifecycle action, holding the next fencing generation.
/// </summary>
[TestClass]
public sealed class ContinuousBootstrapTests
{
    private const string InstanceId = "i-0c0n71nu0u5b0075a";

    /// <summary>As in <see cref="KilledNodeTests"/>: one wal-push of the switched-out segment plus the archiver's retry wake-up.</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(20);

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task KilledNode_FreshNodeBootstraps_ToTheEndOfTheArchive_StartsTheRegistry_Signals_AndHoldsTheNextGeneration()
    {
        var ct = CancellationToken.None;
        await using var site = await ContinuousSite.CreateAsync(s3: false);
        var a = await site.StartNodeAsync("a");
        var store = site.CreateStore();
        var ledger = new RegistryDR.Fencing.GenerationLedger(store, TimeProvider.System);
        Assert.AreEqual(1, (await ledger.TakeAndRecordAsync(a.Options.Agent.StateFile, "first-boot", "i-0a", null, ct)).Number);
        var baseBackup = await new BaseBackupService(a.Options, store, TestNode.Logger<BaseBackupService>(), TimeProvider.System).RunAsync(cancellationToken: ct);
        Assert.AreEqual(1L, baseBackup.Generation, "the base backup records the generation its node held");

        // Pushes after the base backup; archive_timeout (not a forced switch) archives their segment.
        for (var i = 1; i <= 20; i++)
            await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES ({i}, 'a', '{PushLoad.Payload(i)}')");
        var archived = await DatabaseSnapshot.CaptureAsync(a.ConnectionString());
        await a.WaitArchivedAsync(await a.ScalarAsync<string>("SELECT pg_walfile_name(pg_current_wal_lsn())", "postgres"), TimeSpan.FromMinutes(2));
        // Then five more in one transaction (all or none of them can be archived), and the kill.
        await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) SELECT i, 'a', 'late-' || i FROM generate_series(21, 25) i");
        var last = await DatabaseSnapshot.CaptureAsync(a.ConnectionString());
        var lastCommittedAt = DateTimeOffset.UtcNow;
        await a.Cluster.KillAsync();
        var killedAt = DateTimeOffset.UtcNow;
        Directory.Delete(a.Cluster.DataDirectory, recursive: true);

        // A fresh node (an empty, initdb'd cluster) boots in a stack being created on the existing store.
        var b = await site.StartNodeAsync("b", empty: true);
        var started = Path.Combine(b.Root, "registry-started");
        b.Options.Registry.StartCommand = ["bash", "-c", $"echo started >> {started}"];
        await using var aws = AgentAws.Start(InstanceId);
        aws.Stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        aws.Groups.Launch(AgentAws.GroupName, InstanceId);
        var logs = new ListLoggerFactory();

        var result = await aws.Agent(b.Options, b.CreateStore(), logs).RunAsync(ct);

        Assert.AreEqual(NodeStatus.Restored, result.Status, logs.Text);
        Assert.AreEqual(baseBackup.BackupId, result.BackupId);
        Assert.AreEqual(LifecycleActionOutcome.Completed, result.Lifecycle);
        Assert.AreEqual("InService", aws.Groups.LifecycleState(InstanceId));
        var complete = aws.CallsOf("CompleteLifecycleAction").Single();
        Assert.AreEqual(("CONTINUE", AgentAws.LaunchHook), (complete.Parameters["LifecycleActionResult"], complete.Parameters["LifecycleHookName"]));
        var signal = aws.Stack.Signals.Single();
        Assert.AreEqual(("RegistryGroup", InstanceId, "SUCCESS", (string?)null), (signal.LogicalResourceId, signal.UniqueId, signal.Status, signal.Refusal));
        Assert.AreEqual(CloudFormationModel.CreateComplete, aws.Stack.Status);

        // The restored database is exactly the archived state, or (when the last transaction's
        // segment was archived before the kill too) exactly the last one; every push committed
        // before kill − archive_timeout − slack is there.
        var restored = await DatabaseSnapshot.CaptureAsync(b.ConnectionString());
        var differsFromLast = last.FirstDifference(restored);
        if (lastCommittedAt < killedAt - ContinuousSite.ArchiveTimeout - Slack)
            Assert.IsNull(differsFromLast, "the last transaction was committed before the cutoff, so it is restored");
        else if (differsFromLast is not null)
            Assert.IsNull(archived.FirstDifference(restored), $"the restore is the archived state exactly (it differs from the last state: {differsFromLast})");
        // The registry was started, once.
        Assert.AreEqual("started\n", File.ReadAllText(started));

        // The new node holds the next generation, taken from the base backup it restored.
        Assert.AreEqual((NodeStatus.Restored, 2L, baseBackup.BackupId), (result.Status, NodeStateFile.Read(b.Options.Agent.StateFile)!.Generation, NodeStateFile.Read(b.Options.Agent.StateFile)!.BackupId));
        var current = await ledger.CurrentAsync(ct);
        Assert.AreEqual((2L, "restore", InstanceId, baseBackup.BackupId), (current!.Number, current.Reason, current.InstanceId, current.RestoredFrom));
    }
}
