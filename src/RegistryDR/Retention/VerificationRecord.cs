using System.Text.Json;
using RegistryDR.Backup;
using RegistryDR.Stores;

namespace RegistryDR.Retention;

/// <summary>
/// <c>backups/&lt;id&gt;/verified.json</c>: written when a set has been read back and checked
/// (<c>verify</c>, a restore drill, a real restore). Retention never deletes the newest verified
/// set, so a set proven restorable outlives newer sets nobody has checked yet.
/// </summary>
/// <remarks>
/// The record lives inside the set's own prefix, so the catalog counts it as one of the set's
/// objects and it is deleted with the set. It is not the manifest, so it never makes a set
/// complete: a record left behind without a manifest (say, a verify that finished while prune
/// deleted its set) is an incomplete set, removed like any other once it is past the grace.
/// </remarks>
public static class VerificationRecord
{
    public const string FileName = "verified.json";

    /// <summary>Who may vouch for a set.</summary>
    private static readonly string[] Verifiers = ["verify", "drill", "restore"];

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static string Key(string backupId)
    {
        if (!BackupLayout.IsValidBackupId(backupId))
            throw new ArgumentException($"'{backupId}' is not a backup id.", nameof(backupId));
        return BackupLayout.SetPrefix(backupId) + FileName;
    }

    /// <summary>Records that <paramref name="backupId"/> was checked by <paramref name="by"/> ("verify", "drill" or "restore"). Call only after the check succeeded.</summary>
    public static async Task WriteAsync(IBackupStore store, string backupId, string by, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(time);
        if (!Verifiers.Contains(by, StringComparer.Ordinal))
            throw new ArgumentException($"'{by}' is not one of {string.Join(", ", Verifiers)}.", nameof(by));
        var key = Key(backupId);
        var body = JsonSerializer.SerializeToUtf8Bytes(new Record(backupId, time.GetUtcNow(), by), Json);
        await store.PutAsync(key, new MemoryStream(body, writable: false), cancellationToken);
    }

    /// <summary>
    /// The ids of every set that has a record, complete or not (the planner only trusts it on
    /// complete sets). Presence is what counts: reading each record would cost a request per set
    /// and a forged one could only make retention keep more.
    /// </summary>
    /// <remarks>A set that a later read-back found corrupt (<see cref="CorruptionRecord"/>) is not verified any more, whatever its older record says.</remarks>
    /// <param name="root">Logical sets (<see cref="BackupLayout.Root"/>, the default) or continuous base backups (<see cref="Continuous.ContinuousLayout.BaseRoot"/>).</param>
    public static async Task<IReadOnlySet<string>> ReadVerifiedIdsAsync(IBackupStore store, CancellationToken cancellationToken, string root = BackupLayout.Root)
    {
        ArgumentNullException.ThrowIfNull(store);
        var records = await BackupLayout.ReadRecordIdsAsync(store, [FileName, CorruptionRecord.FileName], cancellationToken, root);
        var ids = records[FileName];
        ids.ExceptWith(records[CorruptionRecord.FileName]);
        return ids;
    }

    private sealed record Record(string BackupId, DateTimeOffset VerifiedAt, string By);
}
