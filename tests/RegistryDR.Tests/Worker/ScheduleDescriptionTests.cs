using RegistryDR.Worker;

namespace RegistryDR.Tests.Worker;

[TestClass]
public sealed class ScheduleDescriptionTests
{
    private static readonly DateTimeOffset Now = new(2026, 3, 4, 10, 7, 30, TimeSpan.Zero); // a Wednesday

    [TestMethod]
    [DataRow("0 0/15 * * * ?", "every 15 minutes", "2026-03-04 10:15:00 UTC")]
    [DataRow("0 30 3 * * ?", "every day at 03:30 UTC", "2026-03-05 03:30:00 UTC")]
    [DataRow("0 5 * * * ?", "every hour at minute 5", "2026-03-04 11:05:00 UTC")]
    [DataRow("0 0 0/6 * * ?", "every 6 hours", "2026-03-04 12:00:00 UTC")]
    [DataRow("0 0 2 ? * SUN", "every week on Sunday at 02:00 UTC", "2026-03-08 02:00:00 UTC")]
    [DataRow("0 0,15 2 * * ?", "at irregular times (15 minutes to 23 hours 45 minutes apart)", "2026-03-05 02:00:00 UTC")]
    public void ACronExpression_InWords_WithItsNextFireTime(string cron, string words, string next)
    {
        Assert.AreEqual(words, ScheduleDescription.Words(cron, Now));
        Assert.AreEqual(next, RegistryDR.Backup.SetFormat.Time(ScheduleDescription.Next(cron, Now)!.Value));
    }
}
