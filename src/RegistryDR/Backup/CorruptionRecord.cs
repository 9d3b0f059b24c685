using System.Text.Json;
using Microsoft.Extensions.Logging;
using RegistryDR.Stores;

namespace RegistryDR.Backup;

/// <summary>
/// <c>backups/&lt;id&gt;/corrupt.json</c>: written when <c>verify</c>, a restore drill or a restore
/// read a set back and found an artifact whose bytes are not what was backed up (a SHA-256 or size
/// that does not match, an unreadable dump or archive, row counts that differ after loading). From
/// then on <see cref="RestorableSets"/> judges the set <see cref="SetCondition.Corrupt"/>: <c>status</c>
/// stops vouching for it, <c>list</c> shows why, and <c>restore latest</c>, the agent and the
/// worker pass over it to the newest older set, instead of each finding the same damage again.
/// </summary>
/// <remarks>
/// Only a verdict on the bytes is recorded: a store or database that could not be reached proves
/// nothing about the set and writes no record. A <c>verify</c> of the set that passes (after the
/// artifact was repaired, say from the replica) deletes the record. Like <c>verified.json</c> it lives
/// inside the set's prefix, so it is deleted with the set and never makes a set complete.
/// </remarks>
public static class CorruptionRecord
{
    public const string FileName = "corrupt.json";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static string Key(string backupId) => BackupLayout.SetPrefix(backupId) + FileName;

    /// <summary>What was found, by whom (<c>verify</c>, <c>drill</c>, <c>restore</c>) and when (UTC).</summary>
    public sealed record Finding(string BackupId, DateTimeOffset FoundAt, string By, string Problem);

    /// <summary>
    /// Records the finding. Never throws for the store's own failures: the caller is already
    /// failing with the finding itself, which must not be replaced by a second error; a record that
    /// could not be written is logged as a warning.
    /// </summary>
    public static async Task TryWriteAsync(IBackupStore store, string backupId, string by, string problem, TimeProvider time, ILogger logger, CancellationToken cancellationToken)
    {
        try
        {
            var body = JsonSerializer.SerializeToUtf8Bytes(new Finding(backupId, time.GetUtcNow(), by, problem), Json);
            await store.PutAsync(Key(backupId), new MemoryStream(body, writable: false), cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("Backup {BackupId} is corrupt, but that could not be recorded in {Key} ({Reason}): later restores of 'latest' will try it again", backupId, Key(backupId), ex.Message);
        }
    }

    /// <summary>Deletes the record, if there is one (a verify of the set passed); true when there was one.</summary>
    /// <remarks>Read first: in a versioned bucket every delete adds a delete marker, even of nothing.</remarks>
    public static async Task<bool> ClearAsync(IBackupStore store, string backupId, CancellationToken cancellationToken)
    {
        if (await ReadAsync(store, backupId, cancellationToken) is null) return false;
        await store.DeleteAsync(Key(backupId), cancellationToken);
        return true;
    }

    /// <summary>The recorded finding, or null when the record is gone; a record that does not parse still marks the set, with that said.</summary>
    public static async Task<Finding?> ReadAsync(IBackupStore store, string backupId, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = await store.OpenReadAsync(Key(backupId), cancellationToken);
            using var buffer = new MemoryStream();
            await stream.CopyToAsync(buffer, cancellationToken);
            try
            {
                return JsonSerializer.Deserialize<Finding>(buffer.ToArray(), Json) ?? Unreadable(backupId);
            }
            catch (JsonException)
            {
                return Unreadable(backupId);
            }
        }
        catch (StoreObjectNotFoundException)
        {
            return null;
        }
    }

    /// <summary>The ids of every set that has a record (one listing; the records are not read).</summary>
    /// <param name="root">Logical sets (<see cref="BackupLayout.Root"/>, the default) or continuous base backups (<see cref="Continuous.ContinuousLayout.BaseRoot"/>: <c>continuous/base/&lt;id&gt;/corrupt.json</c>).</param>
    public static async Task<IReadOnlySet<string>> ReadIdsAsync(IBackupStore store, CancellationToken cancellationToken, string root = BackupLayout.Root) =>
        (await BackupLayout.ReadRecordIdsAsync(store, [FileName], cancellationToken, root))[FileName];

    private static Finding Unreadable(string backupId) => new(backupId, default, "?", $"{Key(backupId)} says so but cannot be read");
}
