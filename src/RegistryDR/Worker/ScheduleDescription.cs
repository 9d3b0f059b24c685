using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Quartz;
using RegistryDR.Configuration;

namespace RegistryDR.Worker;

/// <summary>
/// A Quartz cron expression in words ("every 15 minutes", "every day at 03:30 UTC") and its next
/// fire time, for the worker's start-up line. Written here because no cron-description package
/// is available (docs/decisions.md); it only has to say what the fire times are, so it derives the
/// words from the fire times themselves rather than from the expression's syntax.
/// </summary>
public static class ScheduleDescription
{
    private const int Samples = 200;

    /// <summary>The schedule in words, judged from its next fire times after <paramref name="now"/> (UTC).</summary>
    public static string Words(string cron, DateTimeOffset now)
    {
        var times = FireTimes(cron, now, Samples);
        if (times.Count < 2) return times.Count == 1 ? $"once, at {Backup.SetFormat.Time(times[0])}" : "never (no future fire time)";
        var gaps = times.Zip(times.Skip(1), (a, b) => b - a).ToList();
        var gap = gaps[0];
        if (gaps.Any(g => g != gap))
            return $"at irregular times ({Span(gaps.Min())} to {Span(gaps.Max())} apart)";
        var first = times[0].UtcDateTime;
        var at = first.ToString("HH:mm", CultureInfo.InvariantCulture);
        if (gap == TimeSpan.FromDays(7)) return $"every week on {first.DayOfWeek} at {at} UTC";
        if (gap == TimeSpan.FromDays(1)) return $"every day at {at} UTC";
        if (gap == TimeSpan.FromHours(1)) return $"every hour at minute {first.Minute}";
        return "every " + Span(gap);
    }

    /// <summary>The next fire time after <paramref name="now"/>, or null when there is none.</summary>
    public static DateTimeOffset? Next(string cron, DateTimeOffset now) => FireTimes(cron, now, 1).Cast<DateTimeOffset?>().FirstOrDefault();

    private static List<DateTimeOffset> FireTimes(string cron, DateTimeOffset now, int count)
    {
        var expression = CronExpression.Parse(cron).WithTimeZone(TimeZoneInfo.Utc);
        var times = new List<DateTimeOffset>(count);
        var after = now;
        while (times.Count < count && expression.GetNextValidTimeAfter(after) is { } next)
        {
            times.Add(next);
            after = next;
        }
        return times;
    }

    /// <summary>"15 minutes", "6 hours", "23 hours 45 minutes"; "minute" alone for one.</summary>
    private static string Span(TimeSpan span)
    {
        var parts = new List<string>();
        if (span.Days > 0) parts.Add(Count(span.Days, "day"));
        if (span.Hours > 0) parts.Add(Count(span.Hours, "hour"));
        if (span.Minutes > 0) parts.Add(Count(span.Minutes, "minute"));
        if (span.Seconds > 0) parts.Add(Count(span.Seconds, "second"));
        return parts.Count == 1 && parts[0].StartsWith("1 ", StringComparison.Ordinal) ? parts[0][2..] : string.Join(" ", parts);
    }

    private static string Count(int n, string unit) => n == 1 ? $"1 {unit}" : $"{n} {unit}s";
}

/// <summary>Says at start-up what the worker will do and when: the schedules in words and cron, the time zone, and the next backup and drill.</summary>
internal sealed partial class ScheduleAnnouncement(RegistryDrOptions options, TimeProvider time, ILogger<ScheduleAnnouncement> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var schedule = options.Schedule;
        var nextBackup = ScheduleDescription.Next(schedule.Cron, now);
        LogBackups(ScheduleDescription.Words(schedule.Cron, now), schedule.Cron, nextBackup is { } b ? Backup.SetFormat.Time(b) : "never",
            schedule.CatchUpOnStart ? "one now if the newest backup is older than one interval" : "off (Schedule:CatchUpOnStart)");
        if (string.IsNullOrEmpty(schedule.DrillCron))
            LogNoDrills();
        else
            LogDrills(ScheduleDescription.Words(schedule.DrillCron, now), schedule.DrillCron,
                ScheduleDescription.Next(schedule.DrillCron, now) is { } d ? Backup.SetFormat.Time(d) : "never");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(8300, LogLevel.Information, "Backups {Words} (Schedule:Cron \"{Cron}\", UTC); next backup at {Next}; catch-up at start: {CatchUp}")]
    private partial void LogBackups(string words, string cron, string next, string catchUp);

    [LoggerMessage(8301, LogLevel.Information, "Drills {Words} (Schedule:DrillCron \"{Cron}\", UTC); next drill at {Next}")]
    private partial void LogDrills(string words, string cron, string next);

    [LoggerMessage(8302, LogLevel.Information, "Drills are off (Schedule:DrillCron is empty)")]
    private partial void LogNoDrills();
}
