using System.Globalization;
using RegistryDR.Backup;

namespace RegistryDR.Retention;

/// <summary>
/// Decides which sets to keep. Pure: the same sets, records, time and options always give the
/// same plan, so <c>prune --dry-run</c> shows exactly what a real prune would do.
/// </summary>
/// <remarks>
/// Only complete sets count for the keep rules. The safety rules hold even for options the
/// validator would refuse (KeepLast 0, a negative grace): the newest verified complete set, or
/// the newest complete set when none is verified, is always kept, and an incomplete set is
/// deleted only when it is past the grace and at least an hour old.
/// <para>A FENCED set (<see cref="SetCondition.Fenced"/>: written by another region's node after a
/// takeover, never restorable here) or a CORRUPT one (<see cref="SetCondition.Corrupt"/>: a read-back
/// found its bytes wrong) counts for no rule and is never the set always kept, so a
/// run of them, however new, can neither take the newest sets' places nor push the restorable
/// newest out. It is kept for <see cref="RetentionOptions.KeepDailyDays"/> days (at least one)
/// from its start, for inspection (docs/runbook.md, "Fail back"), then deleted, saying so.</para>
/// </remarks>
public static class RetentionPlanner
{
    /// <param name="unrestorable">
    /// Complete sets that are never restored, by id, with the label <c>list</c> shows for them:
    /// <c>FENCED</c> (<see cref="SetCondition.Fenced"/>) and <c>CORRUPT</c> (<see cref="SetCondition.Corrupt"/>);
    /// null or empty when there are none.
    /// </param>
    public static RetentionPlan Plan(IReadOnlyList<BackupSetInfo> sets, IReadOnlySet<string> verifiedIds, DateTimeOffset now, RetentionOptions options,
        IReadOnlyDictionary<string, string>? unrestorable = null)
    {
        unrestorable ??= new Dictionary<string, string>(StringComparer.Ordinal);
        ArgumentNullException.ThrowIfNull(sets);
        ArgumentNullException.ThrowIfNull(verifiedIds);
        ArgumentNullException.ThrowIfNull(options);

        // Ids start with the UTC start time, so ordinal order is time order (as in the catalog).
        var ordered = sets.OrderByDescending(s => s.BackupId, StringComparer.Ordinal).ToList();
        var reasons = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var s in ordered)
            if (!reasons.TryAdd(s.BackupId, []))
                throw new ArgumentException($"Backup set '{s.BackupId}' is listed twice.", nameof(sets));
        var complete = ordered.Where(s => s.IsComplete && !unrestorable.ContainsKey(s.BackupId)).ToList();

        for (var i = 0; i < complete.Count && i < options.KeepLast; i++)
            reasons[complete[i].BackupId].Add($"newest {options.KeepLast}");

        var today = DateOnly.FromDateTime(now.UtcDateTime);
        if (options.KeepDailyDays > 0)
        {
            var days = new HashSet<DateOnly>();
            foreach (var s in complete)
            {
                var day = DateOnly.FromDateTime(s.Time.UtcDateTime);
                // A set dated after today (another node's clock ahead) is inside the window: keeping more is the safe mistake.
                if (today.DayNumber - day.DayNumber < options.KeepDailyDays && days.Add(day))
                    reasons[s.BackupId].Add($"daily {day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)}");
            }
        }

        if (options.KeepWeeklyWeeks > 0)
        {
            var thisWeek = WeekStart(today);
            var weeks = new HashSet<DateOnly>();
            foreach (var s in complete)
            {
                var day = DateOnly.FromDateTime(s.Time.UtcDateTime);
                var week = WeekStart(day);
                if ((thisWeek.DayNumber - week.DayNumber) / 7 < options.KeepWeeklyWeeks && weeks.Add(week))
                {
                    var date = day.ToDateTime(TimeOnly.MinValue);
                    reasons[s.BackupId].Add($"weekly {ISOWeek.GetYear(date)}-W{ISOWeek.GetWeekOfYear(date):00}");
                }
            }
        }

        // The set last proven restorable outlives every rule: without it, a run of newer sets that
        // are all quietly broken could push the last good one out.
        var newestVerified = complete.FirstOrDefault(s => verifiedIds.Contains(s.BackupId));
        if (newestVerified is not null)
            reasons[newestVerified.BackupId].Add("newest verified");
        if (complete.Count == 1)
            reasons[complete[0].BackupId].Add("only complete set");
        else if (newestVerified is null && complete.Count > 0 && reasons[complete[0].BackupId].Count == 0)
            reasons[complete[0].BackupId].Add("newest complete, none verified");

        // Never below the validator's minimum, even for options that skipped it: a running backup must not look abandoned.
        var grace = options.IncompleteGrace > RetentionOptions.MinimumIncompleteGrace ? options.IncompleteGrace : RetentionOptions.MinimumIncompleteGrace;
        var decisions = new List<RetentionDecision>(ordered.Count);
        foreach (var s in ordered)
        {
            var why = reasons[s.BackupId];
            bool delete;
            if (s.IsComplete && unrestorable.TryGetValue(s.BackupId, out var label))
            {
                // Measured from the id's start time, as for incomplete sets.
                var days = Math.Max(options.KeepDailyDays, 1);
                delete = now - s.Time > TimeSpan.FromDays(days);
                why.Add(delete ? $"{label}, older than {days} day(s)" : $"{label}, kept {days} day(s) for inspection");
            }
            else if (s.IsComplete)
            {
                delete = why.Count == 0;
                if (delete) why.Add("older than every rule");
            }
            else
            {
                // Measured from the id's start time: a running backup's set is as old as the backup.
                delete = now - s.Time > grace;
                why.Add(delete ? "incomplete, older than grace" : "incomplete, younger than grace");
            }
            decisions.Add(new RetentionDecision(s.BackupId, s.Time, s.State, s.IsComplete && verifiedIds.Contains(s.BackupId), s.Size,
                delete ? RetentionAction.Delete : RetentionAction.Keep, why));
        }

        var protectedSet = newestVerified ?? complete.FirstOrDefault();
        if (protectedSet is not null && decisions.Single(d => d.BackupId == protectedSet.BackupId).Action == RetentionAction.Delete)
            throw new InvalidOperationException($"Retention planned to delete {protectedSet.BackupId}, the set it must always keep; nothing was deleted.");
        return new RetentionPlan(now, decisions);
    }

    private static DateOnly WeekStart(DateOnly day) => day.AddDays(-(((int)day.DayOfWeek + 6) % 7));
}
