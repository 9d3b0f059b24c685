using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Restore;

/// <summary>The restore plan (<c>restore --dry-run</c>) says what the restore will do that an operator would not assume.</summary>
[TestClass]
public sealed class RestorePlanTests
{
    [TestMethod]
    public async Task ABackupOfAnotherDatabaseName_IsRestoredUnderDatabaseName_AndThePlanSaysSo()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 3);
        var store = node.CreateStore();
        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var backedUp = node.Options.Database.Name;

        var same = await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).PlanAsync(manifest.BackupId, CancellationToken.None);
        Assert.AreEqual($"Restore database '{backedUp}' into scratch database '{backedUp}_rdr_restore'", same.Steps.Single(s => s.StartsWith("Restore database", StringComparison.Ordinal)));

        node.Options.Database.Name = "registry_renamed";
        var renamed = await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).PlanAsync(manifest.BackupId, CancellationToken.None);
        StringAssert.EndsWith(renamed.Steps.Single(s => s.StartsWith("Restore database", StringComparison.Ordinal)),
            $"; it becomes 'registry_renamed' (Database:Name), NOT '{backedUp}' as on {manifest.Host}: the registry must be configured for 'registry_renamed'");
    }
}
