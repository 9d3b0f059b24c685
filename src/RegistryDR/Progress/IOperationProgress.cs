namespace RegistryDR.Progress;

/// <summary>
/// How long operations (backup, verify, restore) report what they are doing. The libraries only
/// report; the CLI decides whether to draw it on a terminal or stay quiet.
/// </summary>
public interface IOperationProgress
{
    /// <summary>A new phase began, e.g. "dump database" or "swap directories".</summary>
    void Phase(string phase);

    /// <summary>Bytes moved so far for one artifact (cumulative).</summary>
    void Transferred(string artifact, long bytes);

    /// <summary>
    /// The bytes the whole operation will move, when known beforehand (verify, restore and drills
    /// know it from the manifest; a backup does not), so that a display can show a total and an ETA.
    /// </summary>
    void Expect(long totalBytes) { }
}

public sealed class NullProgress : IOperationProgress
{
    public static readonly NullProgress Instance = new();
    public void Phase(string phase) { }
    public void Transferred(string artifact, long bytes) { }
}
