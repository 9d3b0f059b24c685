using RegistryDR.Continuous;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>`status` in continuous mode when the archive cannot give a restore: it says so, it does not crash.</summary>
[TestClass]
public sealed class ContinuousStatusTests
{
    [TestMethod]
    public async Task AGapInTheArchivedWal_IsLate_WithNoRecoveryPoint_InTextAndJson()
    {
        await using var site = await ContinuousSite.CreateAsync(s3: false);
        var a = await site.StartNodeAsync("a");
        var store = site.CreateStore();
        var manifest = await new BaseBackupService(a.Options, store, TestNode.Logger<BaseBackupService>(), TimeProvider.System).RunAsync();
        for (var i = 1; i <= 2; i++)
        {
            await a.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES ({i}, 'a', '{PushLoad.Payload(i)}')");
            await a.SwitchAndWaitArchivedAsync();
        }
        // The segment right after the base backup's end goes missing; later WAL is there: a gap.
        var size = manifest.Server.WalSegmentSize;
        var gap = (await new ContinuousCatalog(store).ListWalAsync(default))
            .First(w => w.File.Kind == WalFileKind.Segment && w.File.SegmentNumber(size) == manifest.End.Segment(size) + 1);
        await store.DeleteAsync(gap.Key, default);

        var text = await a.RunCliAsync("status");
        // Rules out the crash seen before ("Nullable object must have a value", exit 1) and a made-up point.
        Assert.AreEqual(6, text.ExitCode, text.Stdout + text.Stderr);
        StringAssert.Contains(text.Stdout, "Protection:      LATE\n");
        StringAssert.Contains(text.Stdout, "Recovery point:  NONE: a restore to latest cannot be planned from the archive now (`registry-dr restore --dry-run` says why)\n");
        var json = await a.RunCliAsync("status", "--json");
        Assert.AreEqual(6, json.ExitCode, json.Stdout + json.Stderr);
        var root = System.Text.Json.JsonDocument.Parse(json.Stdout).RootElement;
        Assert.AreEqual("Late", root.GetProperty("state").GetString());
        Assert.AreEqual(System.Text.Json.JsonValueKind.Null, root.GetProperty("recoveryPoint").ValueKind);
    }
}
