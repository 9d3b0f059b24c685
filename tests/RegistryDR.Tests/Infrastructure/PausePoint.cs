using System.Diagnostics;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// Runs a real <c>registry-dr</c> process until it reaches a test-only pause point
/// (<c>REGISTRYDR_TEST_PAUSE_AT</c>, src/RegistryDR/Restore/Internal/PausePoints.cs), then kills
/// it with SIGKILL there, so no clean-up code of it runs: what the next run makes of the node is
/// what a kill -9 or a power cut at that moment leaves.
/// </summary>
internal static class PausePoint
{
    /// <param name="psi">The command (output redirected); the pause variables are added to its environment.</param>
    /// <param name="signal">A file that does not exist yet: the process writes its pid there on reaching the point.</param>
    /// <param name="whilePaused">Looks at the node while the process waits at the point.</param>
    public static async Task KillAtAsync(ProcessStartInfo psi, string point, string signal, TimeSpan bound, Action? whilePaused = null)
    {
        psi.Environment["REGISTRYDR_TEST_PAUSE_AT"] = point;
        psi.Environment["REGISTRYDR_TEST_PAUSE_SIGNAL"] = signal;
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        var deadline = DateTime.UtcNow + bound;
        while (!File.Exists(signal) || new FileInfo(signal).Length == 0)
        {
            if (process.HasExited) Assert.Fail($"the process ended (exit {process.ExitCode}) before reaching '{point}': {await stderr}{await stdout}");
            if (DateTime.UtcNow > deadline) Assert.Fail($"the process never reached '{point}'");
            await Task.Delay(50);
        }
        Assert.AreEqual(process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText(signal), "the paused process is the one started");
        whilePaused?.Invoke();
        process.Kill(); // SIGKILL: no clean-up code runs
        await process.WaitForExitAsync().WaitAsync(bound);
    }
}
