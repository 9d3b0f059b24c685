using System.Diagnostics;
using RegistryDR.Progress;

namespace RegistryDR.Cli.Rendering;

/// <summary>
/// Draws the current phase and transfer rate on one stderr line when stderr is a terminal.
/// When it is not (systemd, a pipe, --json) nothing is drawn: the log lines say it all.
/// </summary>
internal sealed class TerminalProgress : IOperationProgress
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly object _gate = new();
    private string _phase = "";
    private long _lastDraw;
    private readonly Dictionary<string, (long bytes, long startedMs)> _artifacts = new();

    public static IOperationProgress For(bool json) =>
        json || Console.IsErrorRedirected ? NullProgress.Instance : new TerminalProgress();

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
            _artifacts[artifact] = (bytes, _artifacts.TryGetValue(artifact, out var a) ? a.startedMs : _clock.ElapsedMilliseconds);
            Draw(force: false);
        }
    }

    private void Draw(bool force)
    {
        var now = _clock.ElapsedMilliseconds;
        if (!force && now - _lastDraw < 200) return;
        _lastDraw = now;
        var line = $"{_phase}";
        foreach (var (name, (bytes, started)) in _artifacts)
        {
            var seconds = Math.Max(0.001, (now - started) / 1000.0);
            line += $"  {name} {Bytes(bytes)} ({Bytes((long)(bytes / seconds))}/s)";
        }
        var width = Math.Max(20, SafeWidth() - 1);
        Console.Error.Write("\r" + (line.Length > width ? line[..width] : line.PadRight(width)));
        if (force && _phase.Length == 0) Console.Error.WriteLine();
    }

    private static int SafeWidth()
    {
        try { return Console.WindowWidth; } catch (IOException) { return 80; }
    }

    internal static string Bytes(long n) => n switch
    {
        >= 1L << 30 => $"{n / (double)(1L << 30):F1} GiB",
        >= 1L << 20 => $"{n / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{n / 1024.0:F1} KiB",
        _ => $"{n} B",
    };

    public void Done()
    {
        lock (_gate) Console.Error.WriteLine();
    }
}
