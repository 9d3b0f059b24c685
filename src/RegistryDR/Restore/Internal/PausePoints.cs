namespace RegistryDR.Restore.Internal;

/// <summary>
/// TEST-ONLY: lets a test stop a real <c>registry-dr restore</c> at a named point, so that it can
/// kill it (SIGKILL) exactly there and check what the next run makes of the node. With
/// <c>REGISTRYDR_TEST_PAUSE_AT</c> set to a point's name, the process writes its pid to the file
/// named by <c>REGISTRYDR_TEST_PAUSE_SIGNAL</c> on reaching it and then waits forever. Without the
/// variable (always, outside tests) a point costs one environment lookup. docs/testing.md lists
/// the points; operators have no use for them.
/// </summary>
internal static class PausePoints
{
    public const string Download = "download";
    public const string Extract = "extract";
    /// <summary>A point-in-time restore's rehearsal server has started replaying on the staged data directory.</summary>
    public const string Replay = "replay";
    public const string ScratchLoad = "scratch-load";
    public const string AfterDatabaseSwap = "after-db-swap";
    public const string AfterDirectorySwap = "after-dir-swap";
    /// <summary>After the start commands (PostgreSQL's, for a point-in-time restore, then the registry's), before health is known.</summary>
    public const string AfterStart = "after-start";
    public const string BeforeCleanup = "before-cleanup";

    public static void Reached(string point)
    {
        if (Environment.GetEnvironmentVariable("REGISTRYDR_TEST_PAUSE_AT") != point) return;
        if (Environment.GetEnvironmentVariable("REGISTRYDR_TEST_PAUSE_SIGNAL") is { Length: > 0 } signal)
            File.WriteAllText(signal, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Thread.Sleep(Timeout.Infinite);
    }
}
