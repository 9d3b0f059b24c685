using RegistryDR.Postgres;

namespace RegistryDR.Tests.Postgres;

/// <summary>
/// The fingerprint catches a missing or a duplicated row, and never refuses a restore whose
/// rows moved between the leaves of a tree pg_dump loads through its root — also when comparing
/// with a set that counted those leaves one by one. (Counted on a server in Fidelity/DatabasePartitionTests.)
/// </summary>
[TestClass]
public sealed class DatabaseFingerprintTests
{
    private static DatabaseFingerprint Restored(long events, long tags) =>
        new(new Dictionary<string, long> { ["public.events"] = events, ["public.tags"] = tags })
        {
            CountedAtRoot = new Dictionary<string, string> { ["public.events_p0"] = "public.events", ["public.events_p1"] = "public.events" },
        };

    [TestMethod]
    public void CountsAtTheRoot_MatchEvenThoughRowsMovedBetweenLeaves()
    {
        var recorded = new DatabaseFingerprint(new Dictionary<string, long> { ["public.events"] = 4000, ["public.tags"] = 10 });
        Assert.IsNull(recorded.FirstDifference(Restored(4000, 10)));
    }

    [TestMethod]
    public void AnOlderSetsLeafCounts_AreComparedAsTheirSum()
    {
        var older = new DatabaseFingerprint(new Dictionary<string, long> { ["public.events_p0"] = 1500, ["public.events_p1"] = 2500, ["public.tags"] = 10 });
        Assert.IsNull(older.FirstDifference(Restored(4000, 10)));
        Assert.AreEqual("table public.events has 3999 rows; the backup recorded 4000", older.FirstDifference(Restored(3999, 10)));
    }

    [TestMethod]
    public void AMissingOrDuplicatedRow_IsCaught()
    {
        var recorded = new DatabaseFingerprint(new Dictionary<string, long> { ["public.events"] = 4000, ["public.tags"] = 10 });
        Assert.AreEqual("table public.events has 3999 rows; the backup recorded 4000", recorded.FirstDifference(Restored(3999, 10)));
        Assert.AreEqual("table public.tags has 11 rows; the backup recorded 10", recorded.FirstDifference(Restored(4000, 11)));
    }
}
