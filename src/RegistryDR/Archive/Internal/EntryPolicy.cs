using ICSharpCode.SharpZipLib.Tar;

namespace RegistryDR.Archive.Internal;

internal enum MemberKind
{
    File,
    Directory,
    Symlink,
}

/// <summary>A member that passed every rule, with its place inside its root.</summary>
internal sealed record AdmittedMember(TarMember Member, MemberKind Kind, ArchiveRoot Root, string Relative)
{
    public uint UserId => (uint)Member.UserId;

    public uint GroupId => (uint)Member.GroupId;
}

/// <summary>
/// Every safety rule that can be decided from the archive alone. It remembers what earlier
/// members created, so it can refuse a member that would be written through a symbolic link or
/// below a file even before anything touches the disk; this is what makes validation without
/// extraction meaningful.
/// </summary>
internal sealed class EntryPolicy
{
    private enum Seen
    {
        File,
        Directory,
        ImplicitDirectory,
        Symlink,
    }

    private readonly IReadOnlyList<ArchiveRoot> _roots;
    private readonly long _maxEntrySize;

    // Keyed by root prefix + "/" + relative path; "" relative is the root itself.
    private readonly Dictionary<string, Seen> _seen = new(StringComparer.Ordinal);
    private readonly HashSet<string> _rootsWithEntry = new(StringComparer.Ordinal);

    public EntryPolicy(IReadOnlyList<ArchiveRoot> roots, long maxEntrySize)
    {
        _roots = roots;
        _maxEntrySize = maxEntrySize;
    }

    public AdmittedMember Admit(TarMember member)
    {
        var name = member.Name;
        var (root, relative) = EntryNames.Resolve(name, member.TypeFlag == TarHeader.LF_DIR, _roots);
        var kind = KindOf(member);

        if (member.Size < 0)
        {
            throw new UnsafeArchiveException(name, $"it declares a negative size ({member.Size} bytes)");
        }

        if (member.Size > _maxEntrySize)
        {
            throw new UnsafeArchiveException(name, $"it declares {member.Size} bytes, more than the per-entry limit of {_maxEntrySize} bytes");
        }

        if (kind != MemberKind.File && member.Size != 0)
        {
            throw new UnsafeArchiveException(name, $"a {(kind == MemberKind.Directory ? "directory" : "symbolic link")} entry must not carry data");
        }

        if (member.UserId is < 0 or > uint.MaxValue || member.GroupId is < 0 or > uint.MaxValue)
        {
            throw new UnsafeArchiveException(name, $"its owner {member.UserId}:{member.GroupId} is not a valid uid:gid");
        }

        if (relative.Length == 0 && kind != MemberKind.Directory)
        {
            throw new UnsafeArchiveException(name, $"the root '{root.EntryPrefix}' itself must be a directory");
        }

        var key = Key(root, relative);
        if (_seen.TryGetValue(key, out var earlier))
        {
            if (earlier != Seen.ImplicitDirectory)
            {
                throw new UnsafeArchiveException(name, "it appears more than once in the archive");
            }

            if (kind != MemberKind.Directory)
            {
                throw new UnsafeArchiveException(name, "it would replace a directory that earlier entries were extracted into");
            }
        }

        CheckParents(name, root, relative);

        if (kind == MemberKind.Symlink && EntryNames.SymlinkEscapeReason(root, relative, member.LinkName) is { } reason)
        {
            throw new UnsafeArchiveException(name, reason);
        }

        // symlink(2) refuses a target of PATH_MAX bytes or more, and readlink never returns one,
        // so our writer cannot produce it; accepted here, it passed validation and then failed
        // extraction with an undocumented IOException (ENAMETOOLONG; found by the fuzz tests).
        if (kind == MemberKind.Symlink && System.Text.Encoding.UTF8.GetByteCount(member.LinkName) > EntryNames.MaxPathBytes)
        {
            throw new UnsafeArchiveException(name, $"its symbolic link target is longer than the {EntryNames.MaxPathBytes} bytes Linux allows");
        }

        _seen[key] = kind switch
        {
            MemberKind.File => Seen.File,
            MemberKind.Symlink => Seen.Symlink,
            _ => Seen.Directory,
        };
        if (relative.Length == 0)
        {
            _rootsWithEntry.Add(root.EntryPrefix);
        }

        return new AdmittedMember(member, kind, root, relative);
    }

    /// <summary>
    /// An archive missing a root entirely would, once swapped into place, wipe that directory;
    /// treat it as damaged rather than as an empty directory.
    /// </summary>
    public void EnsureEveryRootPresent()
    {
        foreach (var root in _roots)
        {
            if (!_rootsWithEntry.Contains(root.EntryPrefix))
            {
                throw new InvalidDataException($"The archive holds no entry for root '{root.Path}' (expected a directory entry '{root.EntryPrefix}/').");
            }
        }
    }

    private void CheckParents(string name, ArchiveRoot root, string relative)
    {
        if (relative.Length == 0)
        {
            return;
        }

        var slash = -1;
        while ((slash = relative.IndexOf('/', slash + 1)) >= 0)
        {
            var parent = relative[..slash];
            var key = Key(root, parent);
            if (!_seen.TryGetValue(key, out var parentKind))
            {
                _seen[key] = Seen.ImplicitDirectory;
                continue;
            }

            switch (parentKind)
            {
                case Seen.Symlink:
                    throw new UnsafeArchiveException(name, $"it would be written through the symbolic link '{root.EntryPrefix}/{parent}'");
                case Seen.File:
                    throw new UnsafeArchiveException(name, $"its parent '{root.EntryPrefix}/{parent}' is a regular file, not a directory");
            }
        }
    }

    private static MemberKind KindOf(TarMember member) => member.TypeFlag switch
    {
        TarHeader.LF_NORMAL or TarHeader.LF_OLDNORM => MemberKind.File,
        TarHeader.LF_DIR => MemberKind.Directory,
        TarHeader.LF_SYMLINK => MemberKind.Symlink,
        TarHeader.LF_LINK => throw new UnsafeArchiveException(member.Name, $"hard links are not supported (it links to '{member.LinkName}')"),
        TarHeader.LF_CHR => throw new UnsafeArchiveException(member.Name, "character devices are not supported"),
        TarHeader.LF_BLK => throw new UnsafeArchiveException(member.Name, "block devices are not supported"),
        TarHeader.LF_FIFO => throw new UnsafeArchiveException(member.Name, "FIFOs are not supported"),
        _ => throw new UnsafeArchiveException(member.Name, $"entry type '{Printable(member.TypeFlag)}' is not supported; only regular files, directories and symbolic links are"),
    };

    private static string Printable(byte typeFlag) =>
        typeFlag is >= 0x21 and < 0x7f ? ((char)typeFlag).ToString() : $"0x{typeFlag:x2}";

    private static string Key(ArchiveRoot root, string relative) => root.EntryPrefix + "/" + relative;
}
