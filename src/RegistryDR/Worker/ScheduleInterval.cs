using Quartz;

namespace RegistryDR.Worker;

/// <summary>The spacing of a cron schedule, used to judge whether the newest backup is on time.</summary>
public static class ScheduleInterval
{
    /// <summary>
    /// The gap between the next two fires after <paramref name="now"/>. For irregular expressions
    /// (e.g. "at 02:00 and 02:15") this is the gap that is coming, which is what lateness is measured against.
    /// </summary>
    public static TimeSpan Of(string cron, DateTimeOffset now)
    {
        var expression = CronExpression.Parse(cron).WithTimeZone(TimeZoneInfo.Utc);
        var next = expression.GetNextValidTimeAfter(now) ?? now;
        var after = expression.GetNextValidTimeAfter(next) ?? next;
        return after - next;
    }
}
