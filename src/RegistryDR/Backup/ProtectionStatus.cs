using System.Text.Json.Serialization;
using RegistryDR.Stores;
using RegistryDR.Worker;

namespace RegistryDR.Backup;

[JsonConverter(typeof(JsonStringEnumConverter<ProtectionState>))]
public enum ProtectionState
{
    /// <summary>The newest complete backup is younger than twice the schedule interval.</summary>
    Ok,
    /// <summary>The newest complete backup is older than twice the schedule interval.</summary>
    Late,
    /// <summary>There is no complete backup at all.</summary>
    Missing,
    /// <summary>The store could not be read, so protection cannot be judged.</summary>
    Unknown,
}

/// <summary>Is the registry protected right now, and what would a restore give back?</summary>
public sealed record ProtectionStatus(
    ProtectionState State,
    string Store,
    bool StoreReachable,
    string? StoreError,
    string Schedule,
    TimeSpan Interval,
    string? NewestBackupId,
    DateTimeOffset? NewestBackupTime,
    TimeSpan? NewestBackupAge,
    long? NewestBackupSize,
    int CompleteSets,
    int IncompleteSets)
{
    /// <summary>In continuous mode (<c>Database:Mode</c>), the archived WAL; null in logical mode.</summary>
    public Continuous.WalArchiveStatus? Wal { get; init; }

    /// <summary>
    /// The point in time a restore now would return the registry to: the newest complete set's time,
    /// or in continuous mode the time the newest WAL segment of the chain was archived.
    /// </summary>
    public DateTimeOffset? RecoveryPoint => Wal is not null ? Wal.RecoveryPoint : NewestBackupTime;
}

public static class ProtectionStatusReader
{
    /// <summary>LATE once the newest complete set is older than this many schedule intervals.</summary>
    public const int LateAfterIntervals = 2;

    public static async Task<ProtectionStatus> ReadAsync(IBackupStore store, string cron, TimeProvider time, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var interval = ScheduleInterval.Of(cron, now);
        IReadOnlyList<BackupSetInfo> sets;
        try
        {
            sets = await new BackupCatalog(store).ListAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is StoreUnavailableException or IOException or UnauthorizedAccessException)
        {
            return new ProtectionStatus(ProtectionState.Unknown, store.Description, false, ex.Message, cron, interval, null, null, null, null, 0, 0);
        }
        var newest = sets.FirstOrDefault(s => s.IsComplete);
        var complete = sets.Count(s => s.IsComplete);
        if (newest is null)
            return new ProtectionStatus(ProtectionState.Missing, store.Description, true, null, cron, interval, null, null, null, null, 0, sets.Count);
        var age = now - newest.Time;
        var state = age > interval * LateAfterIntervals ? ProtectionState.Late : ProtectionState.Ok;
        return new ProtectionStatus(state, store.Description, true, null, cron, interval, newest.BackupId, newest.Time, age, newest.Size, complete, sets.Count - complete);
    }
}
