namespace RegistryDR.Progress;

/// <summary>
/// Many transfers running at once, reported as one cumulative artifact (the split tables' block
/// ranges are shown as "table data", not as hundreds of artifacts).
/// </summary>
internal sealed class CombinedTransfer(IOperationProgress progress, string name)
{
    private long _total;

    /// <summary>A progress callback for one of the transfers; it reports its own cumulative bytes.</summary>
    public Action<long> Part()
    {
        long reported = 0;
        return bytes =>
        {
            progress.Transferred(name, Interlocked.Add(ref _total, bytes - reported));
            reported = bytes;
        };
    }
}
