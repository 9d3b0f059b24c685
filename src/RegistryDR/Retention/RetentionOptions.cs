namespace RegistryDR.Retention;

/// <summary>
/// Which backup sets <see cref="Pruner"/> keeps. A set is kept when any rule wants it; whatever
/// these say, the newest verified complete set (or, when none is verified, the newest complete
/// set) and every incomplete set younger than <see cref="IncompleteGrace"/> are always kept.
/// </summary>
public sealed class RetentionOptions
{
    /// <summary>Keep the newest N complete sets. At least 1. Default 8.</summary>
    public int KeepLast { get; set; } = 8;

    /// <summary>Keep the newest complete set of each UTC day, for today and the N−1 days before it. 0 turns the rule off. Default 7.</summary>
    public int KeepDailyDays { get; set; } = 7;

    /// <summary>Keep the newest complete set of each ISO week (Monday to Sunday, UTC), for this week and the N−1 weeks before it. 0 turns the rule off. Default 4.</summary>
    public int KeepWeeklyWeeks { get; set; } = 4;

    /// <summary>
    /// An incomplete set (no manifest: failed, cancelled, or still running) is deleted only once
    /// its id's start time is older than this, so a backup that is still running is never
    /// touched. At least one hour. Default one day.
    /// </summary>
    public TimeSpan IncompleteGrace { get; set; } = TimeSpan.FromDays(1);

    /// <summary>The worker prunes after each successful backup. Default true.</summary>
    public bool PruneAfterBackup { get; set; } = true;

    /// <summary>
    /// Below this a long backup (a big database over a slow link, or one started on another node)
    /// could still be running when its set is judged abandoned.
    /// </summary>
    internal static readonly TimeSpan MinimumIncompleteGrace = TimeSpan.FromHours(1);

    /// <summary>Adds one message per invalid setting to <paramref name="errors"/>, naming its configuration key.</summary>
    public static void Validate(RetentionOptions options, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(errors);
        if (options.KeepLast < 1)
            errors.Add($"Retention:KeepLast is {options.KeepLast}; it must be at least 1.");
        if (options.KeepDailyDays < 0)
            errors.Add($"Retention:KeepDailyDays is {options.KeepDailyDays}; it must be 0 (off) or more.");
        if (options.KeepWeeklyWeeks < 0)
            errors.Add($"Retention:KeepWeeklyWeeks is {options.KeepWeeklyWeeks}; it must be 0 (off) or more.");
        if (options.IncompleteGrace < MinimumIncompleteGrace)
            errors.Add($"Retention:IncompleteGrace is {options.IncompleteGrace}; it must be at least 01:00:00, or a backup that is still running could be deleted.");
    }
}
