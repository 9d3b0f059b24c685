using System.Text.Json;
using RegistryDR.Backup;
using RegistryDR.Retention;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using static RegistryDR.Tests.Retention.RetentionTestSupport;

namespace RegistryDR.Tests.Retention;

[TestClass]
public sealed class VerificationRecordTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);
    private string _dir = "";
    private FileSystemStore _store = null!;

    [TestInitialize]
    public void Init()
    {
        _dir = Directory.CreateTempSubdirectory("rdr-verified-").FullName;
        _store = new FileSystemStore(_dir);
    }

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    [TestMethod]
    public async Task Write_StoresWhoVerifiedWhatAndWhen_InsideTheSet()
    {
        var id = await WriteSetAsync(_store, Now.AddHours(-3));
        await VerificationRecord.WriteAsync(_store, id, "drill", new ManualTimeProvider(Now), CancellationToken.None);

        Assert.AreEqual($"backups/{id}/verified.json", VerificationRecord.Key(id));
        await using var stream = await _store.OpenReadAsync(VerificationRecord.Key(id), CancellationToken.None);
        using var json = await JsonDocument.ParseAsync(stream);
        Assert.AreEqual(id, json.RootElement.GetProperty("backupId").GetString());
        Assert.AreEqual(Now, json.RootElement.GetProperty("verifiedAt").GetDateTimeOffset());
        Assert.AreEqual("drill", json.RootElement.GetProperty("by").GetString());

        var sets = await new BackupCatalog(_store).ListAsync(CancellationToken.None);
        Assert.AreEqual(5, sets.Single().Objects, "the record is one of the set's objects");
        Assert.AreEqual(BackupSetState.Complete, sets.Single().State);
    }

    [TestMethod]
    public async Task ARecordWithoutAManifest_DoesNotMakeTheSetComplete()
    {
        var id = BackupLayout.NewBackupId(Now.AddDays(-2));
        await VerificationRecord.WriteAsync(_store, id, "verify", new ManualTimeProvider(Now), CancellationToken.None);

        var set = (await new BackupCatalog(_store).ListAsync(CancellationToken.None)).Single();
        Assert.AreEqual(id, set.BackupId);
        Assert.AreEqual(BackupSetState.Incomplete, set.State);
        var error = await Assert.ThrowsExactlyAsync<BackupNotFoundException>(() => new BackupCatalog(_store).ResolveAsync("latest", CancellationToken.None));
        StringAssert.Contains(error.Message, "no complete backup");
    }

    [TestMethod]
    public async Task ReadVerifiedIds_FindsExactlyTheRecords()
    {
        var a = await WriteSetAsync(_store, Now.AddHours(-3));
        var b = await WriteSetAsync(_store, Now.AddHours(-2));
        var c = await WriteSetAsync(_store, Now.AddHours(-1));
        var time = new ManualTimeProvider(Now);
        await VerificationRecord.WriteAsync(_store, a, "verify", time, CancellationToken.None);
        await VerificationRecord.WriteAsync(_store, c, "restore", time, CancellationToken.None);
        // Look-alikes that are not records.
        await _store.PutAsync($"backups/{b}/nested/verified.json", new MemoryStream([1]), CancellationToken.None);
        await _store.PutAsync("backups/not-an-id/verified.json", new MemoryStream([1]), CancellationToken.None);
        await _store.PutAsync($"elsewhere/{b}/verified.json", new MemoryStream([1]), CancellationToken.None);

        var ids = await VerificationRecord.ReadVerifiedIdsAsync(_store, CancellationToken.None);

        CollectionAssert.AreEquivalent(new[] { a, c }, ids.ToList());
    }

    [TestMethod]
    public async Task ASetFoundCorruptAfterItWasVerified_IsNotVerifiedAnyMore()
    {
        // Rules out retention protecting a set as "newest verified" after a read-back found it rotten.
        var a = await WriteSetAsync(_store, Now.AddHours(-2));
        var b = await WriteSetAsync(_store, Now.AddHours(-1));
        var time = new ManualTimeProvider(Now);
        await VerificationRecord.WriteAsync(_store, a, "verify", time, CancellationToken.None);
        await VerificationRecord.WriteAsync(_store, b, "verify", time, CancellationToken.None);
        await CorruptionRecord.TryWriteAsync(_store, b, "drill", "artifact 'database' is corrupt: test", time,
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, CancellationToken.None);

        CollectionAssert.AreEqual(new[] { a }, (await VerificationRecord.ReadVerifiedIdsAsync(_store, CancellationToken.None)).ToList());
    }

    [TestMethod]
    public async Task Write_RefusesUnknownVerifiersAndIds()
    {
        var time = new ManualTimeProvider(Now);
        var id = BackupLayout.NewBackupId(Now);
        await Assert.ThrowsExactlyAsync<ArgumentException>(() => VerificationRecord.WriteAsync(_store, id, "someone", time, CancellationToken.None));
        await Assert.ThrowsExactlyAsync<ArgumentException>(() => VerificationRecord.WriteAsync(_store, "../x", "verify", time, CancellationToken.None));
        Assert.ThrowsExactly<ArgumentException>(() => VerificationRecord.Key("latest"));
        Assert.IsEmpty(await KeysAsync(_store));
    }
}
