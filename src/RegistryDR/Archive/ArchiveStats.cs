namespace RegistryDR.Archive;

/// <summary>
/// Counts for one archive run. Directories include each root's own directory; Bytes is the
/// content of regular files only.
/// </summary>
public sealed record ArchiveStats(long Files, long Directories, long Symlinks, long Bytes)
{
    /// <summary>
    /// Entries the writer left out on purpose (sockets, FIFOs, devices, links the restore would
    /// refuse); each one was also reported through the warning callback. Always 0 when reading.
    /// </summary>
    public long Skipped { get; init; }
}
