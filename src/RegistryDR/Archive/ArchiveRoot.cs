namespace RegistryDR.Archive;

/// <summary>
/// A directory to archive: its absolute path on the node and the prefix its entries carry in the
/// tar (the path without its leading '/', e.g. "var/local/dtr").
/// </summary>
public sealed record ArchiveRoot(string Path, string EntryPrefix)
{
    /// <summary>Builds the root for an absolute path; trailing slashes are ignored.</summary>
    /// <exception cref="ArgumentException">The path is relative, is '/', or has '.', '..' or empty segments.</exception>
    public static ArchiveRoot For(string absolutePath)
    {
        ArgumentNullException.ThrowIfNull(absolutePath);
        var trimmed = absolutePath.TrimEnd('/');
        var root = new ArchiveRoot(trimmed, trimmed.TrimStart('/'));
        root.EnsureValid();
        return root;
    }

    /// <summary>
    /// Both halves must be canonical because the reader compares entry names and symlink targets
    /// against them textually; a sloppy root would open a gap in those checks.
    /// </summary>
    internal void EnsureValid()
    {
        if (string.IsNullOrEmpty(Path) || Path[0] != '/' || Path.Length == 1)
        {
            throw new ArgumentException($"Archive root '{Path}' must be an absolute path below '/'.", nameof(Path));
        }

        if (Path.Contains('\0') || !Internal.EntryNames.IsCanonicalRelative(Path[1..]))
        {
            throw new ArgumentException($"Archive root '{Path}' must not contain empty, '.' or '..' segments.", nameof(Path));
        }

        if (!Internal.EntryNames.IsCanonicalRelative(EntryPrefix))
        {
            throw new ArgumentException($"Archive entry prefix '{EntryPrefix}' of root '{Path}' must be a relative path without empty, '.' or '..' segments.", nameof(EntryPrefix));
        }
    }
}
