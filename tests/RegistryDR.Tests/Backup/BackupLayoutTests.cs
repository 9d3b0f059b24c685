using RegistryDR.Backup;

namespace RegistryDR.Tests.Backup;

/// <summary>Backup ids: they sort by start time as plain strings, to the millisecond, and ids of the older whole-second form stay readable.</summary>
[TestClass]
public sealed class BackupLayoutTests
{
    private static readonly DateTimeOffset T = new(2026, 12, 1, 1, 37, 5, 123, TimeSpan.Zero);

    [TestMethod]
    public void TwoSetsStartedInTheSameSecond_SortByTheirStart_WhateverTheirRandomSuffixes()
    {
        // Found by a CI run: a final backup one second fraction after the scheduled one sorted as the older set half the time.
        for (var n = 0; n < 200; n++)
        {
            var first = BackupLayout.NewBackupId(T);
            var second = BackupLayout.NewBackupId(T.AddMilliseconds(1));
            Assert.IsLessThan(0, string.CompareOrdinal(first, second), $"{first} must sort before {second}");
        }
    }

    [TestMethod]
    public void AnIdCarriesItsStartTimeToTheMillisecond()
    {
        var id = BackupLayout.NewBackupId(T);
        StringAssert.StartsWith(id, "20261201T013705.123Z-");
        Assert.IsTrue(BackupLayout.IsValidBackupId(id));
        Assert.IsTrue(BackupLayout.TryParseTime(id, out var time));
        Assert.AreEqual(T, time);
    }

    [TestMethod]
    public void IdsOfTheWholeSecondForm_AreStillValidAndParsed()
    {
        Assert.IsTrue(BackupLayout.IsValidBackupId("20261122T021500Z-3fa9c1"));
        Assert.IsTrue(BackupLayout.TryParseTime("20261122T021500Z-3fa9c1", out var time));
        Assert.AreEqual(new DateTimeOffset(2026, 11, 22, 2, 15, 0, TimeSpan.Zero), time);
    }

    [TestMethod]
    [DataRow("20261201T013705.123Z-3fa9c1..")]
    [DataRow("20261201T013705.123Z-3fa9c1/..")]
    [DataRow("20261201T013705.1234Z-3fa9c1")]
    [DataRow("20261201T013705.Z-3fa9c1")]
    [DataRow("20261201T013705.123Z")]
    [DataRow("20261201T013705.123Z-3fa 9c1")]
    public void AnythingElseIsNotAnId(string id) => Assert.IsFalse(BackupLayout.IsValidBackupId(id), id);
}
