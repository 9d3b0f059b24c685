using System.Text.Json;
using Microsoft.Extensions.Logging;
using RegistryDR.Stores;

namespace RegistryDR.Backup;

/// <summary>Who is writing a set: the first object of every backup, removed once its manifest is written.</summary>
public sealed record InProgressMarker(string Host, int ProcessId, DateTimeOffset StartedAt)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static InProgressMarker Create(DateTimeOffset startedAt) => new(Environment.MachineName, Environment.ProcessId, startedAt);

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    public static InProgressMarker? Parse(ReadOnlySpan<byte> json)
    {
        try { return JsonSerializer.Deserialize<InProgressMarker>(json, Json); }
        catch (JsonException) { return null; }
    }
}

/// <summary>Finds and removes a store's temporary objects (<see cref="IBackupStore.ListTemporariesAsync"/>).</summary>
public static class StoreTemporaries
{
    /// <summary>
    /// Removes the temporaries under <paramref name="prefix"/> (only those started before
    /// <paramref name="startedBefore"/>, when given) and returns them.
    /// </summary>
    public static async Task<IReadOnlyList<StoreTemporary>> DeleteAsync(IBackupStore store, string prefix, DateTimeOffset? startedBefore, CancellationToken cancellationToken)
    {
        var found = new List<StoreTemporary>();
        await foreach (var temporary in store.ListTemporariesAsync(prefix, cancellationToken))
            if (startedBefore is not { } cutoff || temporary.Started < cutoff) found.Add(temporary);
        foreach (var temporary in found) await store.DeleteTemporaryAsync(temporary, cancellationToken);
        return found;
    }
}

/// <summary>
/// A backup killed with SIGKILL (or a power cut) cannot remove its own partial set. When the
/// worker starts again on the same host, any incomplete set whose marker names this host and a
/// process that no longer runs is such a leftover, and is removed at once rather than waiting
/// for retention's grace period. Sets from other hosts, or whose writer may still be alive, are
/// left alone.
/// </summary>
public sealed partial class AbandonedSetCleaner(IBackupStore store, ILogger<AbandonedSetCleaner> logger)
{
    public async Task<IReadOnlyList<string>> CleanAsync(CancellationToken cancellationToken)
    {
        var removed = new List<string>();
        foreach (var set in (await new BackupCatalog(store).ListAsync(cancellationToken)).Where(s => !s.IsComplete))
        {
            InProgressMarker? marker;
            try
            {
                await using var stream = await store.OpenReadAsync(BackupLayout.InProgressKey(set.BackupId), cancellationToken);
                using var buffer = new MemoryStream();
                await stream.CopyToAsync(buffer, cancellationToken);
                marker = InProgressMarker.Parse(buffer.ToArray());
            }
            catch (StoreObjectNotFoundException)
            {
                continue; // no marker: not ours to judge; retention's grace period handles it
            }
            if (marker is null || marker.Host != Environment.MachineName || IsAlive(marker.ProcessId)) continue;
            var keys = new List<string>();
            await foreach (var item in store.ListAsync(BackupLayout.SetPrefix(set.BackupId), cancellationToken)) keys.Add(item.Key);
            // The marker goes last, so an interrupted clean-up is recognised and finished next time;
            // before it, the temporaries the dead writer's puts left (partial files, open uploads).
            foreach (var key in keys.Where(k => k != BackupLayout.InProgressKey(set.BackupId)))
                await store.DeleteAsync(key, cancellationToken);
            var temporaries = await StoreTemporaries.DeleteAsync(store, BackupLayout.SetPrefix(set.BackupId), null, cancellationToken);
            await store.DeleteAsync(BackupLayout.InProgressKey(set.BackupId), cancellationToken);
            if (temporaries.Count > 0) LogTemporaries(set.BackupId, temporaries.Count, temporaries.Sum(t => t.Bytes ?? 0));
            LogRemoved(set.BackupId, marker.ProcessId, marker.StartedAt);
            removed.Add(set.BackupId);
        }
        return removed;
    }

    /// <summary>A reused pid counts as alive: leaving a leftover for retention is safe, deleting a live set is not.</summary>
    private static bool IsAlive(int pid) => pid == Environment.ProcessId || Directory.Exists($"/proc/{pid}");

    [LoggerMessage(8050, LogLevel.Warning, "Removed {Count} temporary object(s) of the partial set {BackupId} ({Bytes} bytes known: partial files, or multipart uploads that were never completed)")]
    private partial void LogTemporaries(string backupId, int count, long bytes);

    [LoggerMessage(1100, LogLevel.Warning, "Removed the partial set {BackupId} left by process {ProcessId} (started {StartedAt:u}), which died before finishing it")]
    private partial void LogRemoved(string backupId, int processId, DateTimeOffset startedAt);
}
