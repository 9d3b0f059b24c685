using RegistryDR.Continuous;
using RegistryDR.Fencing;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// A point-in-time restore run by hand takes its fencing generation as the logical restore and the
/// agent do (GenerationLedger.TakeAndRecordAsync): in the node's region, recorded in its node
/// state, and in a new epoch over a store another region wrote last — a failover or failback done
/// with the command line, not the agent, must fence the other region's node too.
/// </summary>
[TestClass]
public sealed class ManualTakeoverTests
{
    [TestMethod]
    public async Task RestoreByHand_OverAStoreAnotherRegionWroteLast_TakesOverWithANewEpoch_InThisRegion()
    {
        await using var site = await ContinuousSite.CreateAsync(s3: false);
        var a = await site.StartNodeAsync("a");
        var store = site.CreateStore();
        var manifest = await new BaseBackupService(a.Options, store, TestNode.Logger<BaseBackupService>(), TimeProvider.System).RunAsync();
        await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES (1, 'a', '{PushLoad.Payload(1)}')");
        await a.SwitchAndWaitArchivedAsync();
        // The store's newest generation was taken in us-west-2 (region 2 ran it; its sets copied back for a failback).
        var ledger = new GenerationLedger(store, TimeProvider.System);
        var theirs = await ledger.TakeAndRecordAsync(Path.Combine(a.Root, "region2-state.json"), "takeover", "i-r2", manifest.BackupId, CancellationToken.None, "us-west-2", takeOver: true);
        Assert.AreEqual(1_000_001L, theirs.Number);

        var b = await site.StartNodeAsync("b", empty: true);
        b.Options.Agent.Region = "us-east-1";
        b.Options.Agent.InstanceId = "i-r1b";
        b.WriteConfig();
        var restore = await b.RunCliAsync("restore", "--to", "latest");

        Assert.AreEqual(0, restore.ExitCode, restore.Stdout + restore.Stderr);
        // Rules out the generation taken without the region (the next number in region 2's epoch, 1000002,
        // which region 2's node would still outrank on a tie of epochs) and one never recorded on the node.
        var taken = await ledger.CurrentAsync(CancellationToken.None);
        Assert.AreEqual((2_000_001L, "takeover from region us-west-2 (restore)", "us-east-1", "i-r1b"),
            (taken!.Number, taken.Reason, taken.Region, taken.InstanceId));
        var state = RegistryDR.Agent.NodeStateFile.Read(b.Options.Agent.StateFile)!;
        Assert.AreEqual((2_000_001L, (long?)null), (state.Generation!.Value, state.PendingGeneration));
        Assert.AreEqual(1L, await b.ScalarAsync<long>("SELECT count(*) FROM pushes WHERE id = 1"));
    }
}
