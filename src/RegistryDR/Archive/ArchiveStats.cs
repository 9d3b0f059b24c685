using System.Text;

namespace RegistryDR.Archive;

/// <summary>
/// Counts for one archive run. Directories include each root's own directory; Files counts each
/// regular file once, whatever its number of names (its other names are <see cref="HardLinks"/>);
/// Bytes is the content of regular files only.
/// </summary>
public sealed record ArchiveStats(long Files, long Directories, long Symlinks, long Bytes)
{
    /// <summary>
    /// Entries the writer left out on purpose (sockets, FIFOs, devices, links the restore would
    /// refuse); each kind is in <see cref="NotKept"/>. Always 0 when reading.
    /// </summary>
    public long Skipped { get; init; }

    /// <summary>Hard-link entries: further names of a regular file counted in <see cref="Files"/>.</summary>
    public long HardLinks { get; init; }

    /// <summary>
    /// What could not be kept, one entry per kind: when writing, what the archive does not hold
    /// (and the writer warned about, once per kind); when extracting, what the target could not
    /// take (xattrs its filesystem does not support, ACLs, attributes only root may set). Empty
    /// when everything was kept, and always empty when only validating.
    /// </summary>
    public IReadOnlyList<ArchiveOmission> NotKept { get; init; } = [];

    public bool Equals(ArchiveStats? other) =>
        other is not null
        && (Files, Directories, Symlinks, Bytes, Skipped, HardLinks) == (other.Files, other.Directories, other.Symlinks, other.Bytes, other.Skipped, other.HardLinks)
        && NotKept.SequenceEqual(other.NotKept);

    public override int GetHashCode() => HashCode.Combine(Files, Directories, Symlinks, Bytes, Skipped, HardLinks, NotKept.Count);

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Files = {Files}, Directories = {Directories}, Symlinks = {Symlinks}, Bytes = {Bytes}, Skipped = {Skipped}, HardLinks = {HardLinks}, NotKept = [{string.Join("; ", NotKept.Select(n => n.Describe()))}]");
        return true;
    }
}

/// <summary>
/// One kind of thing that could not be kept: a singular noun phrase ("socket", "user.*
/// extended attribute (the target filesystem does not support it)"), how many, and up to five
/// full paths, non-printable characters escaped (\xNN).
/// </summary>
public sealed record ArchiveOmission(string Kind, long Count, IReadOnlyList<string> Examples)
{
    /// <summary>The most example paths kept per kind.</summary>
    public const int MaxExamples = 5;

    /// <summary>"socket (2): '/a.sock', '/b.sock'", with ", …" when there are more than the examples.</summary>
    public string Describe() =>
        $"{Kind} ({Count}): {string.Join(", ", Examples.Select(e => $"'{e}'"))}{(Count > Examples.Count ? ", …" : "")}";

    public bool Equals(ArchiveOmission? other) =>
        other is not null && Kind == other.Kind && Count == other.Count && Examples.SequenceEqual(other.Examples);

    public override int GetHashCode() => HashCode.Combine(Kind, Count);
}
