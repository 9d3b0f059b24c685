using System.Text.Json;
using RegistryDR.Backup;
using RegistryDR.Retention;
using static RegistryDR.Tests.Retention.RetentionTestSupport;

namespace RegistryDR.Tests.Retention;

[TestClass]
public sealed class RetentionPlannerTests
{
    // A Sunday evening, so the current ISO week (2026-W47, Mon 16 – Sun 22 November) is complete.
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 22, 0, 0, TimeSpan.Zero);
    private static readonly IReadOnlySet<string> NoneVerified = new HashSet<string>();

    /// <summary>Four complete sets a day (03:00, 09:00, 15:00, 21:00) for the 60 days up to today: 240 sets.</summary>
    private static List<BackupSetInfo> SixtyDays()
    {
        var sets = new List<BackupSetInfo>();
        for (var day = 0; day < 60; day++)
            foreach (var hour in new[] { 3, 9, 15, 21 })
                sets.Add(Set(new DateTimeOffset(2026, 11, 22, hour, 0, 0, TimeSpan.Zero).AddDays(-day)));
        return sets;
    }

    private static string IdAt(int month, int day, int hour, string suffix = "000000") =>
        Set(new DateTimeOffset(2026, month, day, hour, 0, 0, TimeSpan.Zero), suffix: suffix).BackupId;

    private static RetentionDecision Decision(RetentionPlan plan, string id) => plan.Sets.Single(s => s.BackupId == id);

    private static int CountReason(RetentionPlan plan, string prefix) => plan.Sets.Count(s => s.Reasons.Any(r => r.StartsWith(prefix, StringComparison.Ordinal)));

    [TestMethod]
    public void Defaults_OverSixtyDays_KeepTheNewestEightTheLastSevenDaysAndTheLastFourWeeks()
    {
        var plan = RetentionPlanner.Plan(SixtyDays(), NoneVerified, Now, new RetentionOptions());

        Assert.HasCount(240, plan.Sets);
        Assert.AreEqual(8, CountReason(plan, "newest 8"));
        Assert.AreEqual(7, CountReason(plan, "daily "));
        Assert.AreEqual(4, CountReason(plan, "weekly "));
        // 8 newest (22 and 21 November) + the 21:00 sets of 16–20 November + the 21:00 sets of the Sundays ending W44–W46.
        Assert.AreEqual(16, plan.KeepCount);
        Assert.AreEqual(224, plan.DeleteCount);
        Assert.AreEqual(224 * 1000L, plan.DeleteBytes);

        CollectionAssert.AreEqual(new[] { "newest 8", "daily 2026-11-22", "weekly 2026-W47" }, Decision(plan, IdAt(11, 22, 21)).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { "newest 8" }, Decision(plan, IdAt(11, 22, 15)).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { "newest 8", "daily 2026-11-21" }, Decision(plan, IdAt(11, 21, 21)).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { "newest 8" }, Decision(plan, IdAt(11, 21, 3)).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { "daily 2026-11-20" }, Decision(plan, IdAt(11, 20, 21)).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { "daily 2026-11-16" }, Decision(plan, IdAt(11, 16, 21)).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { "weekly 2026-W46" }, Decision(plan, IdAt(11, 15, 21)).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { "weekly 2026-W45" }, Decision(plan, IdAt(11, 8, 21)).Reasons.ToArray());
        CollectionAssert.AreEqual(new[] { "weekly 2026-W44" }, Decision(plan, IdAt(11, 1, 21)).Reasons.ToArray());

        foreach (var id in new[] { IdAt(11, 20, 15), IdAt(11, 15, 15), IdAt(10, 25, 21), IdAt(9, 24, 3) })
        {
            var d = Decision(plan, id);
            Assert.AreEqual(RetentionAction.Delete, d.Action, id);
            CollectionAssert.AreEqual(new[] { "older than every rule" }, d.Reasons.ToArray(), id);
        }
        CollectionAssert.AreEqual(plan.Sets.Select(s => s.BackupId).OrderDescending(StringComparer.Ordinal).ToList(), plan.Sets.Select(s => s.BackupId).ToList(), "newest first");
    }

    [TestMethod]
    [DataRow(1, 0, 0, 1)]
    [DataRow(3, 0, 0, 3)]
    [DataRow(1, 30, 0, 30)]     // one per day for 30 days; the newest is also the newest of its day
    [DataRow(1, 0, 5, 5)]
    [DataRow(1, 0, 52, 9)]      // 60 days (Thu 24 Sep – Sun 22 Nov) touch nine ISO weeks, W39–W47
    [DataRow(4, 2, 0, 5)]       // newest 4 = all of today; yesterday's 21:00 is the second day
    [DataRow(240, 0, 0, 240)]
    [DataRow(1000, 1000, 1000, 240)]
    public void KeepCounts_FollowEachRule(int keepLast, int days, int weeks, int expectedKept)
    {
        var options = new RetentionOptions { KeepLast = keepLast, KeepDailyDays = days, KeepWeeklyWeeks = weeks };
        var plan = RetentionPlanner.Plan(SixtyDays(), NoneVerified, Now, options);
        Assert.AreEqual(expectedKept, plan.KeepCount);
        Assert.AreEqual(Math.Min(keepLast, 240), CountReason(plan, $"newest {keepLast}"));
        Assert.AreEqual(Math.Min(days, 60), CountReason(plan, "daily "));
        Assert.AreEqual(Math.Min(weeks, 9), CountReason(plan, "weekly "));
    }

    [TestMethod]
    public void IncompleteSets_AreKeptInsideTheGrace_AndDeletedAfterIt()
    {
        var sets = SixtyDays();
        var running = Set(Now.AddMinutes(-10), complete: false, suffix: "aaaaaa");
        var almostStale = Set(Now.AddHours(-23), complete: false, suffix: "bbbbbb");
        var stale = Set(Now.AddHours(-25), complete: false, suffix: "cccccc");
        var ancient = Set(Now.AddDays(-40), complete: false, suffix: "dddddd");
        sets.AddRange([running, almostStale, stale, ancient]);

        var plan = RetentionPlanner.Plan(sets, NoneVerified, Now, new RetentionOptions());

        foreach (var s in new[] { running, almostStale })
        {
            Assert.AreEqual(RetentionAction.Keep, Decision(plan, s.BackupId).Action);
            CollectionAssert.AreEqual(new[] { "incomplete, younger than grace" }, Decision(plan, s.BackupId).Reasons.ToArray());
        }
        foreach (var s in new[] { stale, ancient })
        {
            Assert.AreEqual(RetentionAction.Delete, Decision(plan, s.BackupId).Action);
            CollectionAssert.AreEqual(new[] { "incomplete, older than grace" }, Decision(plan, s.BackupId).Reasons.ToArray());
        }
        // An incomplete set is never one of the newest N, so the complete rules are unchanged.
        Assert.AreEqual(8, CountReason(plan, "newest 8"));
        Assert.AreEqual(18, plan.KeepCount);

        var shorterGrace = RetentionPlanner.Plan(sets, NoneVerified, Now, new RetentionOptions { IncompleteGrace = TimeSpan.FromHours(2) });
        Assert.AreEqual(RetentionAction.Keep, Decision(shorterGrace, running.BackupId).Action);
        Assert.AreEqual(RetentionAction.Delete, Decision(shorterGrace, almostStale.BackupId).Action);
    }

    [TestMethod]
    public void NewestVerifiedSet_IsKeptBeyondEveryRule_OlderVerifiedSetsAreNot()
    {
        var verified = new HashSet<string> { IdAt(11, 10, 9), IdAt(10, 1, 3) };
        var plan = RetentionPlanner.Plan(SixtyDays(), verified, Now, new RetentionOptions());

        var newestVerified = Decision(plan, IdAt(11, 10, 9));
        Assert.AreEqual(RetentionAction.Keep, newestVerified.Action);
        CollectionAssert.AreEqual(new[] { "newest verified" }, newestVerified.Reasons.ToArray());
        Assert.IsTrue(newestVerified.Verified);

        var olderVerified = Decision(plan, IdAt(10, 1, 3));
        Assert.AreEqual(RetentionAction.Delete, olderVerified.Action);
        Assert.IsTrue(olderVerified.Verified);
        Assert.AreEqual(17, plan.KeepCount);
        Assert.AreEqual(1, CountReason(plan, "newest verified"));
    }

    [TestMethod]
    public void VerificationRecordOnAnIncompleteSet_ProtectsNothing()
    {
        var complete = new[] { Set(Now.AddDays(-3)), Set(Now.AddDays(-2)) };
        var incomplete = Set(Now.AddDays(-1).AddHours(-1), complete: false);
        var options = new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0 };

        var plan = RetentionPlanner.Plan([.. complete, incomplete], new HashSet<string> { incomplete.BackupId }, Now, options);

        Assert.AreEqual(RetentionAction.Delete, Decision(plan, incomplete.BackupId).Action);
        Assert.IsFalse(Decision(plan, incomplete.BackupId).Verified);
        CollectionAssert.AreEqual(new[] { complete[1].BackupId }, plan.Ids(RetentionAction.Keep));
    }

    [TestMethod]
    public void WithRulesThatKeepNothing_TheNewestCompleteSetIsStillKept()
    {
        // Options the validator refuses; the planner must be safe without it. A grace below an
        // hour is taken as an hour, so a set started 50 minutes ago is still left alone.
        var options = new RetentionOptions { KeepLast = 0, KeepDailyDays = 0, KeepWeeklyWeeks = 0, IncompleteGrace = TimeSpan.FromDays(-5) };
        var sets = SixtyDays();
        var running = Set(Now.AddMinutes(-50), complete: false, suffix: "eeeeee");
        var abandoned = Set(Now.AddMinutes(-70), complete: false, suffix: "ffffff");
        sets.AddRange([running, abandoned]);

        var plan = RetentionPlanner.Plan(sets, NoneVerified, Now, options);

        CollectionAssert.AreEquivalent(new[] { IdAt(11, 22, 21), running.BackupId }, plan.Ids(RetentionAction.Keep));
        CollectionAssert.AreEqual(new[] { "newest complete, none verified" }, Decision(plan, IdAt(11, 22, 21)).Reasons.ToArray());
    }

    [TestMethod]
    public void TheOnlyCompleteSet_SaysSo()
    {
        var only = Set(Now.AddDays(-300));
        var sets = new[] { only, Set(Now.AddDays(-2), complete: false), Set(Now.AddHours(-1), complete: false, suffix: "111111") };
        var plan = RetentionPlanner.Plan(sets, NoneVerified, Now, new RetentionOptions { KeepLast = 0, KeepDailyDays = 0, KeepWeeklyWeeks = 0 });
        Assert.AreEqual(RetentionAction.Keep, Decision(plan, only.BackupId).Action);
        CollectionAssert.AreEqual(new[] { "only complete set" }, Decision(plan, only.BackupId).Reasons.ToArray());
        Assert.AreEqual(2, plan.KeepCount);
    }

    [TestMethod]
    public void EmptyStore_GivesAnEmptyPlan()
    {
        var plan = RetentionPlanner.Plan([], NoneVerified, Now, new RetentionOptions());
        Assert.IsEmpty(plan.Sets);
        Assert.AreEqual("", plan.Render());
    }

    [TestMethod]
    public void DuplicateIds_AreRefused()
    {
        var s = Set(Now.AddDays(-1));
        Assert.ThrowsExactly<ArgumentException>(() => RetentionPlanner.Plan([s, s], NoneVerified, Now, new RetentionOptions()));
    }

    [TestMethod]
    public void Render_IsOneLinePerSet_WithIdActionAndReasons()
    {
        var verified = new HashSet<string> { IdAt(11, 10, 9) };
        var plan = RetentionPlanner.Plan(SixtyDays(), verified, Now, new RetentionOptions());
        var lines = plan.Render().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.HasCount(240, lines);
        Assert.AreEqual($"{IdAt(11, 22, 21)}  KEEP    newest 8; daily 2026-11-22; weekly 2026-W47", lines[0]);
        Assert.Contains($"{IdAt(11, 10, 9)}  KEEP    newest verified [verified]", lines);
        Assert.Contains($"{IdAt(11, 20, 15)}  DELETE  older than every rule", lines);
    }

    [TestMethod]
    public void Plan_RoundTripsThroughJson()
    {
        var sets = SixtyDays();
        sets.Add(Set(Now.AddDays(-3), complete: false, suffix: "abcdef"));
        var plan = RetentionPlanner.Plan(sets, new HashSet<string> { IdAt(11, 10, 9) }, Now, new RetentionOptions());
        var web = new JsonSerializerOptions(JsonSerializerDefaults.Web) { WriteIndented = true };

        var json = JsonSerializer.Serialize(plan, web);

        StringAssert.Contains(json, "\"action\": \"Delete\"");
        StringAssert.Contains(json, "\"state\": \"Incomplete\"");
        StringAssert.Contains(json, "\"deleteCount\": 224");
        var back = JsonSerializer.Deserialize<RetentionPlan>(json, web)!;
        Assert.AreEqual(plan.PlannedAt, back.PlannedAt);
        Assert.AreEqual(plan.Render(), back.Render());
        Assert.AreEqual(plan.KeepCount, back.KeepCount);
    }

    [TestMethod]
    public void Options_Validate_NamesEachKey()
    {
        var ok = new List<string>();
        RetentionOptions.Validate(new RetentionOptions(), ok);
        Assert.IsEmpty(ok);

        var errors = new List<string>();
        RetentionOptions.Validate(new RetentionOptions { KeepLast = 0, KeepDailyDays = -1, KeepWeeklyWeeks = -2, IncompleteGrace = TimeSpan.FromMinutes(30) }, errors);
        CollectionAssert.AreEqual(new[]
        {
            "Retention:KeepLast is 0; it must be at least 1.",
            "Retention:KeepDailyDays is -1; it must be 0 (off) or more.",
            "Retention:KeepWeeklyWeeks is -2; it must be 0 (off) or more.",
            "Retention:IncompleteGrace is 00:30:00; it must be at least 01:00:00, or a backup that is still running could be deleted.",
        }, errors);

        var off = new List<string>();
        RetentionOptions.Validate(new RetentionOptions { KeepLast = 1, KeepDailyDays = 0, KeepWeeklyWeeks = 0, IncompleteGrace = TimeSpan.FromHours(1) }, off);
        Assert.IsEmpty(off);
    }
}
