using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Agent;
using RegistryDR.Aws;
using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Backup;

/// <summary>
/// One definition of "restorable" (manifest valid, every artifact there with its size) and one
/// selection of the newest restorable set: status, list, restore latest, verify/drill latest and
/// the agent never vouch for or pick a set a restore would refuse, and say why they passed it over.
/// </summary>
[TestClass]
public sealed class RestorableSetsTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(3);

    private sealed class Fixture : IAsyncDisposable
    {
        public required TempDirectory StoreDir { get; init; }
        public required TestNode Node { get; init; }
        public required IBackupStore Store { get; init; }
        public required BackupManifest Oldest { get; init; }
        public required BackupManifest Older { get; init; }
        public required BackupManifest Newest { get; init; }

        public static async Task<Fixture> CreateAsync()
        {
            var storeDir = new TempDirectory("rdr-store-");
            var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 5);
            var store = node.CreateStore();
            var backups = new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System);
            // Three sets, so that with the newest one broken the set to choose (the newer of the
            // two good ones) differs from the oldest good one: this rules out a selection that
            // walks the sets oldest first, or takes the last restorable set it meets.
            var oldest = await backups.RunAsync();
            var older = await backups.RunAsync();
            var newest = await backups.RunAsync();
            Assert.IsLessThan(0, string.CompareOrdinal(oldest.BackupId, older.BackupId));
            Assert.IsLessThan(0, string.CompareOrdinal(older.BackupId, newest.BackupId));
            return new Fixture { StoreDir = storeDir, Node = node, Store = store, Oldest = oldest, Older = older, Newest = newest };
        }

        public string PathOf(string key) => Path.Combine(StoreDir.Path, key);

        public async ValueTask DisposeAsync()
        {
            await Node.DisposeAsync();
            StoreDir.Dispose();
        }
    }

    private static async Task<(int ExitCode, string Stdout)> CliAsync(TestNode node, params string[] args)
    {
        var config = RegistryDR.Tests.Faults.InterruptedRestoreTests.WriteConfig(node);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(config);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(Bound);
        return (p.ExitCode, await stdout + await stderr);
    }

    [TestMethod]
    public async Task ANewestSetWithACorruptManifest_IsPassedOver_ByStatusListRestoreVerifyAndDrill()
    {
        await using var fx = await Fixture.CreateAsync();
        var manifestPath = fx.PathOf(BackupLayout.ManifestKey(fx.Newest.BackupId));
        var bytes = File.ReadAllBytes(manifestPath);
        File.WriteAllBytes(manifestPath, bytes[..(bytes.Length / 2)]); // torn in half
        var refusal = await Assert.ThrowsExactlyAsync<InvalidManifestException>(() => new BackupCatalog(fx.Store).ReadManifestAsync(fx.Newest.BackupId, CancellationToken.None));

        var status = await ProtectionStatusReader.ReadAsync(fx.Store, "0 0/15 * * * ?", TimeProvider.System, CancellationToken.None);
        Assert.AreEqual(ProtectionState.Ok, status.State);
        Assert.AreEqual(fx.Older.BackupId, status.NewestBackupId, "status vouches only for what restore would take");
        Assert.AreEqual(fx.Older.StartedAt.ToUnixTimeSeconds(), status.RecoveryPoint!.Value.ToUnixTimeSeconds());
        var skipped = status.Skipped.Single();
        Assert.AreEqual(fx.Newest.BackupId, skipped.BackupId);
        Assert.AreEqual(SetCondition.ManifestInvalid, skipped.Condition);
        Assert.AreEqual(refusal.Message, skipped.Problem);

        var listed = await new RestorableSets(fx.Store).ListAsync(CancellationToken.None);
        CollectionAssert.AreEqual(new[] { $"{fx.Newest.BackupId} MANIFEST INVALID", $"{fx.Older.BackupId} complete", $"{fx.Oldest.BackupId} complete" },
            listed.Select(j => $"{j.BackupId} {j.Label}").ToArray());

        var plan = await new RestoreService(fx.Node.Options, fx.Store, TestNode.Logger<RestoreService>(), TimeProvider.System).PlanAsync("latest", CancellationToken.None);
        Assert.AreEqual(fx.Older.BackupId, plan.BackupId);
        Assert.AreEqual(fx.Newest.BackupId, plan.Skipped.Single().BackupId);
        Assert.AreEqual(fx.Older.BackupId, await new BackupCatalog(fx.Store).ResolveAsync("latest", CancellationToken.None), "verify latest and drill latest resolve through this");
        var drill = await new DrillService(fx.Node.Options, fx.Store, NullLoggerFactory.Instance, TimeProvider.System).RunAsync("latest");
        Assert.IsTrue(drill.Succeeded, drill.Failure);
        Assert.AreEqual(fx.Older.BackupId, drill.BackupId);

        // The executable: list shows why, status names the set it falls back to and the one it passed over.
        var list = await CliAsync(fx.Node, "list");
        Assert.AreEqual(0, list.ExitCode, list.Stdout);
        StringAssert.Contains(list.Stdout, $"  {fx.Newest.BackupId}: {refusal.Message}");
        StringAssert.Matches(list.Stdout, new System.Text.RegularExpressions.Regex($"{fx.Newest.BackupId} .* MANIFEST INVALID -\n"));
        var statusCli = await CliAsync(fx.Node, "status");
        StringAssert.Contains(statusCli.Stdout, $"Passed over:     {fx.Newest.BackupId} (MANIFEST INVALID: {refusal.Message})");
        StringAssert.Contains(statusCli.Stdout, $"Newest backup:   {fx.Older.BackupId}, ");
        var verify = await CliAsync(fx.Node, "verify", "latest");
        Assert.AreEqual(0, verify.ExitCode, verify.Stdout);
        StringAssert.Contains(verify.Stdout, $"Backup {fx.Older.BackupId} is valid: ");
    }

    private sealed class NoMetadata : IInstanceMetadata
    {
        public Task<InstanceIdentity> GetIdentityAsync(CancellationToken cancellationToken) => throw new InvalidOperationException("the test configures the identity");
        public Task<string?> GetTargetLifecycleStateAsync(CancellationToken cancellationToken) => Task.FromResult<string?>(null);
    }

    private sealed class SilentControlPlane : IAwsControlPlane
    {
        public Task CompleteLifecycleActionAsync(LifecycleAction action, LifecycleActionResult result, CancellationToken cancellationToken) => Task.CompletedTask;
        public Task RecordLifecycleActionHeartbeatAsync(LifecycleAction action, CancellationToken cancellationToken) => Task.CompletedTask;
        public Task SignalResourceAsync(string stackName, string logicalResourceId, string uniqueId, ResourceSignalStatus status, CancellationToken cancellationToken) => Task.CompletedTask;
        public Task<AutoScalingInstance?> DescribeAutoScalingInstanceAsync(string instanceId, CancellationToken cancellationToken) => Task.FromResult<AutoScalingInstance?>(null); // in no group
    }

    [TestMethod]
    public async Task ASetWhoseArtifactsHaveNotAllArrived_IsPassedOver_ByStatusRestoreAndTheAgent()
    {
        await using var fx = await Fixture.CreateAsync();
        // Replication copies objects one by one: the manifest is there, the dump not yet, the config only part-way.
        var dump = fx.Newest.Find(BackupLayout.DatabaseArtifact)!;
        var config = fx.Newest.Find(BackupLayout.ConfigArtifact)!;
        File.Delete(fx.PathOf(dump.Key));
        using (var f = new FileStream(fx.PathOf(config.Key), FileMode.Open)) f.SetLength(config.Size - 1);

        var selection = await new RestorableSets(fx.Store).SelectNewestAsync(CancellationToken.None);
        Assert.AreEqual(fx.Older.BackupId, selection.Newest!.BackupId);
        var skipped = selection.Skipped.Single();
        Assert.AreEqual(SetCondition.ArtifactsMissing, skipped.Condition);
        Assert.AreEqual("MISSING 2 ARTIFACTS", skipped.Label);
        Assert.AreEqual($"2 of its 3 artifacts are missing or not whole yet: {dump.Key} is not in the store, {config.Key} is {config.Size - 1} bytes, the manifest says {config.Size}", skipped.Problem);
        var status = await ProtectionStatusReader.ReadAsync(fx.Store, "0 0/15 * * * ?", TimeProvider.System, CancellationToken.None);
        Assert.AreEqual(fx.Older.BackupId, status.NewestBackupId);

        // The bootstrap agent restores the older set, saying which it skipped.
        fx.Node.Options.Agent.InstanceId = "i-0test";
        fx.Node.Options.Agent.Region = "us-east-1";
        fx.Node.Options.Agent.LifecycleHookName = "";
        fx.Node.Options.Agent.SignalResource = "";
        await fx.Node.WipeAsync();
        var agent = new BootstrapAgent(fx.Node.Options, fx.Store, new NoMetadata(), _ => new SilentControlPlane(), NullLoggerFactory.Instance, TimeProvider.System);
        var result = await agent.RunAsync(CancellationToken.None);
        Assert.AreEqual(NodeStatus.Restored, result.Status);
        Assert.AreEqual(fx.Older.BackupId, result.BackupId);
        CollectionAssert.AreEqual(new[] { fx.Newest.BackupId }, result.SkippedBackups.ToArray());
        var state = NodeStateFile.Read(fx.Node.Options.Agent.StateFile)!;
        Assert.AreEqual(NodeStatus.Restored, state.Status);
        Assert.AreEqual(1L, state.Generation, "the agent's generation is recorded with its restore");
    }

    [TestMethod]
    public async Task ASetVerifyFoundCorrupt_IsRecorded_AndPassedOverByStatusListAndRestore_UntilAVerifyPassesAgain()
    {
        await using var fx = await Fixture.CreateAsync();
        // Bit rot in the newest set's dump: same size, so only reading it back can tell.
        var dump = fx.Newest.Find(BackupLayout.DatabaseArtifact)!;
        var original = File.ReadAllBytes(fx.PathOf(dump.Key));
        var rotten = (byte[])original.Clone();
        rotten[rotten.Length / 2] ^= 0x01;
        File.WriteAllBytes(fx.PathOf(dump.Key), rotten);
        Assert.AreEqual(fx.Newest.BackupId, (await new RestorableSets(fx.Store).SelectNewestAsync(CancellationToken.None)).Newest!.BackupId,
            "sizes alone cannot see it: without the record the rotten set is still 'latest'");

        var verify = await CliAsync(fx.Node, "verify", fx.Newest.BackupId);
        Assert.AreEqual(4, verify.ExitCode, verify.Stdout);
        var finding = await CorruptionRecord.ReadAsync(fx.Store, fx.Newest.BackupId, CancellationToken.None);
        Assert.IsNotNull(finding);
        Assert.AreEqual("verify", finding.By);
        StringAssert.StartsWith(finding.Problem, $"Backup {fx.Newest.BackupId}: artifact 'database' is corrupt: ");

        // Rules out a selection that ignores the record: the corrupt set would be the newest "restorable" one.
        var selection = await new RestorableSets(fx.Store).SelectNewestAsync(CancellationToken.None);
        Assert.AreEqual(fx.Older.BackupId, selection.Newest!.BackupId);
        var skipped = selection.Skipped.Single();
        Assert.AreEqual(SetCondition.Corrupt, skipped.Condition);
        Assert.AreEqual("CORRUPT", skipped.Label);
        Assert.AreEqual($"verify found at {SetFormat.Time(finding.FoundAt)}: {finding.Problem} (a `registry-dr verify {fx.Newest.BackupId}` that passes clears this)", skipped.Problem);
        var plan = await new RestoreService(fx.Node.Options, fx.Store, TestNode.Logger<RestoreService>(), TimeProvider.System).PlanAsync("latest", CancellationToken.None);
        Assert.AreEqual(fx.Older.BackupId, plan.BackupId);
        var status = await CliAsync(fx.Node, "status");
        StringAssert.Contains(status.Stdout, $"Passed over:     {fx.Newest.BackupId} (CORRUPT: verify found at ");
        StringAssert.Contains(status.Stdout, $"Newest backup:   {fx.Older.BackupId}, ");
        // Rules out a count that reads "complete" as "restorable": the corrupt set is complete, and passed over.
        StringAssert.Contains(status.Stdout, "Sets:            3 complete (1 of them passed over by a restore, listed above), 0 incomplete\n");
        var list = await CliAsync(fx.Node, "list");
        StringAssert.Matches(list.Stdout, new System.Text.RegularExpressions.Regex($"{fx.Newest.BackupId} .* CORRUPT +-\n"));

        // Repaired (say, copied back from the replica): a verify that passes clears the record.
        File.WriteAllBytes(fx.PathOf(dump.Key), original);
        var again = await CliAsync(fx.Node, "verify", fx.Newest.BackupId);
        Assert.AreEqual(0, again.ExitCode, again.Stdout);
        StringAssert.Contains(again.Stdout, $"Backup {fx.Newest.BackupId} was recorded as corrupt; it passed now, and that record ({CorruptionRecord.Key(fx.Newest.BackupId)}) was removed.");
        Assert.IsNull(await CorruptionRecord.ReadAsync(fx.Store, fx.Newest.BackupId, CancellationToken.None));
        Assert.AreEqual(fx.Newest.BackupId, (await new RestorableSets(fx.Store).SelectNewestAsync(CancellationToken.None)).Newest!.BackupId);
    }

    [TestMethod]
    public async Task ADrillThatFindsCorruptBytes_RecordsIt_AndOneThatCannotReachTheStore_DoesNot()
    {
        await using var fx = await Fixture.CreateAsync();
        var config = fx.Newest.Find(BackupLayout.ConfigArtifact)!;
        var bytes = File.ReadAllBytes(fx.PathOf(config.Key));
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(fx.PathOf(config.Key), bytes);

        var drill = await new DrillService(fx.Node.Options, fx.Store, NullLoggerFactory.Instance, TimeProvider.System).RunAsync(fx.Newest.BackupId);
        Assert.IsFalse(drill.Succeeded);
        var finding = await CorruptionRecord.ReadAsync(fx.Store, fx.Newest.BackupId, CancellationToken.None);
        Assert.AreEqual("drill", finding!.By);
        Assert.AreEqual(drill.Failure, finding.Problem);

        // A store that cannot be read proves nothing about the set: no record.
        var unreachable = new UnreadableStore(fx.Store);
        var failed = await new DrillService(fx.Node.Options, unreachable, NullLoggerFactory.Instance, TimeProvider.System).RunAsync(fx.Older.BackupId);
        Assert.IsFalse(failed.Succeeded);
        Assert.IsNull(await CorruptionRecord.ReadAsync(fx.Store, fx.Older.BackupId, CancellationToken.None));
    }

    /// <summary>Lists and reads manifests, but every artifact download fails as an unreachable store's would.</summary>
    private sealed class UnreadableStore(IBackupStore inner) : RegistryDR.Tests.Infrastructure.ForwardingStore(inner)
    {
        public override Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken) =>
            key.EndsWith(BackupManifest.FileName, StringComparison.Ordinal) || key.EndsWith(CorruptionRecord.FileName, StringComparison.Ordinal)
                ? Inner.OpenReadAsync(key, cancellationToken)
                : throw new StoreUnavailableException($"{Inner.Description} could not be reached (test).");
    }

    // Below: the judgement on a file store holding synthetic sets (no database), against the
    // mutants Stryker left alive in Backup/RestorableSets.cs (docs/testing.md, "Mutation testing").

    private static readonly DateTimeOffset T0 = new(2026, 11, 30, 10, 0, 0, TimeSpan.Zero);

    private static async Task PutGenerationAsync(IBackupStore store, long number, string? restoredFrom, string host = "node-b", string? region = "us-west-2")
    {
        var g = new RegistryDR.Fencing.Generation(number, host, "i-" + number, "takeover", restoredFrom, T0) { Region = region };
        Assert.IsTrue(await store.TryCreateAsync($"generations/{number:D10}.json",
            System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(g, new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web)), CancellationToken.None));
    }

    [TestMethod]
    public async Task NothingRestorable_SaysWhyForAnEmptyStore_OnlyIncompleteSets_AndBrokenSets()
    {
        using var dir = new TempDirectory("rdr-sets-");
        var store = new FileSystemStore(dir.Path);
        var sets = new RestorableSets(store);
        var empty = await Assert.ThrowsExactlyAsync<BackupNotFoundException>(() => sets.ResolveLatestAsync(CancellationToken.None));
        Assert.AreEqual($"There are no backups in {store.Description}.", empty.Message);

        var a = await SyntheticSets.WriteAsync(store, T0, complete: false);
        var b = await SyntheticSets.WriteAsync(store, T0.AddHours(1), complete: false);
        var none = await Assert.ThrowsExactlyAsync<BackupNotFoundException>(() => sets.ResolveLatestAsync(CancellationToken.None));
        Assert.AreEqual($"There is no complete backup in {store.Description} (2 incomplete set(s), which are never restored).", none.Message);

        var c = await SyntheticSets.WriteAsync(store, T0.AddHours(2));
        File.Delete(Path.Combine(dir.Path, BackupLayout.ArtifactKey(c, BackupLayout.GlobalsArtifact)));
        var broken = await Assert.ThrowsExactlyAsync<BackupNotFoundException>(() => sets.ResolveLatestAsync(CancellationToken.None));
        Assert.AreEqual($"There is no restorable backup in {store.Description}: {c} (MISSING 1 ARTIFACT: 1 of its 3 artifacts are missing or not whole yet: " +
            $"{BackupLayout.ArtifactKey(c, BackupLayout.GlobalsArtifact)} is not in the store); {b} (INCOMPLETE: it has no manifest); {a} (INCOMPLETE: it has no manifest).", broken.Message);
        var selection = await sets.SelectNewestAsync(CancellationToken.None);
        Assert.IsNull(selection.Newest);
        Assert.HasCount(3, selection.Sets);

        var d = await SyntheticSets.WriteAsync(store, T0.AddHours(-1));
        selection = await sets.ResolveLatestAsync(CancellationToken.None);
        Assert.AreEqual(d, selection.Newest!.BackupId);
        Assert.AreEqual($"{d} (complete)", selection.Newest.Describe());
        Assert.AreEqual($"3 newer set(s) are not restorable and were passed over: {c} (MISSING 1 ARTIFACT: 1 of its 3 artifacts are missing or not whole yet: " +
            $"{BackupLayout.ArtifactKey(c, BackupLayout.GlobalsArtifact)} is not in the store); {b} (INCOMPLETE: it has no manifest); {a} (INCOMPLETE: it has no manifest)", selection.SkippedSentence);
        Assert.IsNull(new RestorableSelection(selection.Newest, [], selection.Sets).SkippedSentence);
    }

    [TestMethod]
    public async Task ManyMissingArtifacts_AreCountedAll_AndTheFirstThreeNamed()
    {
        using var dir = new TempDirectory("rdr-sets-");
        var store = new FileSystemStore(dir.Path);
        var id = BackupLayout.NewBackupId(T0);
        var artifacts = Enumerable.Range(1, 5).Select(i => new BackupManifest.Artifact
        {
            Name = i == 1 ? BackupLayout.DatabaseArtifact : i == 2 ? BackupLayout.GlobalsArtifact : i == 3 ? BackupLayout.ConfigArtifact : $"extra-{i}",
            Key = BackupLayout.SetPrefix(id) + $"artifact-{i}", Size = 10, Sha256 = new string('0', 64),
        }).ToList();
        await store.PutAsync(BackupLayout.ManifestKey(id), new MemoryStream(SyntheticSets.Manifest(id, T0, artifacts).ToJson()), CancellationToken.None);
        // The fourth is there but short: counted with the missing ones, not named among the first three.
        await store.PutAsync(artifacts[3].Key, new MemoryStream(new byte[9]), CancellationToken.None);
        await store.PutAsync(artifacts[4].Key, new MemoryStream(new byte[10]), CancellationToken.None);
        var judged = (await new RestorableSets(store).ListAsync(CancellationToken.None)).Single();
        Assert.AreEqual(SetCondition.ArtifactsMissing, judged.Condition);
        Assert.IsFalse(judged.IsRestorable);
        Assert.AreEqual("MISSING 4 ARTIFACTS", judged.Label);
        Assert.AreEqual($"4 of its 5 artifacts are missing or not whole yet: {artifacts[0].Key} is not in the store, {artifacts[1].Key} is not in the store, {artifacts[2].Key} is not in the store and 1 more", judged.Problem);
    }

    [TestMethod]
    public async Task FencedSets_AreOnlyThoseOfAnOlderEpoch_NewerThanTheSetTheTakeoverRestored()
    {
        using var dir = new TempDirectory("rdr-sets-");
        var store = new FileSystemStore(dir.Path);
        var restored = await SyntheticSets.WriteAsync(store, T0, generation: 1);
        await PutGenerationAsync(store, 1, null, host: "node-a", region: null);
        await PutGenerationAsync(store, 1_000_001, restored);
        // Old epoch and newer than the restored set: fenced, whether its writer's record is in the store (1), is not (2), or it held none.
        var byOne = await SyntheticSets.WriteAsync(store, T0.AddHours(1), generation: 1);
        var byTwo = await SyntheticSets.WriteAsync(store, T0.AddHours(2), generation: 2);
        var byNone = await SyntheticSets.WriteAsync(store, T0.AddHours(3));
        // The taking region's own set is not, nor one from before the fork.
        var own = await SyntheticSets.WriteAsync(store, T0.AddHours(4), generation: 1_000_001);
        var beforeFork = await SyntheticSets.WriteAsync(store, T0.AddHours(-1), generation: 1);

        var all = await new RestorableSets(store).ListAsync(CancellationToken.None);
        var takeover = $"after node-b (i-1000001) in region us-west-2 took over at generation 1000001 from set {restored}";
        CollectionAssert.AreEqual(new[]
        {
            $"{own} (complete)",
            $"{byNone} (FENCED: written by synthetic holding no generation {takeover})",
            $"{byTwo} (FENCED: written by synthetic holding generation 2 {takeover})",
            $"{byOne} (FENCED: written by node-a (i-1) holding generation 1 {takeover})",
            $"{restored} (complete)",
            $"{beforeFork} (complete)",
        }, all.Select(j => j.Describe()).ToArray());
        Assert.AreEqual(SetCondition.Fenced, all[1].Condition);
        Assert.AreEqual("FENCED", all[1].Label);
        Assert.AreEqual(own, (await new RestorableSets(store).SelectNewestAsync(CancellationToken.None)).Newest!.BackupId);

        // Without its own set, the newest restorable is the one the takeover restored, never a fenced one.
        File.Delete(Path.Combine(dir.Path, BackupLayout.ManifestKey(own)));
        var selection = await new RestorableSets(store).SelectNewestAsync(CancellationToken.None);
        Assert.AreEqual(restored, selection.Newest!.BackupId);
        CollectionAssert.AreEqual(new[] { own, byNone, byTwo, byOne }, selection.Skipped.Select(s => s.BackupId).ToArray());
    }
}
