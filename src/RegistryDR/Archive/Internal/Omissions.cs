namespace RegistryDR.Archive.Internal;

/// <summary>
/// Collects what could not be kept, by kind, so it is reported once per kind (a count and the
/// first few paths) rather than once per file: a tree with a thousand sockets gives one line.
/// </summary>
internal sealed class Omissions
{
    private readonly List<string> _order = [];
    private readonly Dictionary<string, (long Count, List<string> Examples)> _kinds = new(StringComparer.Ordinal);

    public long Total { get; private set; }

    /// <summary>Records one path of a kind; paths are made printable here.</summary>
    public void Add(string kind, string path)
    {
        if (!_kinds.TryGetValue(kind, out var entry))
        {
            entry = (0, []);
            _order.Add(kind);
        }

        if (entry.Examples.Count < ArchiveOmission.MaxExamples)
        {
            entry.Examples.Add(UnsafeArchiveException.Printable(path));
        }

        _kinds[kind] = (entry.Count + 1, entry.Examples);
        Total++;
    }

    /// <summary>Every kind in the order it was first seen.</summary>
    public IReadOnlyList<ArchiveOmission> ToList() =>
        _order.Select(kind => new ArchiveOmission(kind, _kinds[kind].Count, _kinds[kind].Examples.ToList())).ToList();
}
