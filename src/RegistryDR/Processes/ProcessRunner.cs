using System.Diagnostics;
using System.Text;

namespace RegistryDR.Processes;

/// <summary>What to run. Secrets go in <see cref="Environment"/>, never in <see cref="Arguments"/>.</summary>
public sealed record ProcessSpec(string FileName, IReadOnlyList<string> Arguments)
{
    /// <summary>Variables added to (or, with a null value, removed from) the inherited environment.</summary>
    public IReadOnlyDictionary<string, string?> Environment { get; init; } = new Dictionary<string, string?>();

    /// <summary>Kills the process tree after this long. Null: no limit other than cancellation.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>A name for messages, e.g. "pg_dump".</summary>
    public string DisplayName { get; init; } = System.IO.Path.GetFileName(FileName);
}

public sealed record ProcessResult(int ExitCode, string StandardError, TimeSpan Elapsed)
{
    /// <summary>The child's pid, for messages ("pg_dump (pid 4242) exited with code 1").</summary>
    public int ProcessId { get; init; }
}

/// <summary>A child process failed; the message carries its exit code and the tail of its stderr.</summary>
public sealed class ProcessFailedException(string message, int exitCode, string standardError) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
    public string StandardError { get; } = standardError;
}

/// <summary>
/// The one way RegistryDR runs pg_dump, pg_restore, psql and the registry's own commands:
/// stdin and stdout are streamed by the caller (never buffered whole), stderr is kept as a
/// bounded tail for the error message, cancellation and timeouts kill the whole tree.
/// </summary>
public static class ProcessRunner
{
    private const int StderrTailChars = 16 * 1024;

    /// <summary>
    /// Runs the process. <paramref name="writeStdin"/> feeds its stdin (closed when it returns;
    /// null closes stdin at once); <paramref name="readStdout"/> consumes its stdout (null discards it).
    /// Returns when the process has exited and both pumps have finished.
    /// </summary>
    public static Task<ProcessResult> RunAsync(
        ProcessSpec spec,
        Func<Stream, CancellationToken, Task>? writeStdin = null,
        Func<Stream, CancellationToken, Task>? readStdout = null,
        CancellationToken cancellationToken = default) =>
        RunCoreAsync(spec, writeStdin, readStdout, checkExit: false, cancellationToken);

    private static async Task<ProcessResult> RunCoreAsync(
        ProcessSpec spec,
        Func<Stream, CancellationToken, Task>? writeStdin,
        Func<Stream, CancellationToken, Task>? readStdout,
        bool checkExit,
        CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo(spec.FileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in spec.Arguments) psi.ArgumentList.Add(a);
        foreach (var (k, v) in spec.Environment)
        {
            if (v is null) psi.Environment.Remove(k);
            else psi.Environment[k] = v;
        }

        using var timeoutCts = spec.Timeout is { } t ? new CancellationTokenSource(t) : new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutCts.Token);
        var token = linked.Token;

        var sw = Stopwatch.StartNew();
        using var process = new Process { StartInfo = psi };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new ProcessFailedException(
                $"{spec.DisplayName} could not be started ({spec.FileName}): {ex.Message}. Is it installed and on PATH (or is Database:BinDirectory right)?",
                -1, "");
        }

        var name = $"{spec.DisplayName} (pid {process.Id})";
        // Our own reading of stderr, and the draining of stdout nobody consumes, end at the
        // child's EOF, or PipeGrace after it exited: a process it started in the background (a
        // registry daemon launched by Registry:StartCommand) may hold the pipes open for good.
        using var afterExit = new CancellationTokenSource();
        var exited = process.WaitForExitAsync(CancellationToken.None)
            .ContinueWith(_ => { try { afterExit.CancelAfter(PipeGrace); } catch (ObjectDisposedException) { } }, TaskScheduler.Default);

        var stderrTail = new StringBuilder();
        var stderrPump = Task.Run(async () =>
        {
            var buffer = new char[4096];
            int n;
            try
            {
                while ((n = await process.StandardError.ReadAsync(buffer, afterExit.Token)) > 0)
                {
                    lock (stderrTail)
                    {
                        stderrTail.Append(buffer, 0, n);
                        if (stderrTail.Length > StderrTailChars * 2)
                            stderrTail.Remove(0, stderrTail.Length - StderrTailChars);
                    }
                }
            }
            catch (OperationCanceledException)
            {
                // Exited, and something it left behind still holds stderr open: what we have is the tail.
            }
        }, CancellationToken.None);

        var stdinPump = Task.Run(async () =>
        {
            var stdin = process.StandardInput.BaseStream;
            try
            {
                if (writeStdin is not null) await writeStdin(stdin, token);
            }
            catch (IOException)
            {
                // The child closed its stdin early (it has read all it wants, or it failed);
                // its exit code tells which, so the broken pipe itself is not the error.
            }
            finally
            {
                try { stdin.Close(); } catch (IOException) { }
            }
        }, CancellationToken.None);

        var stdoutPump = Task.Run(async () =>
        {
            Stream stdout = process.StandardOutput.BaseStream;
            if (checkExit)
            {
                // A consumer must never mistake the end of a failed child's output for the end of
                // a good one (a truncated dump uploaded as complete): at end of stream we wait for
                // the exit code and turn a failure into an exception inside the consumer's read.
                stdout = new ExitCheckingStream(stdout, async () =>
                {
                    // Bounded: a child that closed its stdout but lingers is killed on cancellation.
                    await process.WaitForExitAsync(CancellationToken.None);
                    await stderrPump;
                    if (process.ExitCode != 0)
                    {
                        string t;
                        lock (stderrTail) t = stderrTail.ToString();
                        throw new ProcessFailedException($"{name} exited with code {process.ExitCode}.{FormatTail(t)}", process.ExitCode, t);
                    }
                });
            }
            if (readStdout is not null) await readStdout(stdout, token);
            // Drain whatever the consumer left so the child never blocks on a full pipe.
            try
            {
                await stdout.CopyToAsync(Stream.Null, afterExit.Token);
            }
            catch (OperationCanceledException) when (afterExit.IsCancellationRequested)
            {
                // Exited, and something it left behind still holds stdout open.
            }
        }, CancellationToken.None);

        using var killOnCancel = token.Register(() =>
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        });

        Exception? pumpError = null;
        try
        {
            await Task.WhenAll(stdinPump, stdoutPump);
        }
        catch (Exception ex)
        {
            pumpError = ex;
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        }
        await process.WaitForExitAsync(CancellationToken.None);
        await exited;
        await stderrPump;
        sw.Stop();

        string tail;
        lock (stderrTail) tail = stderrTail.Length > StderrTailChars ? stderrTail.ToString(stderrTail.Length - StderrTailChars, StderrTailChars) : stderrTail.ToString();

        if (timeoutCts.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            throw new ProcessFailedException($"{name} did not finish within {spec.Timeout} and was killed.{FormatTail(tail)}", -1, tail);
        cancellationToken.ThrowIfCancellationRequested();
        if (pumpError is not null)
        {
            if (pumpError is OperationCanceledException) cancellationToken.ThrowIfCancellationRequested();
            throw pumpError;
        }
        return new ProcessResult(process.ExitCode, tail, sw.Elapsed) { ProcessId = process.Id };
    }

    /// <summary>How long our own reading of a child's stderr (and unconsumed stdout) goes on after it exited; see RunCoreAsync.</summary>
    internal static readonly TimeSpan PipeGrace = TimeSpan.FromSeconds(10);

    /// <summary>Runs and throws <see cref="ProcessFailedException"/> on a non-zero exit.</summary>
    public static async Task<ProcessResult> RunCheckedAsync(
        ProcessSpec spec,
        Func<Stream, CancellationToken, Task>? writeStdin = null,
        Func<Stream, CancellationToken, Task>? readStdout = null,
        CancellationToken cancellationToken = default)
    {
        var result = await RunCoreAsync(spec, writeStdin, readStdout, checkExit: true, cancellationToken);
        if (result.ExitCode != 0)
            throw new ProcessFailedException($"{spec.DisplayName} (pid {result.ProcessId}) exited with code {result.ExitCode}.{FormatTail(result.StandardError)}", result.ExitCode, result.StandardError);
        return result;
    }

    /// <summary>Runs to completion and returns stdout as text (for short outputs such as --version).</summary>
    public static async Task<string> CaptureAsync(ProcessSpec spec, CancellationToken cancellationToken = default)
    {
        var output = new MemoryStream();
        await RunCheckedAsync(spec, null, (s, ct) => s.CopyToAsync(output, ct), cancellationToken);
        return Encoding.UTF8.GetString(output.ToArray());
    }

    internal static string FormatTail(string stderr)
    {
        var trimmed = stderr.Trim();
        return trimmed.Length == 0 ? "" : " Its output: " + trimmed;
    }

    /// <summary>Defers end-of-stream until the child's exit code is known to be zero.</summary>
    private sealed class ExitCheckingStream(Stream inner, Func<Task> atEnd) : Stream
    {
        private bool _checked;

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            if (n == 0 && buffer.Length > 0 && !_checked)
            {
                _checked = true;
                await atEnd();
            }
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
