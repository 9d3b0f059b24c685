using RegistryDR.Cli.Rendering;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Cli;

/// <summary>The progress display on a fake terminal: a StringWriter as stderr, a width the test chooses, a clock the test moves.</summary>
[TestClass]
public sealed class ProgressLineTests
{
    private const string Clear = "\r\u001b[K";
    private const long MiB = 1024 * 1024;

    [TestMethod]
    public void ALogLine_ClearsTheProgressLine_IsPrintedOnItsOwn_AndTheLineIsRedrawnBelowIt()
    {
        var terminal = new StringWriter();
        var line = new StatusLine(terminal, () => 60);
        var progress = new TerminalProgress(line, new ManualTimeProvider(DateTimeOffset.UnixEpoch));
        progress.Phase("download and verify");
        line.Write("2026-01-01T00:00:00Z info: registry-dr[2001] artifact database verified" + Environment.NewLine);
        progress.Done();
        Assert.AreEqual(
            Clear + "download and verify" +
            Clear + "2026-01-01T00:00:00Z info: registry-dr[2001] artifact database verified\n" +
            "download and verify" +
            Clear,
            terminal.ToString());
    }

    [TestMethod]
    public void ALineWrittenInPieces_IsNotInterrupted_AndTheStatusComesBackAfterIt()
    {
        var terminal = new StringWriter();
        var line = new StatusLine(terminal, () => 60);
        line.SetStatus("restore database");
        line.Write("error: ");
        line.SetStatus("swap"); // while the line above is unfinished: held back
        line.WriteLine("the registry did not start");
        Assert.AreEqual(Clear + "restore database" + Clear + "error: " + "the registry did not start\n" + "swap", terminal.ToString());
    }

    [TestMethod]
    public void TheRate_FollowsTheTransfer_NotTheAverageSinceTheStart()
    {
        var terminal = new StringWriter();
        var line = new StatusLine(terminal, () => 120);
        var clock = new ManualTimeProvider(DateTimeOffset.UnixEpoch);
        var progress = new TerminalProgress(line, clock);
        progress.Expect(200 * MiB);
        progress.Phase("restore database");
        progress.Transferred("database", 0);
        clock.Advance(TimeSpan.FromSeconds(1));
        progress.Transferred("database", 100 * MiB);
        // The first artifact is finished; ten seconds later the next one moves at 10 MiB/s.
        clock.Advance(TimeSpan.FromSeconds(10));
        progress.Transferred("table data", 0);
        clock.Advance(TimeSpan.FromSeconds(1));
        progress.Transferred("table data", 10 * MiB);
        Assert.AreEqual(Clear + "restore database  110.0 MiB / 200.0 MiB  10.0 MiB/s  ETA 0:09", LastDraw(terminal));
    }

    [TestMethod]
    public void RedrawsAreAtMostFivePerSecond_ExceptAtAPhaseChange()
    {
        var terminal = new StringWriter();
        var line = new StatusLine(terminal, () => 120);
        var clock = new ManualTimeProvider(DateTimeOffset.UnixEpoch);
        var progress = new TerminalProgress(line, clock);
        progress.Phase("dump database");
        for (var i = 1; i <= 10; i++)
        {
            clock.Advance(TimeSpan.FromMilliseconds(50));
            progress.Transferred("database", i * MiB);
        }
        progress.Phase("archive config");
        // Phase, then one redraw after 200 ms (the 4th update), another after 400 ms (the 8th), then the new phase.
        Assert.AreEqual(4, terminal.ToString().Split(Clear).Length - 1, terminal.ToString());
        StringAssert.StartsWith(LastDraw(terminal), Clear + "archive config  10.0 MiB  20.0 MiB/s");
    }

    [TestMethod]
    [DataRow(120, "verify table-data-0003-0017-of-public.manifests  1.5 GiB / 3.0 GiB  100.0 MiB/s  ETA 0:15")]
    [DataRow(80, "verify table-data-0003-0017-of-publi…  1.5 GiB / 3.0 GiB  100.0 MiB/s  ETA 0:15")]
    [DataRow(60, "verify table-dat…  1.5 GiB / 3.0 GiB  100.0 MiB/s  ETA 0:15")]
    [DataRow(44, "verify tab…  1.5 GiB / 3.0 GiB  100.0 MiB/s")]
    [DataRow(20, "verify ta…  1.5 GiB")]
    public void ALongLine_ShortensThePhaseFirst_AndKeepsTheChangingFigures(int width, string expected)
    {
        var rendered = TerminalProgress.Render("verify table-data-0003-0017-of-public.manifests", 1536 * MiB, 3072 * MiB, 100.0 * MiB, width);
        Assert.AreEqual(expected, rendered);
        Assert.IsLessThanOrEqualTo(width - 1, rendered.Length, "the last column wraps on some terminals");
    }

    [TestMethod]
    public void ATerminalThatCannotTellItsWidth_IsTakenAsEightyColumns()
    {
        Assert.AreEqual(80, new StatusLine(new StringWriter(), () => 0).Width);
        Assert.AreEqual(80, new StatusLine(new StringWriter(), () => throw new IOException("not a terminal")).Width);
        var rendered = TerminalProgress.Render("download and verify", 5 * MiB, 0, 2.0 * MiB, new StatusLine(new StringWriter(), () => 0).Width);
        Assert.AreEqual("download and verify  5.0 MiB  2.0 MiB/s", rendered);
    }

    private static string LastDraw(StringWriter terminal)
    {
        var text = terminal.ToString();
        return text[text.LastIndexOf(Clear, StringComparison.Ordinal)..];
    }
}
