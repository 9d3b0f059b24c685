using ICSharpCode.SharpZipLib.Tar;

namespace RegistryDR.Archive.Internal;

internal enum MemberKind
{
    File,
    Directory,
    Symlink,
    HardLink,
}

/// <summary>A member that passed every rule, with its place inside its root.</summary>
internal sealed record AdmittedMember(TarMember Member, MemberKind Kind, ArchiveRoot Root, string Relative)
{
    public uint UserId => (uint)Member.UserId;

    public uint GroupId => (uint)Member.GroupId;

    /// <summary>The parsed SCHILY.acl.access record, or null.</summary>
    public PosixAcl? AccessAcl { get; init; }

    /// <summary>The parsed SCHILY.acl.default record (directories only), or null.</summary>
    public PosixAcl? DefaultAcl { get; init; }

    /// <summary>A hard link's target: an earlier regular file of this archive, in its root.</summary>
    public (ArchiveRoot Root, string Relative)? LinkTarget { get; init; }
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
    /// <summary>
    /// Directories' ACLs are held until the end of extraction (a default ACL applied early would
    /// be inherited by everything extracted below it); this bounds what a hostile archive can
    /// make the extractor hold, in ACL entries of 8 bytes.
    /// </summary>
    private const long MaxHeldDirectoryAclEntries = 1 << 21;

    private readonly Dictionary<string, Seen> _seen = new(StringComparer.Ordinal);
    private readonly HashSet<string> _rootsWithEntry = new(StringComparer.Ordinal);
    private long _heldDirectoryAclEntries;

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
            throw new UnsafeArchiveException(name, $"a {Describe(kind)} entry must not carry data");
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
        if (kind == MemberKind.Symlink && SurrogateEscape.GetByteCount(member.LinkName) > EntryNames.MaxPathBytes)
        {
            throw new UnsafeArchiveException(name, $"its symbolic link target is longer than the {EntryNames.MaxPathBytes} bytes Linux allows");
        }

        var linkTarget = kind == MemberKind.HardLink ? CheckHardLink(member) : default((ArchiveRoot, string)?);
        var (accessAcl, defaultAcl) = CheckAttributes(member, kind);

        _seen[key] = kind switch
        {
            // A hard link is another name for a regular file; later links may name it too.
            MemberKind.File or MemberKind.HardLink => Seen.File,
            MemberKind.Symlink => Seen.Symlink,
            _ => Seen.Directory,
        };
        if (relative.Length == 0)
        {
            _rootsWithEntry.Add(root.EntryPrefix);
        }

        return new AdmittedMember(member, kind, root, relative) { AccessAcl = accessAcl, DefaultAcl = defaultAcl, LinkTarget = linkTarget };
    }

    /// <summary>
    /// A hard link may only name a regular file this archive has already extracted, in one of its
    /// roots, reached through real directories: never something outside the staging directories
    /// (link(2) would make a file there writable through the restored tree), a directory, a
    /// symbolic link, or an entry still to come.
    /// </summary>
    private (ArchiveRoot Root, string Relative) CheckHardLink(TarMember member)
    {
        var target = member.LinkName;
        if (EntryNames.TryResolve(target, isDirectory: false, _roots, out var targetRoot, out var targetRelative) is { } refusal)
        {
            throw new UnsafeArchiveException(member.Name, $"its hard link target '{target}' is refused: {refusal}");
        }

        var slash = -1;
        while ((slash = targetRelative.IndexOf('/', slash + 1)) >= 0)
        {
            if (_seen.GetValueOrDefault(Key(targetRoot!, targetRelative[..slash])) == Seen.Symlink)
            {
                throw new UnsafeArchiveException(member.Name, $"its hard link target '{target}' lies through the symbolic link '{targetRoot!.EntryPrefix}/{targetRelative[..slash]}'");
            }
        }

        if (!_seen.TryGetValue(Key(targetRoot!, targetRelative), out var seen))
        {
            throw new UnsafeArchiveException(member.Name, $"its hard link target '{target}' is not a file extracted before it (a hard link must follow the file it names)");
        }

        return seen switch
        {
            Seen.File => (targetRoot!, targetRelative),
            Seen.Symlink => throw new UnsafeArchiveException(member.Name, $"its hard link target '{target}' is a symbolic link, not a regular file"),
            _ => throw new UnsafeArchiveException(member.Name, $"its hard link target '{target}' is a directory"),
        };
    }

    /// <summary>
    /// Extended attributes and ACLs must be ones the kernel will accept on this kind of entry (see
    /// <see cref="ExtendedAttributes.Refusal"/>, <see cref="PosixAcl"/>); a hard link carries none
    /// (it shares its file's).
    /// </summary>
    private (PosixAcl? Access, PosixAcl? Default) CheckAttributes(TarMember member, MemberKind kind)
    {
        if (kind == MemberKind.HardLink && (member.ExtendedAttributes.Count > 0 || member.AccessAcl is not null || member.DefaultAcl is not null))
        {
            throw new UnsafeArchiveException(member.Name, "a hard link entry must not carry extended attributes or ACLs (it shares its file's)");
        }

        foreach (var (attribute, value) in member.ExtendedAttributes)
        {
            if (ExtendedAttributes.Refusal(attribute, value, kind == MemberKind.Symlink, kind == MemberKind.File) is { } refusal)
            {
                throw new UnsafeArchiveException(member.Name, $"its extended attribute '{attribute}' is refused: {refusal}");
            }
        }

        PosixAcl? access = null, defaults = null;
        if (member.AccessAcl is { } accessText)
        {
            if (kind == MemberKind.Symlink)
            {
                throw new UnsafeArchiveException(member.Name, "a symbolic link cannot have an ACL");
            }

            access = PosixAcl.Parse(accessText, out var error) ?? throw new UnsafeArchiveException(member.Name, $"its access ACL is refused: {error}");
        }

        if (member.DefaultAcl is { } defaultText)
        {
            if (kind != MemberKind.Directory)
            {
                throw new UnsafeArchiveException(member.Name, "only a directory can have a default ACL");
            }

            defaults = PosixAcl.Parse(defaultText, out var error) ?? throw new UnsafeArchiveException(member.Name, $"its default ACL is refused: {error}");
        }

        if (kind == MemberKind.Directory)
        {
            _heldDirectoryAclEntries += (access?.Entries.Count ?? 0) + (defaults?.Entries.Count ?? 0);
            if (_heldDirectoryAclEntries > MaxHeldDirectoryAclEntries)
            {
                throw new UnsafeArchiveException(member.Name, $"the directories' ACLs add up to more than {MaxHeldDirectoryAclEntries} entries");
            }
        }

        return (access, defaults);
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
        TarHeader.LF_LINK => MemberKind.HardLink,
        TarHeader.LF_CHR => throw new UnsafeArchiveException(member.Name, "character devices are not supported"),
        TarHeader.LF_BLK => throw new UnsafeArchiveException(member.Name, "block devices are not supported"),
        TarHeader.LF_FIFO => throw new UnsafeArchiveException(member.Name, "FIFOs are not supported"),
        _ => throw new UnsafeArchiveException(member.Name, $"entry type '{Printable(member.TypeFlag)}' is not supported; only regular files, directories, symbolic links and hard links are"),
    };

    private static string Describe(MemberKind kind) => kind switch
    {
        MemberKind.Directory => "directory",
        MemberKind.Symlink => "symbolic link",
        MemberKind.HardLink => "hard link",
        _ => "regular file",
    };

    private static string Printable(byte typeFlag) =>
        typeFlag is >= 0x21 and < 0x7f ? ((char)typeFlag).ToString() : $"0x{typeFlag:x2}";

    private static string Key(ArchiveRoot root, string relative) => root.EntryPrefix + "/" + relative;
}
