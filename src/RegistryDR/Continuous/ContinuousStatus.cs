using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Worker;

namespace RegistryDR.Continuous;

/// <summary>The archived WAL, as <c>status</c> shows it in continuous mode.</summary>
/// <param name="NewestSegment">The newest archived segment on the chain a restore to "latest" would replay (null: none).</param>
/// <param name="RecoveryPoint">What a restore to "latest" returns to: when that segment was archived; every transaction committed before it is in it. Null when nothing is restorable.</param>
/// <param name="Problem">Why a restore to "latest" cannot be planned (a gap, a missing history file…), or null.</param>
public sealed record WalArchiveStatus(string? NewestSegment, DateTimeOffset? NewestArchivedAt, TimeSpan? Age, int Files, long StoredBytes, DateTimeOffset? RecoveryPoint, string? Problem);

/// <summary><c>status</c> in continuous mode: the newest base backup against the schedule, and the archived WAL a restore would replay.</summary>
public static class ContinuousStatus
{
    /// <summary>
    /// OK while the newest complete base backup and the newest archived WAL are both younger than
    /// <see cref="ProtectionStatusReader.LateAfterIntervals"/> schedule intervals (a base backup
    /// archives WAL itself, so even a quiet registry archives once an interval), and a restore to
    /// "latest" can be planned; LATE otherwise; MISSING with no complete base backup; UNKNOWN when
    /// the store cannot be read.
    /// </summary>
    public static async Task<ProtectionStatus> ReadAsync(IBackupStore store, string cron, TimeProvider time, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var interval = ScheduleInterval.Of(cron, now);
        IReadOnlyList<BackupSetInfo> sets;
        IReadOnlyList<WalObject> wal;
        var catalog = new ContinuousCatalog(store);
        try
        {
            sets = await catalog.ListBaseBackupsAsync(cancellationToken);
            wal = await catalog.ListWalAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is StoreUnavailableException or IOException or UnauthorizedAccessException)
        {
            return new ProtectionStatus(ProtectionState.Unknown, store.Description, false, ex.Message, cron, interval, null, null, null, null, 0, 0);
        }
        var complete = sets.Where(s => s.IsComplete).ToList();
        var newest = complete.FirstOrDefault();
        var newestWal = wal.Where(w => w.File.Kind == WalFileKind.Segment).MaxBy(w => w.ArchivedAt);
        WalArchiveStatus walStatus;
        try
        {
            var view = await catalog.ReadArchiveAsync(null, cancellationToken);
            var plan = RecoveryPlanner.Plan(view.Bases, view.Wal, view.Histories, RecoveryTarget.Latest);
            var last = plan.LastSegment;
            walStatus = new WalArchiveStatus(last?.File.Name, last?.ArchivedAt, last is null ? null : now - last.ArchivedAt, wal.Count, wal.Sum(w => w.StoredSize), plan.ResultingPoint, null);
        }
        catch (Exception ex) when (ex is RecoveryPlanException or CorruptWalException or FormatException or Backup.InvalidManifestException)
        {
            walStatus = new WalArchiveStatus(newestWal?.File.Name, newestWal?.ArchivedAt, newestWal is null ? null : now - newestWal.ArchivedAt, wal.Count, wal.Sum(w => w.StoredSize), null, ex.Message);
        }
        if (newest is null)
            return new ProtectionStatus(ProtectionState.Missing, store.Description, true, null, cron, interval, null, null, null, null, 0, sets.Count) { Wal = walStatus };
        var late = now - newest.Time > interval * ProtectionStatusReader.LateAfterIntervals
                   || walStatus.Age is not { } age || age > interval * ProtectionStatusReader.LateAfterIntervals
                   || walStatus.Problem is not null;
        return new ProtectionStatus(late ? ProtectionState.Late : ProtectionState.Ok, store.Description, true, null, cron, interval,
            newest.BackupId, newest.Time, now - newest.Time, newest.Size, complete.Count, sets.Count - complete.Count) { Wal = walStatus };
    }
}
