using RegistryDR.Backup;
using RegistryDR.Progress;

namespace RegistryDR.Cli.Rendering;

/// <summary>
/// One status line on a terminal's stderr: the phase, the bytes moved over all artifacts (against
/// the total when it is known), the current rate and, with a total, the time left. Redrawn at
/// most every 200 ms and on every phase change; log lines pass above it (<see cref="StatusLine"/>).
/// When stderr is not a terminal (systemd, a pipe) or with --json nothing is drawn: the log lines say it all.
/// </summary>
internal sealed class TerminalProgress(StatusLine line, TimeProvider time) : IOperationProgress
{
    /// <summary>The rate is measured over this much recent time, so it follows the transfer rather than averaging since the start.</summary>
    internal static readonly TimeSpan RateWindow = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan RedrawEvery = TimeSpan.FromMilliseconds(200);

    private readonly object _gate = new();
    private readonly Dictionary<string, long> _artifacts = new(StringComparer.Ordinal);
    private readonly Queue<(DateTimeOffset at, long bytes)> _samples = new();
    private string _phase = "";
    private long _total;
    private DateTimeOffset? _lastDraw;

    /// <summary>The progress display for a command: a terminal's status line, or nothing.</summary>
    public static IOperationProgress For(bool quiet) =>
        !quiet && StatusLine.Current is { } line ? new TerminalProgress(line, TimeProvider.System) : NullProgress.Instance;

    public void Expect(long totalBytes)
    {
        lock (_gate) _total = totalBytes;
    }

    public void Phase(string phase)
    {
        lock (_gate)
        {
            _phase = phase;
            Draw(force: true);
        }
    }

    public void Transferred(string artifact, long bytes)
    {
        lock (_gate)
        {
            _artifacts[artifact] = bytes;
            Draw(force: false);
        }
    }

    /// <summary>Removes the status line: results follow on stdout.</summary>
    public void Done()
    {
        lock (_gate) line.SetStatus("");
    }

    private void Draw(bool force)
    {
        var now = time.GetUtcNow();
        var done = _artifacts.Values.Sum();
        _samples.Enqueue((now, done));
        while (_samples.Count > 1 && now - _samples.Peek().at > RateWindow) _samples.Dequeue();
        if (!force && _lastDraw is { } last && now - last < RedrawEvery) return;
        _lastDraw = now;
        var (oldestAt, oldestBytes) = _samples.Peek();
        var seconds = (now - oldestAt).TotalSeconds;
        double? rate = seconds >= 0.5 ? (done - oldestBytes) / seconds : null;
        line.SetStatus(Render(_phase, done, _total, rate, line.Width));
    }

    /// <summary>
    /// "restore database  1.2 GiB / 3.4 GiB  85.3 MiB/s  ETA 0:26", fitted into <paramref name="width"/> − 1
    /// columns (the last column would wrap on some terminals). When it does not fit the phase is
    /// shortened, never the figures: they are what changes.
    /// </summary>
    internal static string Render(string phase, long done, long total, double? bytesPerSecond, int width)
    {
        var room = Math.Max(1, width - 1);
        // From the fullest to the barest: on a narrow terminal the ETA goes first, then the total.
        var amount = total > 0 ? $"{SetFormat.Bytes(Math.Min(done, total))} / {SetFormat.Bytes(total)}" : SetFormat.Bytes(done);
        var rate = bytesPerSecond is { } r ? $"  {SetFormat.Bytes((long)r)}/s" : "";
        var eta = bytesPerSecond is > 0 && total > done ? "  ETA " + Eta(TimeSpan.FromSeconds((total - done) / bytesPerSecond.Value)) : "";
        string[] figures = done > 0 || total > 0
            ? [amount + rate + eta, amount + rate, SetFormat.Bytes(done) + rate, SetFormat.Bytes(done)]
            : [""];
        foreach (var f in figures)
        {
            var separator = f.Length > 0 && phase.Length > 0 ? "  " : "";
            if (phase.Length + separator.Length + f.Length <= room) return phase + separator + f;
            var forPhase = room - separator.Length - f.Length;
            if (forPhase >= 8) return phase[..(forPhase - 1)] + "…" + separator + f;
        }
        var barest = figures[^1].Length > 0 ? figures[^1] : phase;
        return barest[..Math.Min(barest.Length, room)];
    }

    private static string Eta(TimeSpan left) => left.TotalHours >= 1
        ? $"{(int)left.TotalHours}:{left.Minutes:00}:{left.Seconds:00}"
        : $"{left.Minutes}:{left.Seconds:00}";
}
