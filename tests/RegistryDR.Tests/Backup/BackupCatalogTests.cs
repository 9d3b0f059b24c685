using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Backup;

/// <summary>
/// What the catalogue makes of a store listing, a named set and a manifest, on a file store
/// without a database. Written against the mutants Stryker left alive in Backup/BackupCatalog.cs
/// (docs/testing.md, "Mutation testing").
/// </summary>
[TestClass]
public sealed class BackupCatalogTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 30, 10, 0, 0, TimeSpan.Zero);

    private TempDirectory _dir = null!;
    private FileSystemStore _store = null!;

    [TestInitialize]
    public void Init()
    {
        _dir = new TempDirectory("rdr-catalog-");
        _store = new FileSystemStore(_dir.Path);
    }

    [TestCleanup]
    public void Cleanup() => _dir.Dispose();

    [TestMethod]
    public void Group_CountsEachSetsObjectsAndBytes_NewestFirst_AndSkipsWhatIsNoSet()
    {
        const string older = "20261130T100000Z-aaaaaa", newer = "20261130T110000Z-bbbbbb";
        var items = new[]
        {
            new StoreItem("backups/" + older + "/database.dump.gz", 1000, T0),
            new StoreItem("backups/" + older + "/manifest.json", 200, T0),
            new StoreItem("backups/" + older + "/config.tar.gz", 30, T0),
            new StoreItem("backups/" + newer + "/database.dump.gz", 7, T0),
            // A manifest below the set's own directory does not make the set complete.
            new StoreItem("backups/" + newer + "/sub/manifest.json", 5, T0),
            new StoreItem("backups/stray-file", 1, T0),
            new StoreItem("backups//manifest.json", 1, T0),
            new StoreItem("backups/not-a-backup-id/manifest.json", 1, T0),
        };
        var sets = BackupCatalog.Group(items);
        CollectionAssert.AreEqual(
            new[]
            {
                new BackupSetInfo(newer, T0.AddHours(1), 12, 2, BackupSetState.Incomplete),
                new BackupSetInfo(older, T0, 1230, 3, BackupSetState.Complete),
            },
            sets.ToArray());
        Assert.IsFalse(sets[0].IsComplete);
        Assert.IsTrue(sets[1].IsComplete);
    }

    [TestMethod]
    public async Task Resolve_ANamedSet_MustExistAndBeComplete_LatestIsTheNewestRestorable()
    {
        var complete = await SyntheticSets.WriteAsync(_store, T0);
        var incomplete = await SyntheticSets.WriteAsync(_store, T0.AddHours(1), complete: false);
        var catalog = new BackupCatalog(_store);

        Assert.AreEqual((complete, (RestorableSelection?)null), await catalog.ResolveWithSkippedAsync(complete, CancellationToken.None));
        var missing = await Assert.ThrowsExactlyAsync<BackupNotFoundException>(() => catalog.ResolveAsync("20261130T120000Z-cccccc", CancellationToken.None));
        Assert.AreEqual($"Backup '20261130T120000Z-cccccc' does not exist in {_store.Description}; `registry-dr list` shows what does.", missing.Message);
        var partial = await Assert.ThrowsExactlyAsync<BackupNotFoundException>(() => catalog.ResolveAsync(incomplete, CancellationToken.None));
        Assert.AreEqual($"Backup '{incomplete}' in {_store.Description} is incomplete (it has no manifest) and cannot be restored.", partial.Message);

        foreach (var latest in new[] { "latest", "", null })
        {
            var (id, selection) = await catalog.ResolveWithSkippedAsync(latest, CancellationToken.None);
            Assert.AreEqual(complete, id, $"'{latest}'");
            Assert.AreEqual(incomplete, selection!.Skipped.Single().BackupId);
        }
    }

    [TestMethod]
    public async Task ReadManifest_UpTo4MiB_IsRead_AByteMoreIsRefused()
    {
        var id = await SyntheticSets.WriteAsync(_store, T0);
        var json = (await new BackupCatalog(_store).ReadManifestAsync(id, CancellationToken.None)).ToJson();
        const int limit = 4 * 1024 * 1024;
        // The same manifest padded with trailing white space to exactly the limit, then one byte over it.
        var padded = json.Concat(Enumerable.Repeat((byte)' ', limit - json.Length)).ToArray();
        await _store.PutAsync(BackupLayout.ManifestKey(id), new MemoryStream(padded), CancellationToken.None);
        Assert.AreEqual(id, (await new BackupCatalog(_store).ReadManifestAsync(id, CancellationToken.None)).BackupId);

        await _store.PutAsync(BackupLayout.ManifestKey(id), new MemoryStream([.. padded, (byte)' ']), CancellationToken.None);
        var ex = await Assert.ThrowsExactlyAsync<InvalidManifestException>(() => new BackupCatalog(_store).ReadManifestAsync(id, CancellationToken.None));
        Assert.AreEqual($"The manifest of backup {id} is refused: it is larger than 4 MiB.", ex.Message);
    }
}
