using System.Globalization;
using RegistryDR.Backup;
using RegistryDR.Retention;

namespace RegistryDR.Tests.Retention;

/// <summary>
/// Random stores and random options (valid or not), each from a fixed seed so a failure names
/// the case that reproduces it. Whatever the options, the plan must never lose the last good backup.
/// </summary>
[TestClass]
public sealed class RetentionPlannerPropertyTests
{
    private const int Cases = 400;

    [TestMethod]
    public void Invariants_HoldForRandomSetsAndOptions()
    {
        for (var seed = 1; seed <= Cases; seed++)
        {
            var random = new Random(seed);
            var now = new DateTimeOffset(2026, 11, 22, 0, 0, 0, TimeSpan.Zero).AddSeconds(random.Next(0, 14 * 86400));
            var sets = RandomSets(random, now);
            var verified = RandomVerified(random, sets);
            var options = RandomOptions(random);
            var context = $"seed {seed}: {sets.Count} sets, KeepLast={options.KeepLast}, KeepDailyDays={options.KeepDailyDays}, KeepWeeklyWeeks={options.KeepWeeklyWeeks}, IncompleteGrace={options.IncompleteGrace}";

            var plan = RetentionPlanner.Plan(sets, verified, now, options);

            CheckInvariants(plan, sets, verified, now, options, context);
            var shuffled = sets.ToArray();
            random.Shuffle(shuffled);
            Assert.AreEqual(plan.Render(), RetentionPlanner.Plan(shuffled, verified, now, options).Render(), $"{context}: the plan must not depend on the listing's order");
        }
    }

    private static void CheckInvariants(RetentionPlan plan, List<BackupSetInfo> sets, IReadOnlySet<string> verified, DateTimeOffset now, RetentionOptions options, string context)
    {
        CollectionAssert.AreEqual(sets.Select(s => s.BackupId).OrderDescending(StringComparer.Ordinal).ToList(), plan.Sets.Select(s => s.BackupId).ToList(), $"{context}: every set once, newest first");
        var decision = plan.Sets.ToDictionary(s => s.BackupId);
        var complete = sets.Where(s => s.IsComplete).OrderByDescending(s => s.BackupId, StringComparer.Ordinal).ToList();

        var newestVerified = complete.FirstOrDefault(s => verified.Contains(s.BackupId));
        if (newestVerified is not null)
        {
            Assert.AreEqual(RetentionAction.Keep, decision[newestVerified.BackupId].Action, $"{context}: the newest verified set {newestVerified.BackupId} was doomed");
            Assert.Contains("newest verified", decision[newestVerified.BackupId].Reasons, context);
        }
        else if (complete.Count > 0)
            Assert.AreEqual(RetentionAction.Keep, decision[complete[0].BackupId].Action, $"{context}: with nothing verified, the newest complete set {complete[0].BackupId} was doomed");
        if (complete.Count > 0)
            Assert.IsTrue(complete.Any(s => decision[s.BackupId].Action == RetentionAction.Keep), $"{context}: every complete set was doomed");

        foreach (var s in sets.Where(s => !s.IsComplete))
        {
            var d = decision[s.BackupId];
            Assert.HasCount(1, d.Reasons, context);
            Assert.IsFalse(d.Verified, $"{context}: a record without a manifest proves nothing");
            if (now - s.Time <= options.IncompleteGrace || now - s.Time <= TimeSpan.FromHours(1))
                Assert.AreEqual(RetentionAction.Keep, d.Action, $"{context}: incomplete {s.BackupId} is inside the grace");
            else
                Assert.AreEqual(RetentionAction.Delete, d.Action, $"{context}: incomplete {s.BackupId} is past the grace");
        }

        foreach (var d in plan.Sets)
        {
            Assert.IsNotEmpty(d.Reasons, $"{context}: {d.BackupId} has no reason");
            if (d.Action == RetentionAction.Delete)
                CollectionAssert.AreEqual(new[] { d.State == BackupSetState.Complete ? "older than every rule" : "incomplete, older than grace" }, d.Reasons.ToArray(), $"{context}: {d.BackupId}");
        }

        // Each rule, checked independently of the planner's own bookkeeping.
        for (var i = 0; i < complete.Count && i < options.KeepLast; i++)
            Assert.AreEqual(RetentionAction.Keep, decision[complete[i].BackupId].Action, $"{context}: {complete[i].BackupId} is one of the newest {options.KeepLast}");
        var today = DateOnly.FromDateTime(now.UtcDateTime);
        foreach (var day in complete.GroupBy(s => DateOnly.FromDateTime(s.Time.UtcDateTime)))
            if (options.KeepDailyDays > 0 && today.DayNumber - day.Key.DayNumber < options.KeepDailyDays)
                Assert.Contains($"daily {day.Key:yyyy-MM-dd}", decision[day.First().BackupId].Reasons, context);
        foreach (var week in complete.GroupBy(s => (ISOWeek.GetYear(s.Time.UtcDateTime), ISOWeek.GetWeekOfYear(s.Time.UtcDateTime))))
        {
            var weeksBack = (ISOWeek.ToDateTime(ISOWeek.GetYear(now.UtcDateTime), ISOWeek.GetWeekOfYear(now.UtcDateTime), DayOfWeek.Monday)
                - ISOWeek.ToDateTime(week.Key.Item1, week.Key.Item2, DayOfWeek.Monday)).Days / 7;
            if (options.KeepWeeklyWeeks > 0 && weeksBack < options.KeepWeeklyWeeks)
                Assert.Contains($"weekly {week.Key.Item1}-W{week.Key.Item2:00}", decision[week.First().BackupId].Reasons, context);
        }
        Assert.AreEqual(sets.Count, plan.KeepCount + plan.DeleteCount, context);
    }

    /// <summary>0–80 sets over the 90 days before now (some a few hours in the future: another node's clock), mostly complete, a few of them clustered within the grace.</summary>
    private static List<BackupSetInfo> RandomSets(Random random, DateTimeOffset now)
    {
        var sets = new Dictionary<string, BackupSetInfo>(StringComparer.Ordinal);
        var count = random.Next(0, 81);
        var completeShare = random.NextDouble();
        for (var i = 0; i < count; i++)
        {
            var offset = random.Next(4) switch
            {
                0 => TimeSpan.FromSeconds(random.Next(-3 * 3600, 2 * 86400)),  // around the grace
                _ => TimeSpan.FromSeconds(random.NextInt64(0, 90L * 86400)),
            };
            var set = RetentionTestSupport.Set(now - offset, random.NextDouble() < completeShare, Convert.ToHexStringLower(BitConverter.GetBytes(random.Next())[..3]));
            sets.TryAdd(set.BackupId, set);
        }
        return sets.Values.ToList();
    }

    /// <summary>A random few of the sets (complete or not), sometimes ids of sets that no longer exist.</summary>
    private static HashSet<string> RandomVerified(Random random, List<BackupSetInfo> sets)
    {
        var share = random.Next(3) switch { 0 => 0.0, 1 => 0.05, _ => 0.3 };
        var verified = sets.Where(_ => random.NextDouble() < share).Select(s => s.BackupId).ToHashSet(StringComparer.Ordinal);
        if (random.Next(4) == 0) verified.Add("20200101T000000Z-deadbe");
        return verified;
    }

    private static RetentionOptions RandomOptions(Random random) => new()
    {
        KeepLast = random.Next(10) switch { 0 => random.Next(-3, 1), 1 => int.MaxValue, _ => random.Next(1, 25) },
        KeepDailyDays = random.Next(10) switch { 0 => random.Next(-3, 1), 1 => int.MaxValue, _ => random.Next(1, 40) },
        KeepWeeklyWeeks = random.Next(10) switch { 0 => random.Next(-3, 1), 1 => int.MaxValue, _ => random.Next(1, 15) },
        IncompleteGrace = random.Next(10) switch
        {
            0 => TimeSpan.FromMinutes(random.Next(-600, 60)),
            1 => TimeSpan.MaxValue,
            _ => TimeSpan.FromMinutes(random.Next(60, 3 * 1440)),
        },
    };
}
