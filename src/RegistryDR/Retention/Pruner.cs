using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Stores;

namespace RegistryDR.Retention;

/// <summary>Applies <see cref="RetentionPlanner"/>'s plan to a store.</summary>
public sealed partial class Pruner(IBackupStore store, RetentionOptions options, TimeProvider time, ILogger<Pruner> logger)
{
    /// <summary>
    /// Lists the store, plans, and unless <paramref name="dryRun"/> deletes every set the plan
    /// dooms. Sets that appear after the listing are not in the plan and are never touched.
    /// One set failing to delete does not stop the others; afterwards
    /// <see cref="PruneFailedException"/> names every set that could not be deleted.
    /// </summary>
    public async Task<RetentionPlan> PruneAsync(bool dryRun, CancellationToken cancellationToken)
    {
        var sets = await new BackupCatalog(store).ListAsync(cancellationToken);
        var verified = await VerificationRecord.ReadVerifiedIdsAsync(store, cancellationToken);
        var plan = RetentionPlanner.Plan(sets, verified, time.GetUtcNow(), options, await UnrestorableAsync(cancellationToken));
        // The continuous archive (base backups and WAL, Database:Mode Continuous) has its own plan under the same rules.
        plan = plan with { Continuous = await Continuous.ContinuousRetention.PruneAsync(store, options, time, logger, dryRun, cancellationToken) };
        if (dryRun)
        {
            LogDryRun(store.Description, plan.KeepCount, plan.DeleteCount);
            return plan;
        }

        var failures = new List<(string BackupId, Exception Error)>();
        foreach (var set in plan.Sets.Where(s => s.Action == RetentionAction.Delete))
        {
            try
            {
                await DeleteSetAsync(set.BackupId, cancellationToken);
                LogDeleted(set.BackupId, string.Join("; ", set.Reasons));
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                LogDeleteFailed(ex, set.BackupId, ex.Message);
                failures.Add((set.BackupId, ex));
            }
        }
        await SweepOrphanTemporariesAsync(sets, cancellationToken);
        LogPruned(store.Description, plan.KeepCount, plan.DeleteCount - failures.Count, failures.Count);
        if (failures.Count > 0) throw new PruneFailedException(store.Description, plan, failures);
        return plan;
    }

    /// <summary>
    /// The complete sets that are never restored, with their label: FENCED sets (another region's
    /// writes after a takeover) and CORRUPT ones, judged as <c>list</c> judges them. Without a
    /// takeover in the store (the usual case) no manifest is read: only the corruption records are.
    /// </summary>
    private async Task<IReadOnlyDictionary<string, string>> UnrestorableAsync(CancellationToken cancellationToken)
    {
        if ((await new Fencing.GenerationLedger(store, time).TakeoversAsync(cancellationToken)).Count == 0)
            return (await CorruptionRecord.ReadIdsAsync(store, cancellationToken)).ToDictionary(id => id, _ => "CORRUPT", StringComparer.Ordinal);
        return RestorableSets.Unrestorable(await new RestorableSets(store).ListAsync(cancellationToken));
    }

    /// <summary>
    /// Temporaries that belong to no listed set (a put killed before its set had any object) or
    /// to no set at all (a fencing generation's partial file), older than
    /// <see cref="RetentionOptions.IncompleteGrace"/>: no put of a running backup is that old and
    /// outside a set. A failure here is logged; it never fails the prune.
    /// </summary>
    private async Task SweepOrphanTemporariesAsync(IReadOnlyList<BackupSetInfo> sets, CancellationToken cancellationToken)
    {
        try
        {
            var grace = options.IncompleteGrace > RetentionOptions.MinimumIncompleteGrace ? options.IncompleteGrace : RetentionOptions.MinimumIncompleteGrace;
            var cutoff = time.GetUtcNow() - grace;
            var listed = sets.Select(s => BackupLayout.SetPrefix(s.BackupId)).ToHashSet(StringComparer.Ordinal);
            var orphans = new List<StoreTemporary>();
            await foreach (var temporary in store.ListTemporariesAsync("", cancellationToken))
            {
                var inListedSet = temporary.Key.StartsWith(BackupLayout.Root, StringComparison.Ordinal) &&
                                  temporary.Key.IndexOf('/', BackupLayout.Root.Length) is var slash and > 0 &&
                                  listed.Contains(temporary.Key[..(slash + 1)]);
                if (!inListedSet && temporary.Started < cutoff) orphans.Add(temporary);
            }
            foreach (var orphan in orphans) await store.DeleteTemporaryAsync(orphan, cancellationToken);
            if (orphans.Count > 0) LogOrphans(orphans.Count, orphans.Sum(o => o.Bytes ?? 0), string.Join(", ", orphans.Select(o => o.Key)));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogSweepFailed(ex, ex.Message);
        }
    }

    private async Task DeleteSetAsync(string backupId, CancellationToken cancellationToken)
    {
        // The manifest goes first: from then on the set is incomplete, so however far the rest
        // gets, restore never picks a set with missing artifacts, and the next prune (it is past
        // the grace by then) removes what is left.
        await store.DeleteAsync(BackupLayout.ManifestKey(backupId), cancellationToken);

        // Listed now rather than taken from the catalog, so objects written since (a verification
        // record) go too.
        var prefix = BackupLayout.SetPrefix(backupId);
        var keys = new List<string>();
        await foreach (var item in store.ListAsync(prefix, cancellationToken))
            keys.Add(item.Key);
        foreach (var key in keys)
            await store.DeleteAsync(key, cancellationToken);
        // And what puts into it left unfinished (partial files, open multipart uploads).
        await StoreTemporaries.DeleteAsync(store, prefix, null, cancellationToken);

        var left = 0;
        await foreach (var _ in store.ListAsync(prefix, cancellationToken))
            left++;
        await foreach (var _ in store.ListTemporariesAsync(prefix, cancellationToken))
            left++;
        if (left > 0)
            throw new IOException($"{left} object(s) were still under {prefix} after deleting it (written while it was being deleted?).");
    }

    [LoggerMessage(8051, LogLevel.Warning, "Retention removed {Count} abandoned temporary object(s) outside any set ({Bytes} bytes known): {Keys}")]
    private partial void LogOrphans(int count, long bytes, string keys);

    [LoggerMessage(8052, LogLevel.Warning, "Retention could not look for abandoned temporary objects: {Reason}")]
    private partial void LogSweepFailed(Exception ex, string reason);

    [LoggerMessage(5000, LogLevel.Information, "Retention deleted backup set {BackupId}: {Reasons}")]
    private partial void LogDeleted(string backupId, string reasons);

    [LoggerMessage(5001, LogLevel.Error, "Retention could not delete backup set {BackupId}: {Reason}")]
    private partial void LogDeleteFailed(Exception error, string backupId, string reason);

    [LoggerMessage(5002, LogLevel.Information, "Retention on {Store}: kept {Kept} set(s), deleted {Deleted}, failed to delete {Failed}")]
    private partial void LogPruned(string store, int kept, int deleted, int failed);

    [LoggerMessage(5003, LogLevel.Information, "Retention dry run on {Store}: would keep {Kept} set(s) and delete {Deleted}; nothing was deleted")]
    private partial void LogDryRun(string store, int kept, int deleted);
}

/// <summary>Some sets the plan doomed could not be deleted; every other one was.</summary>
public sealed class PruneFailedException : Exception
{
    internal PruneFailedException(string store, RetentionPlan plan, IReadOnlyList<(string BackupId, Exception Error)> failures)
        : base($"Retention could not delete {failures.Count} of {plan.DeleteCount} backup set(s) in {store}: " +
               string.Join("; ", failures.Select(f => $"{f.BackupId} ({f.Error.Message})")) +
               ". The others were deleted. A set whose manifest was already removed is now incomplete, is never restored, and the next prune removes the rest of it.",
               new AggregateException(failures.Select(f => f.Error)))
    {
        Plan = plan;
        FailedBackupIds = failures.Select(f => f.BackupId).ToList();
    }

    /// <summary>The plan that was being carried out.</summary>
    public RetentionPlan Plan { get; }

    public IReadOnlyList<string> FailedBackupIds { get; }
}
