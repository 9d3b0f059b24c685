using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Retention;
using RegistryDR.Stores;

namespace RegistryDR.Continuous;

/// <summary>Which archived WAL retention deletes, and why the rest stays.</summary>
/// <param name="KeepFrom">The oldest segment any kept base backup needs (its start); null when no base backup is kept, and then no WAL is deleted.</param>
public sealed record WalRetention(string? KeepFrom, string? KeptBecauseOf, IReadOnlyList<WalObject> Delete, int Keep)
{
    public long DeleteBytes => Delete.Sum(w => w.StoredSize);
}

/// <summary>Base backups with Keep/Delete (the same rules and safety as logical sets) and the WAL that goes with them.</summary>
public sealed record ContinuousRetentionPlan(RetentionPlan BaseBackups, WalRetention Wal);

/// <summary>
/// Retention for the continuous archive. Base backups follow <see cref="RetentionPlanner"/> exactly
/// as logical sets do (keep the newest N, dailies, weeklies; always the newest verified one — a
/// verify or drill proved it and its WAL restorable — or the newest complete one when none is
/// verified), with the same unrestorable sets: a base backup FENCED (written in an older epoch after
/// a takeover, judged by <see cref="Fencing.TakeoverHistory"/> from the generation its manifest
/// records) or CORRUPT (<c>continuous/base/&lt;id&gt;/corrupt.json</c>, <see cref="CorruptionRecord"/>)
/// counts for no rule, is never the set always kept, and is kept KeepDailyDays for inspection.
/// WAL is deleted only below the start of the oldest <em>restorable</em> base backup kept: every
/// kept restorable base backup keeps the WAL from its start onwards, to the end of the archive, so
/// it can still be restored to any point after it; a fenced or corrupt base backup kept for
/// inspection keeps no WAL; timeline history files are never deleted.
/// </summary>
public static partial class ContinuousRetention
{
    /// <summary>Pure: the plan for these sets, manifests (of the complete sets) and WAL.</summary>
    /// <param name="unrestorable">
    /// Complete base backups that are never restored, by id, with their label (FENCED, CORRUPT), as
    /// <see cref="RetentionPlanner.Plan"/> takes them; null or empty when there are none.
    /// </param>
    public static ContinuousRetentionPlan Plan(IReadOnlyList<BackupSetInfo> sets, IReadOnlyDictionary<string, BaseBackupManifest> manifests,
        IReadOnlySet<string> verified, IReadOnlyList<WalObject> wal, DateTimeOffset now, RetentionOptions options,
        IReadOnlyDictionary<string, string>? unrestorable = null)
    {
        unrestorable ??= new Dictionary<string, string>(StringComparer.Ordinal);
        var basePlan = RetentionPlanner.Plan(sets, verified, now, options, unrestorable);
        // Only a kept restorable base backup needs WAL: one kept for inspection is never replayed.
        var kept = basePlan.Sets.Where(s => s.Action == RetentionAction.Keep && s.State == BackupSetState.Complete && !unrestorable.ContainsKey(s.BackupId))
            .Select(s => s.BackupId).ToList();
        // A kept set whose manifest cannot be read is one whose WAL needs are unknown: keep all WAL.
        if (kept.Count == 0 || kept.Any(id => !manifests.ContainsKey(id)))
            return new ContinuousRetentionPlan(basePlan, new WalRetention(null, kept.FirstOrDefault(id => !manifests.ContainsKey(id)), [], wal.Count));
        var oldest = kept.Select(id => manifests[id]).MinBy(m => m.Start)!;
        var size = oldest.Server.WalSegmentSize;
        var from = oldest.Start.Segment(size);
        var delete = wal.Where(w => w.File.Kind != WalFileKind.History && w.File.SegmentNumber(size) < from).ToList();
        return new ContinuousRetentionPlan(basePlan,
            new WalRetention(WalFileName.SegmentName(oldest.Server.Timeline, from, size), oldest.BackupId, delete, wal.Count - delete.Count));
    }

    public static async Task<ContinuousRetentionPlan> PlanAsync(IBackupStore store, RetentionOptions options, TimeProvider time, CancellationToken cancellationToken)
    {
        var catalog = new ContinuousCatalog(store);
        var sets = await catalog.ListBaseBackupsAsync(cancellationToken);
        var manifests = new Dictionary<string, BaseBackupManifest>(StringComparer.Ordinal);
        foreach (var set in sets.Where(s => s.IsComplete))
        {
            try { manifests[set.BackupId] = await catalog.ReadManifestAsync(set.BackupId, cancellationToken); }
            catch (InvalidManifestException) { /* its WAL needs are unknown: Plan keeps all WAL while it is kept */ }
        }
        var verified = await VerificationRecord.ReadVerifiedIdsAsync(store, cancellationToken, ContinuousLayout.BaseRoot);
        var wal = await catalog.ListWalAsync(cancellationToken);
        return Plan(sets, manifests, verified, wal, time.GetUtcNow(), options, await UnrestorableAsync(store, sets, manifests, cancellationToken));
    }

    /// <summary>
    /// The complete base backups that are never restored, judged as logical sets are: FENCED by the
    /// store's takeovers (<see cref="Fencing.TakeoverHistory.FencedBy"/>, from the generation the
    /// manifest records), else CORRUPT when a read-back recorded bad bytes; labelled by
    /// <see cref="RestorableSets.Unrestorable"/>. One listing of <c>generations/</c> and one of
    /// <c>continuous/base/</c>, plus one GET per takeover.
    /// </summary>
    private static async Task<IReadOnlyDictionary<string, string>> UnrestorableAsync(IBackupStore store, IReadOnlyList<BackupSetInfo> sets,
        IReadOnlyDictionary<string, BaseBackupManifest> manifests, CancellationToken cancellationToken)
    {
        var takeovers = await Fencing.TakeoverHistory.ReadAsync(store, cancellationToken);
        var corrupt = await CorruptionRecord.ReadIdsAsync(store, cancellationToken, ContinuousLayout.BaseRoot);
        var judgements = new List<SetJudgement>();
        foreach (var set in sets.Where(s => s.IsComplete && manifests.ContainsKey(s.BackupId)))
        {
            var manifest = manifests[set.BackupId];
            if (takeovers.FencedBy(set.BackupId, manifest.Generation) is { } takeover)
                judgements.Add(new SetJudgement(set, SetCondition.Fenced, await takeovers.DescribeAsync(takeover, manifest.Host, manifest.Generation, cancellationToken)));
            else if (corrupt.Contains(set.BackupId))
                judgements.Add(new SetJudgement(set, SetCondition.Corrupt, $"{ContinuousLayout.BasePrefix(set.BackupId)}{CorruptionRecord.FileName} records bad bytes"));
        }
        return RestorableSets.Unrestorable(judgements);
    }

    /// <summary>Plans and, unless <paramref name="dryRun"/>, deletes: doomed base sets first (manifest first), then WAL below the oldest kept base backup.</summary>
    public static async Task<ContinuousRetentionPlan> PruneAsync(IBackupStore store, RetentionOptions options, TimeProvider time, ILogger logger, bool dryRun, CancellationToken cancellationToken)
    {
        var plan = await PlanAsync(store, options, time, cancellationToken);
        if (dryRun) return plan;
        foreach (var set in plan.BaseBackups.Sets.Where(s => s.Action == RetentionAction.Delete))
        {
            // The manifest goes first: from then on the set is incomplete and never restored, however far the rest gets.
            await store.DeleteAsync(ContinuousLayout.ManifestKey(set.BackupId), cancellationToken);
            var keys = new List<string>();
            await foreach (var item in store.ListAsync(ContinuousLayout.BasePrefix(set.BackupId), cancellationToken)) keys.Add(item.Key);
            foreach (var key in keys) await store.DeleteAsync(key, cancellationToken);
            LogDeletedBase(logger, set.BackupId, string.Join("; ", set.Reasons));
        }
        foreach (var wal in plan.Wal.Delete) await store.DeleteAsync(wal.Key, cancellationToken);
        if (plan.Wal.Delete.Count > 0) LogDeletedWal(logger, plan.Wal.Delete.Count, plan.Wal.DeleteBytes, plan.Wal.KeepFrom ?? "-", plan.Wal.KeptBecauseOf ?? "-");
        return plan;
    }

    [LoggerMessage(9150, LogLevel.Information, "Retention deleted base backup {BackupId}: {Reasons}")]
    private static partial void LogDeletedBase(ILogger logger, string backupId, string reasons);

    [LoggerMessage(9151, LogLevel.Information, "Retention deleted {Count} archived WAL file(s) ({Bytes} bytes) older than {KeepFrom}, the start of the oldest kept base backup {BackupId}")]
    private static partial void LogDeletedWal(ILogger logger, int count, long bytes, string keepFrom, string backupId);
}
