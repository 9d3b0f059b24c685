using System.Text.Json;
using RegistryDR.Backup;
using RegistryDR.Stores;

namespace RegistryDR.Continuous;

/// <summary>One archived WAL file as the store lists it.</summary>
public sealed record WalObject(WalFileName File, string Sha256, string Key, long StoredSize, DateTimeOffset ArchivedAt);

/// <summary>
/// The cluster a continuous archive belongs to, written once (conditionally) by the first base
/// backup or WAL push: WAL or base backups of any other cluster are refused.
/// </summary>
public sealed record ClusterRecord(string SystemIdentifier, string ServerVersion, long WalSegmentSize, string Host, DateTimeOffset CreatedAt)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    public static async Task<ClusterRecord?> ReadAsync(IBackupStore store, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = await store.OpenReadAsync(ContinuousLayout.ClusterKey, cancellationToken);
            var record = await JsonSerializer.DeserializeAsync<ClusterRecord>(stream, Json, cancellationToken);
            if (record is null || string.IsNullOrEmpty(record.SystemIdentifier) || !record.SystemIdentifier.All(char.IsAsciiDigit))
                throw new InvalidDataException($"{store.Description}/{ContinuousLayout.ClusterKey} does not name a system identifier.");
            return record;
        }
        catch (StoreObjectNotFoundException)
        {
            return null;
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{store.Description}/{ContinuousLayout.ClusterKey} is not valid JSON: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// The store's record, created from <paramref name="mine"/> when there is none yet. Throws
    /// <see cref="ForeignClusterException"/> when the store belongs to another cluster.
    /// </summary>
    public static async Task<ClusterRecord> ClaimOrCheckAsync(IBackupStore store, ClusterRecord mine, CancellationToken cancellationToken)
    {
        var existing = await ReadAsync(store, cancellationToken);
        if (existing is null)
        {
            if (await store.TryCreateAsync(ContinuousLayout.ClusterKey, mine.ToJson(), cancellationToken)) return mine;
            existing = await ReadAsync(store, cancellationToken) ?? throw new InvalidDataException($"{store.Description}/{ContinuousLayout.ClusterKey} could neither be created nor read.");
        }
        if (existing.SystemIdentifier != mine.SystemIdentifier)
            throw new ForeignClusterException(
                $"the continuous archive in {store.Description} belongs to PostgreSQL cluster {existing.SystemIdentifier} (first archived from {existing.Host} at {existing.CreatedAt:u}); " +
                $"this server is cluster {mine.SystemIdentifier}. Only the cluster that was restored from this store may archive to it: restore this node from the store, or point Store:Url elsewhere.");
        return existing;
    }
}

/// <summary>WAL or a base backup of another PostgreSQL cluster than the one the store's archive belongs to.</summary>
public sealed class ForeignClusterException(string message) : Exception(message);

/// <summary>The archive as it is now: complete base backups (manifests read and checked), every WAL object, and the verified timeline histories.</summary>
public sealed record ArchiveView(IReadOnlyList<BaseBackupManifest> Bases, IReadOnlyList<WalObject> Wal, IReadOnlyDictionary<uint, IReadOnlyList<TimelineSwitch>> Histories, IReadOnlyList<string> Unreadable);

/// <summary>Lists the base backups and the WAL archive of a store.</summary>
public sealed class ContinuousCatalog(IBackupStore store)
{
    public IBackupStore Store => store;

    /// <summary>Every base backup set, newest first (complete when its manifest exists), listed and grouped as the logical sets are (<see cref="BackupCatalog"/>).</summary>
    public Task<IReadOnlyList<BackupSetInfo>> ListBaseBackupsAsync(CancellationToken cancellationToken) =>
        BackupCatalog.ListAsync(store, ContinuousLayout.BaseRoot, ContinuousLayout.ManifestFileName, cancellationToken);

    public async Task<BaseBackupManifest> ReadManifestAsync(string backupId, CancellationToken cancellationToken) =>
        BaseBackupManifest.Parse(await BackupCatalog.ReadManifestBytesAsync(store, ContinuousLayout.ManifestKey(backupId), backupId, cancellationToken), backupId);

    /// <summary>The newest complete base backup's start time, or null when there is none.</summary>
    public async Task<DateTimeOffset?> NewestCompleteTimeAsync(CancellationToken cancellationToken) =>
        (await ListBaseBackupsAsync(cancellationToken)).FirstOrDefault(s => s.IsComplete)?.Time;

    /// <summary>Every archived WAL file (keys that are not WAL objects are ignored), in name order.</summary>
    public async Task<IReadOnlyList<WalObject>> ListWalAsync(CancellationToken cancellationToken)
    {
        var result = new List<WalObject>();
        await foreach (var item in store.ListAsync(ContinuousLayout.WalRoot, cancellationToken))
            if (ContinuousLayout.TryParseWalKey(item.Key, out var name, out var sha))
                result.Add(new WalObject(name!, sha, item.Key, item.Size, item.LastModified));
        result.Sort((a, b) => string.CompareOrdinal(a.File.Name, b.File.Name));
        return result;
    }

    /// <summary>The copies of one WAL file in the store (normally none or one).</summary>
    public async Task<IReadOnlyList<WalObject>> FindWalAsync(string name, CancellationToken cancellationToken)
    {
        var result = new List<WalObject>();
        await foreach (var item in store.ListAsync(ContinuousLayout.WalNamePrefix(name), cancellationToken))
            if (ContinuousLayout.TryParseWalKey(item.Key, out var parsed, out var sha) && parsed!.Name == name)
                result.Add(new WalObject(parsed, sha, item.Key, item.Size, item.LastModified));
        return result;
    }

    /// <summary>
    /// Everything a recovery plan needs: complete base backups whose manifests pass their checks
    /// (the others are reported to <paramref name="unreadable"/> and left out), the WAL listing, and
    /// every timeline history file, read back and checked against its SHA-256.
    /// </summary>
    public async Task<ArchiveView> ReadArchiveAsync(Action<string>? unreadable, CancellationToken cancellationToken)
    {
        var bases = new List<BaseBackupManifest>();
        var problems = new List<string>();
        // Every object under the base root, with its size: a manifest can be in the store before its
        // artifacts (S3 replication copies objects late and in any order; a copy by hand may stop
        // part-way), and such a base backup must be passed over, as RestorableSets does for a
        // logical set, not chosen and then fail the restore.
        var objects = new Dictionary<string, long>(StringComparer.Ordinal);
        await foreach (var item in store.ListAsync(ContinuousLayout.BaseRoot, cancellationToken)) objects[item.Key] = item.Size;
        foreach (var set in (await ListBaseBackupsAsync(cancellationToken)).Where(s => s.IsComplete))
        {
            BaseBackupManifest manifest;
            try { manifest = await ReadManifestAsync(set.BackupId, cancellationToken); }
            catch (InvalidManifestException ex) { problems.Add(ex.Message); unreadable?.Invoke(ex.Message); continue; }
            var notWhole = manifest.Artifacts
                .Select(a => !objects.TryGetValue(a.Key, out var size) ? $"{a.Key} is not in the store" : size != a.Size ? $"{a.Key} is {size} bytes, the manifest says {a.Size}" : null)
                .OfType<string>().ToList();
            if (notWhole.Count == 0) { bases.Add(manifest); continue; }
            var problem = $"Base backup {set.BackupId} is passed over: {notWhole.Count} of its {manifest.Artifacts.Count} artifacts are missing or not whole yet: {string.Join(", ", notWhole)}";
            problems.Add(problem);
            unreadable?.Invoke(problem);
        }
        var wal = await ListWalAsync(cancellationToken);
        var histories = new Dictionary<uint, IReadOnlyList<TimelineSwitch>>();
        foreach (var h in wal.Where(w => w.File.Kind == WalFileKind.History))
        {
            var bytes = await WalCodec.ReadVerifiedAsync(store, h, cancellationToken);
            histories[h.File.Timeline] = TimelineHistory.Parse(System.Text.Encoding.UTF8.GetString(bytes), h.File.Timeline);
        }
        return new ArchiveView(bases, wal, histories, problems);
    }
}
