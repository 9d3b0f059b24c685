using System.Formats.Tar;
using System.Text;
using RegistryDR.Configuration;
using RegistryDR.Continuous;
using RegistryDR.Continuous.Internal;
using static RegistryDR.Tests.Continuous.ContinuousRetentionTests;

namespace RegistryDR.Tests.Continuous;

/// <summary>The pure parts of continuous mode: which base backup and WAL a restore uses, WAL names and headers, the tar sniffer, the options.</summary>
[TestClass]
public sealed class RecoveryPlannerTests
{
    private const long Size = 16 << 20;
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 2, 0, 0, TimeSpan.Zero);
    private static readonly IReadOnlyDictionary<uint, IReadOnlyList<TimelineSwitch>> NoHistory = new Dictionary<uint, IReadOnlyList<TimelineSwitch>>();

    private static string BaseId(int minutes) => RegistryDR.Backup.BackupLayout.NewBackupId(T0.AddMinutes(minutes));

    [TestMethod]
    public void Latest_ReplaysFromTheNewestBaseToTheLastContiguousSegment()
    {
        var older = Manifest(BaseId(0), 2, 2);
        var newer = Manifest(BaseId(15), 5, 6);
        var wal = Enumerable.Range(1, 9).Select(s => Segment(1, (ulong)s, T0.AddMinutes(s))).ToList();
        var plan = RecoveryPlanner.Plan([older, newer], wal, NoHistory, RecoveryTarget.Latest);
        Assert.AreEqual(newer.BackupId, plan.Base.BackupId);
        CollectionAssert.AreEqual(Enumerable.Range(5, 5).Select(s => WalFileName.SegmentName(1, (ulong)s, Size)).ToList(), plan.Segments.Select(s => s.File.Name).ToList());
        Assert.AreEqual(T0.AddMinutes(9), plan.ResultingPoint, "the time the newest segment of the chain was archived");
        Assert.AreEqual(5 * Size, plan.WalBytes);
        Assert.AreEqual(5 * 1000L, plan.WalStoredBytes);
    }

    [TestMethod]
    public void AGapWithWalBeyondIt_IsRefusedNamingTheMissingSegment()
    {
        var b = Manifest(BaseId(0), 2, 2);
        var wal = new[] { 2, 3, 5, 6 }.Select(s => Segment(1, (ulong)s)).ToList();
        var ex = Assert.ThrowsExactly<RecoveryPlanException>(() => RecoveryPlanner.Plan([b], wal, NoHistory, RecoveryTarget.Latest));
        Assert.AreEqual(
            "WAL segment 000000010000000000000004 is missing from the store, but later WAL is there (000000010000000000000005, 000000010000000000000006): recovery cannot replay past the gap. Restore to a time before 000000010000000000000004 was written, or find the missing segment.",
            ex.Message);
    }

    [TestMethod]
    public void ANewTimeline_IsFollowedFromItsSwitchPoint_AndTheOldTimelinesLaterSegmentsAreNotAGap()
    {
        var b = Manifest(BaseId(0), 2, 2);
        var switchPoint = new Lsn(5 * (ulong)Size + 0x1000);
        var histories = new Dictionary<uint, IReadOnlyList<TimelineSwitch>> { [2] = [new TimelineSwitch(1, switchPoint)] };
        // Timeline 1 went on to segment 8 (a zombie, or WAL archived before a point-in-time restore branched off).
        var wal = Enumerable.Range(2, 7).Select(s => Segment(1, (ulong)s)).Concat(Enumerable.Range(5, 3).Select(s => Segment(2, (ulong)s))).ToList();
        var plan = RecoveryPlanner.Plan([b], wal, histories, RecoveryTarget.Latest);
        Assert.AreEqual(2u, plan.TargetTimeline);
        CollectionAssert.AreEqual(
            new[] { "000000010000000000000002", "000000010000000000000003", "000000010000000000000004", "000000020000000000000005", "000000020000000000000006", "000000020000000000000007" },
            plan.Segments.Select(s => s.File.Name).ToList());
    }

    [TestMethod]
    public void ABaseTheNewestTimelineLeftBeforeItWasConsistent_IsSkippedForAnOlderOne()
    {
        var older = Manifest(BaseId(0), 2, 2);
        var zombieBase = Manifest(BaseId(30), 8, 8); // taken on timeline 1 after timeline 2 branched off at segment 5
        var histories = new Dictionary<uint, IReadOnlyList<TimelineSwitch>> { [2] = [new TimelineSwitch(1, new Lsn(5 * (ulong)Size + 0x1000))] };
        var wal = Enumerable.Range(2, 8).Select(s => Segment(1, (ulong)s)).Concat(Enumerable.Range(5, 2).Select(s => Segment(2, (ulong)s))).ToList();
        var plan = RecoveryPlanner.Plan([older, zombieBase], wal, histories, RecoveryTarget.Latest);
        Assert.AreEqual(older.BackupId, plan.Base.BackupId);
        Assert.AreEqual(1, plan.SkippedBases.Count);
        StringAssert.StartsWith(plan.SkippedBases[0], $"{zombieBase.BackupId}: timeline 2 left its timeline 1 at 0/5001000, before the base backup was consistent (0/8000100).");
    }

    [TestMethod]
    public void ATime_UsesTheNewestBaseCompleteByThen_AndStopsDownloadingPastIt()
    {
        var b1 = Manifest(BaseId(0), 2, 2, completed: T0.AddMinutes(1));
        var b2 = Manifest(BaseId(20), 20, 20, completed: T0.AddMinutes(21));
        var wal = Enumerable.Range(2, 60).Select(s => Segment(1, (ulong)s, T0.AddMinutes(s))).ToList();
        var target = new RecoveryTarget(T0.AddMinutes(10));
        var plan = RecoveryPlanner.Plan([b1, b2], wal, NoHistory, target);
        Assert.AreEqual(b1.BackupId, plan.Base.BackupId, "b2 completed after the target");
        // Archived up to ten minutes after the target may still hold the first commit after it; one more is enough.
        Assert.AreEqual(WalFileName.SegmentName(1, 21, Size), plan.LastSegment!.File.Name);
        Assert.AreEqual(target.Time, plan.ResultingPoint);

        var tooLate = Assert.ThrowsExactly<RecoveryPlanException>(() => RecoveryPlanner.Plan([b1, b2], wal, NoHistory, new RecoveryTarget(T0.AddHours(2))));
        StringAssert.Contains(tooLate.Message, "was archived at 2026-11-22 03:01:00Z, before 2026-11-22 04:00:00.000000Z");
        var tooEarly = Assert.ThrowsExactly<RecoveryPlanException>(() => RecoveryPlanner.Plan([b1, b2], wal, NoHistory, new RecoveryTarget(T0)));
        StringAssert.StartsWith(tooEarly.Message, $"No base backup was complete by 2026-11-22 02:00:00.000000Z: the oldest, {b1.BackupId}, completed at 2026-11-22 02:01:00Z.");
    }

    [TestMethod]
    public void TwoDifferentCopiesOfOneSegment_AreRefused()
    {
        var b = Manifest(BaseId(0), 2, 2);
        var wal = new[] { Segment(1, 2), Segment(1, 3), Segment(1, 3, sha: new string('e', 64)) }.ToList();
        var ex = Assert.ThrowsExactly<RecoveryPlanException>(() => RecoveryPlanner.Plan([b], wal, NoHistory, RecoveryTarget.Latest));
        StringAssert.StartsWith(ex.Message, "the store holds 2 different copies of WAL segment 000000010000000000000003");
    }

    [TestMethod]
    public void WalNames_Lsns_AndHistories_ParseAsPostgreSqlWritesThem()
    {
        Assert.IsTrue(WalFileName.TryParse("00000002000000010000003F", out var segment));
        Assert.AreEqual((WalFileKind.Segment, 2u), (segment!.Kind, segment.Timeline));
        Assert.AreEqual(256UL + 63, segment.SegmentNumber(Size));
        Assert.AreEqual("00000002000000010000003F", WalFileName.SegmentName(2, 256 + 63, Size));
        Assert.IsTrue(WalFileName.TryParse("000000010000000000000003.00000028.backup", out var backup));
        Assert.AreEqual(WalFileKind.BackupHistory, backup!.Kind);
        Assert.IsTrue(WalFileName.TryParse("000000010000000000000007.partial", out var partial));
        Assert.AreEqual(WalFileKind.Partial, partial!.Kind);
        Assert.IsTrue(WalFileName.TryParse("0000000A.history", out var history));
        Assert.AreEqual((WalFileKind.History, 10u), (history!.Kind, history.Timeline));
        foreach (var bad in new[] { "", "0000000100000000000000zz", "00000001000000000000000a", "../000000010000000000000001", "000000000000000000000001", "000000010000000000000001.gz", "postgresql.conf" })
            Assert.IsFalse(WalFileName.TryParse(bad, out _), bad);

        Assert.AreEqual("16/B374D848", Lsn.Parse("16/B374D848").ToString());
        Assert.AreEqual(0x16_B374D848UL, Lsn.Parse("16/B374D848").Value);
        Assert.IsFalse(Lsn.TryParse("16-B374D848", out _));

        var parsed = TimelineHistory.Parse("1\t0/5000160\tbefore 2026-11-30 21:07:33.71496+00\n\n2\t0/9000000\tno recovery target specified\n", 3);
        CollectionAssert.AreEqual(new[] { new TimelineSwitch(1, Lsn.Parse("0/5000160")), new TimelineSwitch(2, Lsn.Parse("0/9000000")) }, parsed.ToList());
        Assert.ThrowsExactly<FormatException>(() => TimelineHistory.Parse("2\t0/9000000\treason\n1\t0/5000160\treason\n", 3));
    }

    [TestMethod]
    public void ASegmentHeader_MustAgreeWithItsName()
    {
        WalFileName.TryParse("000000020000000000000005", out var file);
        var bytes = new byte[Size];
        BitConverter.GetBytes((ushort)0xD110).CopyTo(bytes, 0);
        BitConverter.GetBytes((ushort)0x0006).CopyTo(bytes, 2);
        BitConverter.GetBytes(1u).CopyTo(bytes, 4);                  // pages copied from timeline 1 at promotion
        BitConverter.GetBytes(5UL * (ulong)Size).CopyTo(bytes, 8);
        BitConverter.GetBytes(7714064530962748048UL).CopyTo(bytes, 24);
        BitConverter.GetBytes((uint)Size).CopyTo(bytes, 32);
        Assert.IsNull(WalSegmentHeader.Check(file!, bytes, out var header));
        Assert.AreEqual(7714064530962748048UL, header!.SystemIdentifier);

        BitConverter.GetBytes(6UL * (ulong)Size).CopyTo(bytes, 8);
        Assert.AreEqual("000000020000000000000005 starts at 0/6000000 by its header, not at 0/5000000 as its name says", WalSegmentHeader.Check(file!, bytes, out _));
        BitConverter.GetBytes(5UL * (ulong)Size).CopyTo(bytes, 8);
        BitConverter.GetBytes(3u).CopyTo(bytes, 4);
        Assert.AreEqual("000000020000000000000005 belongs to timeline 2 by its name but its header says 3", WalSegmentHeader.Check(file!, bytes, out _));
        Assert.AreEqual("000000020000000000000005 is 100 bytes but its header says segments are 16777216 bytes", WalSegmentHeader.Check(file!, bytes.AsSpan(0, 100), out _));
    }

    [TestMethod]
    public async Task TheTarSniffer_KeepsTheNamedMembers_AndPassesEveryByteThrough()
    {
        using var tar = new MemoryStream();
        await using (var writer = new TarWriter(tar, TarEntryFormat.Ustar, leaveOpen: true))
        {
            await writer.WriteEntryAsync(new UstarTarEntry(TarEntryType.Directory, "base/"));
            var big = new UstarTarEntry(TarEntryType.RegularFile, "base/1/1259") { DataStream = new MemoryStream(new byte[70_000]) };
            await writer.WriteEntryAsync(big);
            await writer.WriteEntryAsync(new UstarTarEntry(TarEntryType.RegularFile, "backup_label") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes("START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n")) });
            await writer.WriteEntryAsync(new UstarTarEntry(TarEntryType.RegularFile, "backup_manifest") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes("{\"WAL-Ranges\": []}")) });
        }
        var bytes = tar.ToArray();
        var sniffer = new TarSniffer(new MemoryStream(bytes), new HashSet<string> { "backup_label", "backup_manifest" }, 1 << 20);
        using var copy = new MemoryStream();
        var buffer = new byte[777]; // reads that never line up with tar blocks
        int n;
        while ((n = await sniffer.ReadAsync(buffer)) > 0) copy.Write(buffer, 0, n);
        CollectionAssert.AreEqual(bytes, copy.ToArray());
        Assert.IsTrue(sniffer.Ended);
        Assert.AreEqual(4, sniffer.Entries);
        Assert.AreEqual("START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n", Encoding.UTF8.GetString(sniffer.Captured["backup_label"]));
        Assert.AreEqual("{\"WAL-Ranges\": []}", Encoding.UTF8.GetString(sniffer.Captured["backup_manifest"]));
        Assert.AreEqual(2, sniffer.Captured.Count);
    }

    [TestMethod]
    public void ContinuousMode_NamesEveryMissingSetting()
    {
        var options = new RegistryDrOptions { Database = new DatabaseOptions { Mode = DatabaseMode.Continuous } };
        options.Continuous.ArchiveTimeout = TimeSpan.FromHours(2);
        options.Continuous.CompressionLevel = 12;
        var ex = Assert.ThrowsExactly<ConfigurationException>(() => RegistryDrConfiguration.Validate(options));
        StringAssert.Contains(ex.Message, "Continuous:DataDirectory '' must be the PostgreSQL server's data directory, an absolute path (SHOW data_directory), when Database:Mode is Continuous.");
        StringAssert.Contains(ex.Message, "Continuous:ArchiveTimeout is 02:00:00; it must be between 00:00:01 and 01:00:00 (PostgreSQL's archive_timeout).");
        StringAssert.Contains(ex.Message, "Continuous:ServerStopCommand must be the argv that stops PostgreSQL");
        StringAssert.Contains(ex.Message, "Continuous:ServerStartCommand must be the argv that starts PostgreSQL");
        StringAssert.Contains(ex.Message, "Continuous:CompressionLevel is 12; it must be between 0 and 9.");
        // Logical mode (the default) ignores the section.
        RegistryDrConfiguration.Validate(new RegistryDrOptions());
        Assert.AreEqual(RecoveryTarget.Latest, RecoveryTarget.Parse("latest"));
        Assert.AreEqual(new DateTimeOffset(2026, 11, 22, 2, 17, 0, TimeSpan.Zero), RecoveryTarget.Parse("2026-11-22T02:17:00Z").Time);
        Assert.AreEqual(new DateTimeOffset(2026, 11, 22, 2, 17, 0, TimeSpan.Zero), RecoveryTarget.Parse("2026-11-22 02:17:00").Time, "no offset: UTC");
        Assert.ThrowsExactly<FormatException>(() => RecoveryTarget.Parse("yesterday"));
    }
}
