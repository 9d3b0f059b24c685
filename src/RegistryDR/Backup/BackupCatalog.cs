using System.Text.Json.Serialization;
using RegistryDR.Stores;

namespace RegistryDR.Backup;

/// <summary>One backup set as the store shows it.</summary>
public sealed record BackupSetInfo(
    string BackupId,
    DateTimeOffset Time,
    long Size,
    int Objects,
    [property: JsonConverter(typeof(JsonStringEnumConverter))] BackupSetState State)
{
    public bool IsComplete => State == BackupSetState.Complete;
}

public enum BackupSetState
{
    /// <summary>The manifest is present: every artifact was written.</summary>
    Complete,
    /// <summary>No manifest: a backup that failed, was cancelled or is still running. Never offered for restore.</summary>
    Incomplete,
}

/// <summary>Lists the sets in a store and resolves "latest".</summary>
public sealed class BackupCatalog(IBackupStore store)
{
    public IBackupStore Store => store;

    /// <summary>Every set, newest first.</summary>
    public Task<IReadOnlyList<BackupSetInfo>> ListAsync(CancellationToken cancellationToken) =>
        ListAsync(store, BackupLayout.Root, BackupManifest.FileName, cancellationToken);

    /// <summary>
    /// Every set under <paramref name="root"/> (<c>&lt;root&gt;&lt;id&gt;/…</c>), newest first, complete when
    /// it holds <paramref name="manifestFileName"/>: the logical sets under <see cref="BackupLayout.Root"/>
    /// and continuous mode's base backups are listed and grouped the same way.
    /// </summary>
    internal static async Task<IReadOnlyList<BackupSetInfo>> ListAsync(IBackupStore store, string root, string manifestFileName, CancellationToken cancellationToken)
    {
        var items = new List<StoreItem>();
        await foreach (var item in store.ListAsync(root, cancellationToken)) items.Add(item);
        return Group(items, root, manifestFileName);
    }

    /// <summary>The sets that a listing of <see cref="BackupLayout.Root"/> shows, newest first.</summary>
    internal static IReadOnlyList<BackupSetInfo> Group(IEnumerable<StoreItem> items) => Group(items, BackupLayout.Root, BackupManifest.FileName);

    /// <summary>The sets that a listing of <paramref name="root"/> shows, newest first; keys that are not <c>&lt;root&gt;&lt;valid id&gt;/…</c> are ignored.</summary>
    internal static IReadOnlyList<BackupSetInfo> Group(IEnumerable<StoreItem> items, string root, string manifestFileName)
    {
        var sets = new Dictionary<string, (long size, int count, bool manifest)>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            var rest = item.Key[root.Length..];
            var slash = rest.IndexOf('/');
            if (slash <= 0) continue;
            var id = rest[..slash];
            if (!BackupLayout.IsValidBackupId(id)) continue;
            sets.TryGetValue(id, out var s);
            var isManifest = rest[(slash + 1)..] == manifestFileName;
            sets[id] = (s.size + item.Size, s.count + 1, s.manifest || isManifest);
        }
        return sets
            .Select(kv =>
            {
                BackupLayout.TryParseTime(kv.Key, out var time);
                return new BackupSetInfo(kv.Key, time, kv.Value.size, kv.Value.count, kv.Value.manifest ? BackupSetState.Complete : BackupSetState.Incomplete);
            })
            .OrderByDescending(s => s.BackupId, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>
    /// "latest" (or null) means the newest restorable set (<see cref="RestorableSets"/>: the one
    /// definition every command shares); anything else must name a complete set.
    /// </summary>
    public async Task<string> ResolveAsync(string? idOrLatest, CancellationToken cancellationToken) =>
        (await ResolveWithSkippedAsync(idOrLatest, cancellationToken)).BackupId;

    /// <summary>As <see cref="ResolveAsync"/>, with the newer sets "latest" passed over and why (empty for a named set).</summary>
    public async Task<(string BackupId, RestorableSelection? Selection)> ResolveWithSkippedAsync(string? idOrLatest, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(idOrLatest) || idOrLatest == "latest")
        {
            var selection = await new RestorableSets(store).ResolveLatestAsync(cancellationToken);
            return (selection.Newest!.BackupId, selection);
        }
        var sets = await ListAsync(cancellationToken);
        var named = sets.FirstOrDefault(s => s.BackupId == idOrLatest)
            ?? throw new BackupNotFoundException($"Backup '{idOrLatest}' does not exist in {store.Description}; `registry-dr list` shows what does.");
        if (!named.IsComplete)
            throw new BackupNotFoundException($"Backup '{idOrLatest}' in {store.Description} is incomplete (it has no manifest) and cannot be restored.");
        return (named.BackupId, null);
    }

    public async Task<BackupManifest> ReadManifestAsync(string backupId, CancellationToken cancellationToken) =>
        BackupManifest.Parse(await ReadManifestBytesAsync(store, BackupLayout.ManifestKey(backupId), backupId, cancellationToken), backupId);

    /// <summary>A manifest's bytes (a logical set's or a base backup's); a manifest is a few KB, so anything over 4 MiB is refused rather than read into memory.</summary>
    /// <exception cref="InvalidManifestException">It is larger than 4 MiB.</exception>
    internal static async Task<byte[]> ReadManifestBytesAsync(IBackupStore store, string key, string backupId, CancellationToken cancellationToken)
    {
        await using var stream = await store.OpenReadAsync(key, cancellationToken);
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int n;
        while ((n = await stream.ReadAsync(chunk, cancellationToken)) > 0)
        {
            buffer.Write(chunk, 0, n);
            if (buffer.Length > 4 * 1024 * 1024)
                throw new InvalidManifestException(backupId, "it is larger than 4 MiB.");
        }
        return buffer.ToArray();
    }
}

public sealed class BackupNotFoundException(string message) : Exception(message);
