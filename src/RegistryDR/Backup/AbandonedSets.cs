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
            // The marker goes last, so an interrupted clean-up is recognised and finished next time.
            foreach (var key in keys.OrderBy(k => k == BackupLayout.InProgressKey(set.BackupId)))
                await store.DeleteAsync(key, cancellationToken);
            LogRemoved(set.BackupId, marker.ProcessId, marker.StartedAt);
            removed.Add(set.BackupId);
        }
        return removed;
    }

    /// <summary>A reused pid counts as alive: leaving a leftover for retention is safe, deleting a live set is not.</summary>
    private static bool IsAlive(int pid) => pid == Environment.ProcessId || Directory.Exists($"/proc/{pid}");

    [LoggerMessage(1100, LogLevel.Warning, "Removed the partial set {BackupId} left by process {ProcessId} (started {StartedAt:u}), which died before finishing it")]
    private partial void LogRemoved(string backupId, int processId, DateTimeOffset startedAt);
}
