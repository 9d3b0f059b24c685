using RegistryDR.Agent;
using RegistryDR.Backup;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Agent;

/// <summary>A node that did not restore successfully must never write a backup, whoever asks for one.</summary>
[TestClass]
public sealed class NodeStateGateTests
{
    [TestMethod]
    [DataRow(null, false)]
    [DataRow(NodeStatus.Restoring, false)]
    [DataRow(NodeStatus.Failed, false)]
    [DataRow(NodeStatus.Restored, true)]
    [DataRow(NodeStatus.FirstBoot, true)]
    public async Task BackupsAreWrittenOnlyByARestoredOrFirstBootedNode(NodeStatus? status, bool allowed)
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        node.Options.Schedule.RequireRestoredNode = true;
        node.Options.Agent.StateFile = Path.Combine(node.Root, "state", "node-state.json");
        if (status is { } s) NodeStateFile.Write(node.Options.Agent.StateFile, new NodeState(s, DateTimeOffset.UtcNow, null, "i-0123", s == NodeStatus.Failed ? "restore failed" : null));
        var service = new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System);
        if (allowed)
        {
            var manifest = await service.RunAsync();
            Assert.AreEqual(3, manifest.Artifacts.Count);
        }
        else
        {
            var ex = await Assert.ThrowsExactlyAsync<BackupFailedException>(() => service.RunAsync());
            StringAssert.Contains(ex.Message, "must not write backups");
            Assert.IsEmpty(Directory.GetFiles(storeDir, "*", SearchOption.AllDirectories), "a refused backup writes nothing");
        }
    }
}
