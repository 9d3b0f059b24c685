using System.Text.Json;
using RegistryDR.Agent;
using RegistryDR.Fencing;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fencing;

/// <summary>
/// The generation ledger on a file store, without a database: the numbers it takes, the state it
/// records, and what it tells a node that may not write. Written against the mutants Stryker left
/// alive in Fencing/GenerationLedger.cs (docs/testing.md, "Mutation testing").
/// </summary>
[TestClass]
public sealed class GenerationLedgerTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 2, 0, 0, TimeSpan.Zero);
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private TempDirectory _dir = null!;
    private FileSystemStore _store = null!;
    private string _stateFile = "";

    [TestInitialize]
    public void Init()
    {
        _dir = new TempDirectory("rdr-ledger-");
        _store = new FileSystemStore(Directory.CreateDirectory(Path.Combine(_dir.Path, "store")).FullName);
        _stateFile = Path.Combine(_dir.Path, "node-state.json");
    }

    [TestCleanup]
    public void Cleanup() => _dir.Dispose();

    private GenerationLedger Ledger => new(_store, new ManualTimeProvider(Now));

    /// <summary>Puts generation <paramref name="number"/> in the store as another node would have.</summary>
    private async Task PutGenerationAsync(long number, string host = "other-host", string? restoredFrom = null, string? region = null)
    {
        var g = new Generation(number, host, "i-" + number, "restore", restoredFrom, Now.AddHours(-1)) { Region = region };
        Assert.IsTrue(await _store.TryCreateAsync($"generations/{number:D10}.json", JsonSerializer.SerializeToUtf8Bytes(g, Json), CancellationToken.None));
    }

    [TestMethod]
    public void Generation_EpochTakeoverAndWho()
    {
        // Rules out a takeover test that accepts any number ending in 1 (epoch 0's generation 1) or any number above one epoch.
        Assert.IsFalse(new Generation(1, "h", null, "r", null, Now).IsTakeover);
        Assert.IsTrue(new Generation(1_000_001, "h", null, "r", null, Now).IsTakeover);
        Assert.IsFalse(new Generation(1_000_002, "h", null, "r", null, Now).IsTakeover);
        Assert.IsTrue(new Generation(3_000_001, "h", null, "r", null, Now).IsTakeover);
        Assert.AreEqual(0, Generation.EpochOf(999_999));
        Assert.AreEqual(1, Generation.EpochOf(1_000_000));
        Assert.AreEqual(2, new Generation(2_000_005, "h", null, "r", null, Now).Epoch);

        Assert.AreEqual("ip-10-0-1-5", new Generation(1, "ip-10-0-1-5", null, "r", null, Now).Who);
        Assert.AreEqual("ip-10-0-1-5 (i-0abc)", new Generation(1, "ip-10-0-1-5", "i-0abc", "r", null, Now).Who);
        Assert.AreEqual("ip-10-0-1-5 in region eu-west-1", new Generation(1, "ip-10-0-1-5", null, "r", null, Now) { Region = "eu-west-1" }.Who);
        Assert.AreEqual("ip-10-0-1-5 (i-0abc) in region eu-west-1", new Generation(1, "ip-10-0-1-5", "i-0abc", "r", null, Now) { Region = "eu-west-1" }.Who);
    }

    [TestMethod]
    public async Task Current_IgnoresObjectsThatAreNotGenerations()
    {
        Assert.IsNull(await Ledger.CurrentAsync(CancellationToken.None), "an empty store has no generation");
        await PutGenerationAsync(4);
        // Neither a non-.json object nor generation 0 nor a signed number is a generation, however high its digits.
        await _store.PutAsync("generations/0000000009.yaml", new MemoryStream("{}"u8.ToArray()), CancellationToken.None);
        await _store.PutAsync("generations/0000000008.json.bak", new MemoryStream("{}"u8.ToArray()), CancellationToken.None);
        await _store.PutAsync("generations/+000000007.json", new MemoryStream("{}"u8.ToArray()), CancellationToken.None);
        await _store.PutAsync("generations/0000000000.json", new MemoryStream("{}"u8.ToArray()), CancellationToken.None);
        var current = await Ledger.CurrentAsync(CancellationToken.None);
        Assert.AreEqual(4L, current!.Number);
        Assert.AreEqual("other-host (i-4)", current.Who);
        Assert.AreEqual(5L, (await Ledger.TakeNextAsync("restore", "i-me", null, CancellationToken.None)).Number);
    }

    [TestMethod]
    public async Task Current_OfAnEmptyGenerationObject_NamesIt()
    {
        await _store.PutAsync("generations/0000000003.json", new MemoryStream("null"u8.ToArray()), CancellationToken.None);
        var ex = await Assert.ThrowsExactlyAsync<InvalidDataException>(() => Ledger.CurrentAsync(CancellationToken.None));
        Assert.AreEqual($"{_store.Description}/generations/0000000003.json is empty.", ex.Message);
    }

    [TestMethod]
    public async Task Takeovers_AreTheEpochOpenersOnly_OldestFirst()
    {
        // Written newest first, so a listing in creation order would come out reversed.
        await PutGenerationAsync(3_000_001, restoredFrom: "set-c");
        await PutGenerationAsync(2_000_002);
        await PutGenerationAsync(2_000_001, restoredFrom: "set-b");
        await PutGenerationAsync(1_000_001, restoredFrom: "set-a");
        await PutGenerationAsync(1);
        await PutGenerationAsync(2);
        var takeovers = await Ledger.TakeoversAsync(CancellationToken.None);
        CollectionAssert.AreEqual(new[] { 1_000_001L, 2_000_001L, 3_000_001L }, takeovers.Select(t => t.Number).ToArray());
        CollectionAssert.AreEqual(new[] { "set-a", "set-b", "set-c" }, takeovers.Select(t => t.RestoredFrom).ToArray());
    }

    [TestMethod]
    public async Task Read_OfAMissingNumber_IsNull()
    {
        await PutGenerationAsync(1);
        Assert.IsNull(await Ledger.ReadAsync(2, CancellationToken.None));
        Assert.AreEqual("other-host", (await Ledger.ReadAsync(1, CancellationToken.None))!.Host);
    }

    [TestMethod]
    public async Task Held_IsThePendingGeneration_OnlyWhenTheStoreHasItWithThisNodesClaim()
    {
        Assert.IsNull(await Ledger.HeldAsync(null, CancellationToken.None));
        var state = new NodeState(NodeStatus.Restored, Now, "set", "i-me", null) { Generation = 1, PendingGeneration = 2, PendingClaim = "aa" };
        Assert.AreEqual(1L, await Ledger.HeldAsync(state, CancellationToken.None), "generation 2 is not in the store");
        var two = new Generation(2, "me", "i-me", "restore", null, Now) { Claim = "aa" };
        Assert.IsTrue(await _store.TryCreateAsync("generations/0000000002.json", JsonSerializer.SerializeToUtf8Bytes(two, Json), CancellationToken.None));
        Assert.AreEqual(2L, await Ledger.HeldAsync(state, CancellationToken.None));
        Assert.AreEqual(1L, await Ledger.HeldAsync(state with { PendingClaim = "bb" }, CancellationToken.None), "another node's claim");
        Assert.AreEqual(1L, await Ledger.HeldAsync(state with { PendingClaim = null }, CancellationToken.None), "no claim recorded: nothing proves it");
    }

    [TestMethod]
    public async Task TakeAndRecord_WithoutAStateFile_RecordsAManualStateHoldingIt()
    {
        var taken = await Ledger.TakeAndRecordAsync(_stateFile, "restore", "i-me", "set-x", CancellationToken.None, region: "eu-west-1");
        Assert.AreEqual(1L, taken.Number);
        Assert.AreEqual(Environment.MachineName, taken.Host);
        Assert.AreEqual("i-me", taken.InstanceId);
        Assert.AreEqual("restore", taken.Reason);
        Assert.AreEqual("set-x", taken.RestoredFrom);
        Assert.AreEqual(Now, taken.TakenAt);
        Assert.AreEqual("eu-west-1", taken.Region);
        StringAssert.Matches(taken.Claim, new System.Text.RegularExpressions.Regex("^[0-9a-f]{32}$"));

        var state = NodeStateFile.Read(_stateFile)!;
        Assert.AreEqual(NodeStatus.Manual, state.Status);
        Assert.AreEqual(1L, state.Generation);
        Assert.IsNull(state.PendingGeneration);
        Assert.IsNull(state.PendingClaim);
        Assert.AreEqual("i-me", state.InstanceId);
        Assert.AreEqual("no restore recorded on this node before it took a fencing generation", state.Reason);
        Assert.AreEqual(Now, state.At);

        var stored = await Ledger.ReadAsync(1, CancellationToken.None);
        Assert.AreEqual(taken.Claim, stored!.Claim, "the store's copy carries the claim");
        Assert.AreEqual("eu-west-1", stored.Region);
    }

    [TestMethod]
    public async Task TakeAndRecord_StartsAboveTheHigherOfTheStoreAndWhatTheNodeHolds()
    {
        // The node holds 5 but the store's newest is 3 (changed behind its back): the next is 6, never a number it already had.
        await PutGenerationAsync(3);
        NodeStateFile.Write(_stateFile, new NodeState(NodeStatus.Restored, Now.AddDays(-1), "set-old", "i-me", null) { Generation = 5 });
        Assert.AreEqual(6L, (await Ledger.TakeAndRecordAsync(_stateFile, "restore", "i-me", null, CancellationToken.None)).Number);
        var state = NodeStateFile.Read(_stateFile)!;
        Assert.AreEqual(6L, state.Generation);
        Assert.AreEqual(NodeStatus.Restored, state.Status, "the recorded state is kept, only the generation changes");
        Assert.AreEqual("set-old", state.BackupId);
        Assert.AreEqual(Now, state.At);

        // And the store higher than the node: above the store's.
        await PutGenerationAsync(9);
        Assert.AreEqual(10L, (await Ledger.TakeAndRecordAsync(_stateFile, "restore", "i-me", null, CancellationToken.None)).Number);
    }

    [TestMethod]
    public async Task TakeAndRecord_ATakeoverOpensTheNextEpoch_AboveWhatTheNodeHolds()
    {
        await PutGenerationAsync(7);
        NodeStateFile.Write(_stateFile, new NodeState(NodeStatus.Restored, Now, "s", "i-me", null) { Generation = 1_000_004 });
        Assert.AreEqual(2_000_001L, (await Ledger.TakeAndRecordAsync(_stateFile, "takeover", "i-me", "s", CancellationToken.None, takeOver: true)).Number);
        Assert.AreEqual(3_000_001L, (await Ledger.TakeAndRecordAsync(_stateFile, "takeover", "i-me", "s", CancellationToken.None, takeOver: true)).Number);
        Assert.AreEqual(3_000_002L, (await Ledger.TakeAndRecordAsync(_stateFile, "restore", "i-me", "s", CancellationToken.None)).Number);
    }

    [TestMethod]
    public async Task TakingTheLastNumberOfAnEpoch_IsRefused_ATakeoverIsNot()
    {
        await PutGenerationAsync(999_998);
        Assert.AreEqual(999_999L, (await Ledger.TakeNextAsync("restore", "i-me", null, CancellationToken.None)).Number);
        var ex = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() => Ledger.TakeNextAsync("restore", "i-me", null, CancellationToken.None));
        Assert.AreEqual($"Epoch 0 of {_store.Description} has no generation number left; take over (a new epoch) instead.", ex.Message);
        Assert.AreEqual(1_000_001L, (await Ledger.TakeAndRecordAsync(_stateFile, "takeover", "i-me", null, CancellationToken.None, takeOver: true)).Number);
    }

    /// <summary>A store where another node creates each generation just before this one tries to.</summary>
    private sealed class AlwaysBeatenStore(IBackupStore inner, int beaten) : ForwardingStore(inner)
    {
        public int Attempts { get; private set; }

        public override async Task<bool> TryCreateAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
        {
            Attempts++;
            if (Attempts > beaten) return await Inner.TryCreateAsync(key, content, cancellationToken);
            var number = long.Parse(key["generations/".Length..^".json".Length], System.Globalization.CultureInfo.InvariantCulture);
            var other = new Generation(number, "racer", "i-racer", "restore", null, Now);
            Assert.IsTrue(await Inner.TryCreateAsync(key, JsonSerializer.SerializeToUtf8Bytes(other, Json), cancellationToken));
            return false;
        }
    }

    [TestMethod]
    public async Task TakeAndRecord_BeatenToANumber_TakesTheNextOne_AndNeverRecordsTheLostClaimAsHeld()
    {
        var store = new AlwaysBeatenStore(_store, beaten: 2);
        var taken = await new GenerationLedger(store, new ManualTimeProvider(Now)).TakeAndRecordAsync(_stateFile, "restore", "i-me", null, CancellationToken.None);
        Assert.AreEqual(3L, taken.Number);
        Assert.AreEqual(3, store.Attempts);
        var state = NodeStateFile.Read(_stateFile)!;
        Assert.AreEqual(3L, state.Generation);
        Assert.IsNull(state.PendingGeneration);
        Assert.AreEqual("racer", (await Ledger.ReadAsync(2, CancellationToken.None))!.Host);
        Assert.IsNull(await Ledger.WhyWritingIsRefusedAsync(state.Generation, CancellationToken.None));
    }

    [TestMethod]
    public async Task Taking_BeatenTwentyTimes_GivesUp_SayingSo()
    {
        var store = new AlwaysBeatenStore(_store, beaten: int.MaxValue);
        var ledger = new GenerationLedger(store, new ManualTimeProvider(Now));
        var ex = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() => ledger.TakeAndRecordAsync(_stateFile, "restore", "i-me", null, CancellationToken.None));
        Assert.AreEqual($"Could not take a fencing generation in {_store.Description}: other nodes kept taking the next number.", ex.Message);
        Assert.AreEqual(20, store.Attempts);
        var state = NodeStateFile.Read(_stateFile)!;
        Assert.IsNull(state.Generation, "the node holds nothing it did not take");
        Assert.AreEqual(20L, state.PendingGeneration, "the last claim stays pending; the store has 20 without it");
        Assert.AreEqual(20L, (await Ledger.CurrentAsync(CancellationToken.None))!.Number);

        var next = new AlwaysBeatenStore(_store, beaten: int.MaxValue);
        var ex2 = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() => new GenerationLedger(next, new ManualTimeProvider(Now)).TakeNextAsync("restore", "i-me", null, CancellationToken.None));
        Assert.AreEqual(ex.Message, ex2.Message);
        Assert.AreEqual(20, next.Attempts);
        Assert.AreEqual(40L, (await Ledger.CurrentAsync(CancellationToken.None))!.Number);
    }

    [TestMethod]
    public async Task WhyWritingIsRefused_SaysWhichWayTheNodeIsOut()
    {
        Assert.IsNull(await Ledger.WhyWritingIsRefusedAsync(null, CancellationToken.None), "fencing not in use: anyone writes");
        Assert.IsNull(await Ledger.WhyWritingIsRefusedAsync(4, CancellationToken.None), "fencing not in use: anyone writes");
        await PutGenerationAsync(3, host: "ip-10-0-0-9", region: "us-east-1");
        Assert.IsNull(await Ledger.WhyWritingIsRefusedAsync(3, CancellationToken.None));
        var who = $"generation 3 was taken by ip-10-0-0-9 (i-3) in region us-east-1 at {Now.AddHours(-1):u} (restore)";
        Assert.AreEqual($"a node took over this store ({who}) and this node holds no generation; it stops writing backups",
            await Ledger.WhyWritingIsRefusedAsync(null, CancellationToken.None));
        Assert.AreEqual("this node holds generation 4 but the store's newest is 3; the store was changed behind its back, so it stops writing backups",
            await Ledger.WhyWritingIsRefusedAsync(4, CancellationToken.None));
        Assert.AreEqual($"a newer node took over this store ({who}); this node holds generation 2 and stops writing backups",
            await Ledger.WhyWritingIsRefusedAsync(2, CancellationToken.None));
    }
}
