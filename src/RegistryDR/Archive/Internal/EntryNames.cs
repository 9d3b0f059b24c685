namespace RegistryDR.Archive.Internal;

/// <summary>
/// Name and link-target rules shared by the writer (which must never produce an archive the
/// reader would refuse) and the reader (which must never trust one).
/// </summary>
internal static class EntryNames
{
    /// <summary>NAME_MAX: the longest file name component, in bytes.</summary>
    public const int MaxSegmentBytes = 255;

    /// <summary>PATH_MAX less its terminating NUL: the longest path, or symbolic link target, the kernel accepts.</summary>
    public const int MaxPathBytes = 4095;

    /// <summary>True for "a/b/c": non-empty, no leading or trailing '/', no empty, '.' or '..' segment, no NUL.</summary>
    public static bool IsCanonicalRelative(string path)
    {
        if (path.Length == 0 || path.Contains('\0'))
        {
            return false;
        }

        foreach (var segment in path.Split('/'))
        {
            if (segment is "" or "." or "..")
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Roots are matched against entry names textually, so two roots where one contains the other
    /// would make an entry belong to both; that is refused up front.
    /// </summary>
    public static void ValidateRoots(IReadOnlyList<ArchiveRoot> roots)
    {
        ArgumentNullException.ThrowIfNull(roots);
        if (roots.Count == 0)
        {
            throw new ArgumentException("At least one archive root is required.", nameof(roots));
        }

        foreach (var root in roots)
        {
            ArgumentNullException.ThrowIfNull(root, nameof(roots));
            root.EnsureValid();
        }

        for (var i = 0; i < roots.Count; i++)
        {
            for (var j = i + 1; j < roots.Count; j++)
            {
                if (Overlaps(roots[i].EntryPrefix, roots[j].EntryPrefix) || Overlaps(roots[i].Path, roots[j].Path))
                {
                    throw new ArgumentException($"Archive roots '{roots[i].Path}' and '{roots[j].Path}' overlap; each directory may be archived only once.", nameof(roots));
                }
            }
        }
    }

    /// <summary>
    /// Maps a raw entry name to its root and the path relative to that root ("" for the root
    /// directory itself), refusing anything that is not a plain path inside one root.
    /// </summary>
    public static (ArchiveRoot Root, string Relative) Resolve(string rawName, bool isDirectory, IReadOnlyList<ArchiveRoot> roots) =>
        TryResolve(rawName, isDirectory, roots, out var root, out var relative) is { } reason
            ? throw new UnsafeArchiveException(rawName, reason)
            : (root!, relative);

    /// <summary>Like <see cref="Resolve"/>, but returns why a name is refused (null when it is not).</summary>
    public static string? TryResolve(string rawName, bool isDirectory, IReadOnlyList<ArchiveRoot> roots, out ArchiveRoot? root, out string relative)
    {
        root = null;
        relative = string.Empty;
        if (rawName.Length == 0)
        {
            return "it has an empty name";
        }

        if (rawName.Contains('\0'))
        {
            return "its name contains a NUL character";
        }

        if (rawName[0] == '/')
        {
            return "its name is an absolute path";
        }

        var name = rawName;
        if (name.EndsWith('/'))
        {
            // Tar marks directories with a trailing slash; on anything else it would mean the
            // name resolves through the entry as if it were a directory.
            if (!isDirectory)
            {
                return "a name ending in '/' is only valid for a directory";
            }

            name = name.TrimEnd('/');
        }

        var segments = name.Split('/');
        if (segments.Contains(".."))
        {
            return "it would land outside its target directory";
        }

        if (segments.Any(s => s is "" or "."))
        {
            // Non-canonical spellings ("a//b", "a/./b") would slip past the duplicate check.
            return "its name has an empty or '.' segment";
        }

        // Linux refuses a name component over NAME_MAX (255 bytes) and a path of PATH_MAX (4096
        // bytes with its NUL) or more, so our writer, which stats every path it archives, can
        // never produce such an entry. Without this check validation accepted it and extraction
        // then failed with an IOException (ENAMETOOLONG), which the reader does not document
        // (found by the fuzz tests); it also bounds the memory each remembered name takes.
        // Counted in the name's own bytes, which are not always UTF-8.
        if (segments.Any(s => SurrogateEscape.GetByteCount(s) > MaxSegmentBytes) || SurrogateEscape.GetByteCount(name) + 1 > MaxPathBytes)
        {
            return $"its name is longer than Linux allows ({MaxSegmentBytes} bytes per segment, {MaxPathBytes} bytes in all)";
        }

        ArchiveRoot? best = null;
        foreach (var candidate in roots)
        {
            var matches = name == candidate.EntryPrefix || name.StartsWith(candidate.EntryPrefix + "/", StringComparison.Ordinal);
            if (matches && (best is null || candidate.EntryPrefix.Length > best.EntryPrefix.Length))
            {
                best = candidate;
            }
        }

        if (best is null)
        {
            var expected = string.Join("', '", roots.Select(r => r.EntryPrefix + "/"));
            return $"it lies outside every archived root (expected a name under '{expected}')";
        }

        root = best;
        relative = name.Length == best.EntryPrefix.Length ? string.Empty : name[(best.EntryPrefix.Length + 1)..];
        return null;
    }

    /// <summary>
    /// Returns why a symbolic link at <paramref name="relativeLinkPath"/> (relative to
    /// <paramref name="root"/>) pointing at <paramref name="target"/> would escape the root, or
    /// null when it stays inside.
    /// </summary>
    /// <remarks>
    /// A relative target may climb with leading ".." segments only. A ".." after a normal segment
    /// is refused because the segment before it might itself be a link (say "self -> ."), and then
    /// "self/.." climbs physically above where lexical resolution says it ends up. For the same
    /// reason an absolute target may not contain ".." at all. Leading ".." segments are safe: they
    /// climb through the link's own parents, which the reader guarantees are real directories.
    /// </remarks>
    public static string? SymlinkEscapeReason(ArchiveRoot root, string relativeLinkPath, string target)
    {
        if (target.Length == 0)
        {
            return "the symbolic link has an empty target";
        }

        if (target.Contains('\0'))
        {
            return "the symbolic link target contains a NUL character";
        }

        var segments = target.Split('/').Where(s => s is not ("" or ".")).ToList();
        if (target[0] == '/')
        {
            if (segments.Contains(".."))
            {
                return $"its absolute target '{target}' contains a '..' segment";
            }

            var normalized = "/" + string.Join('/', segments);
            var inside = normalized == root.Path || normalized.StartsWith(root.Path + "/", StringComparison.Ordinal);
            return inside ? null : $"its target '{target}' lies outside '{root.Path}'";
        }

        var depth = relativeLinkPath.Split('/').Length - 1;
        var climbing = true;
        foreach (var segment in segments)
        {
            if (segment != "..")
            {
                climbing = false;
                continue;
            }

            if (!climbing)
            {
                return $"its target '{target}' has a '..' after a normal segment, which could climb out through another link";
            }

            if (--depth < 0)
            {
                return $"its target '{target}' climbs out of '{root.Path}'";
            }
        }

        return null;
    }

    private static bool Overlaps(string a, string b) =>
        a == b
        || a.StartsWith(b + "/", StringComparison.Ordinal)
        || b.StartsWith(a + "/", StringComparison.Ordinal);
}
