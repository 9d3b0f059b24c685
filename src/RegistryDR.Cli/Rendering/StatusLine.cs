using System.Text;

namespace RegistryDR.Cli.Rendering;

/// <summary>
/// stderr with one redrawable status line at its bottom. Everything else written to it (log
/// lines, errors) clears the status line first, is written, and the status line is drawn again
/// below it, so a log line is never printed onto the progress display.
/// </summary>
/// <remarks>
/// Installed as <see cref="Console.Error"/> before the logger factory is created (the console
/// logger keeps the writer it finds then). Drawing uses "\r" and ANSI "erase in line" (ESC [ K),
/// which every terminal emulator understands; the line is only drawn when stderr is a terminal.
/// </remarks>
internal sealed class StatusLine(TextWriter inner, Func<int> width) : TextWriter
{
    /// <summary>Back to the start of the line and erase it.</summary>
    internal const string Clear = "\r\u001b[K";

    /// <summary>Assumed when the terminal does not say how wide it is.</summary>
    internal const int DefaultWidth = 80;

    /// <summary>The process's stderr status line, when stderr is a terminal (set once by Program).</summary>
    public static StatusLine? Current { get; set; }

    private readonly object _gate = new();
    private string _status = "";
    private bool _shown;
    private bool _midLine;

    public override Encoding Encoding => inner.Encoding;

    /// <summary>The terminal's width in columns, or <see cref="DefaultWidth"/> when it cannot be told.</summary>
    public int Width
    {
        get
        {
            int w;
            try { w = width(); }
            catch (Exception ex) when (ex is IOException or PlatformNotSupportedException or InvalidOperationException) { w = 0; }
            return w > 0 ? w : DefaultWidth;
        }
    }

    /// <summary>Replaces the status line (already fitted to <see cref="Width"/>); empty removes it.</summary>
    public void SetStatus(string status)
    {
        lock (_gate)
        {
            _status = status;
            if (_midLine) return; // drawn once the pending line is finished
            inner.Write(status.Length == 0 ? (_shown ? Clear : "") : Clear + status);
            _shown = status.Length > 0;
            inner.Flush();
        }
    }

    public override void Write(char value) => Write(value.ToString());

    public override void Write(char[] buffer, int index, int count) => Write(new string(buffer, index, count));

    public override void Write(string? value)
    {
        if (string.IsNullOrEmpty(value)) return;
        lock (_gate)
        {
            if (_shown)
            {
                inner.Write(Clear);
                _shown = false;
            }
            inner.Write(value);
            _midLine = !value.EndsWith('\n');
            if (!_midLine && _status.Length > 0)
            {
                inner.Write(_status);
                _shown = true;
            }
            inner.Flush();
        }
    }

    public override void WriteLine(string? value) => Write((value ?? "") + NewLine);

    public override void WriteLine() => Write(NewLine);

    public override void Flush()
    {
        lock (_gate) inner.Flush();
    }
}
