using Microsoft.Win32.SafeHandles;

namespace RegistryDR.Archive.Internal;

/// <summary>
/// Writes admitted members into the staging directories. The policy has already ruled out
/// anything unsafe on paper; this class re-checks the real filesystem before every write
/// (no symbolic link among the parents, never reuse or follow an existing final path, a hard
/// link only to a regular file it extracted), so a policy gap or a concurrent change cannot
/// turn into a write outside the staging directory.
/// </summary>
/// <remarks>
/// Metadata goes on in the order the kernel needs: content, owner (chown clears setuid/setgid
/// and security.capability), mode, extended attributes, ACL, mtime last. Directories get their
/// owner, mode, ACLs and mtime only at the end, deepest first: a default ACL applied early
/// would be inherited by what is extracted below it, a read-only directory could not be filled,
/// and every entry created bumps its directory's mtime.
/// What the target cannot take (an xattr namespace its filesystem lacks, attributes only root
/// may set, ACLs on a filesystem without them) is counted per kind in <see cref="NotKept"/>; an
/// ACL the filesystem supports but refuses stops the extraction (see <see cref="ApplyAcl"/>).
/// </remarks>
internal sealed class StagingExtractor
{
    private const int ChunkSize = 128 * 1024;

    /// <summary>Restored files leave each all-zero block of this size unallocated (a hole).</summary>
    private const int SparseBlock = 4096;

    // Directories stay owner-only while being filled so nobody else can open a file in them
    // before its final owner and mode are in place; their real modes are applied at the end.
    private const int WorkingDirectoryMode = 0b111_000_000;
    private const int WorkingFileMode = 0b110_000_000;
    private const int ImplicitDirectoryMode = 0b111_101_101;

    private readonly IReadOnlyDictionary<string, string> _targets;
    private readonly bool _restoreOwnership;
    private readonly bool _privileged = Environment.IsPrivilegedProcess;
    private readonly byte[] _buffer = new byte[ChunkSize];
    private readonly Omissions _omissions = new();

    // Value null: created only because a member needed it as a parent; it gets 0755 and no owner.
    // Members are kept without their extended attributes (applied at creation) to bound memory.
    private readonly Dictionary<string, AdmittedMember?> _directories = new(StringComparer.Ordinal);

    public StagingExtractor(IReadOnlyList<ArchiveRoot> roots, IReadOnlyDictionary<string, string> targets, bool restoreOwnership)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var resolved = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var root in roots)
        {
            if (!targets.TryGetValue(root.EntryPrefix, out var target) || string.IsNullOrEmpty(target))
            {
                throw new ArgumentException($"No staging directory was given for archive root '{root.EntryPrefix}'.", nameof(targets));
            }

            target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(target));
            var status = UnixFileSystem.TryGetStatus(target);
            if (status is not { Kind: UnixFileKind.Directory })
            {
                throw new ArgumentException($"Staging directory '{target}' for root '{root.EntryPrefix}' must be an existing directory (not a symbolic link).", nameof(targets));
            }

            if (UnixFileSystem.ReadDirectory(target).Count > 0)
            {
                throw new ArgumentException($"Staging directory '{target}' for root '{root.EntryPrefix}' must be empty.", nameof(targets));
            }

            // Two roots sharing (or nesting) a staging directory would mix their trees unnoticed.
            var clash = resolved.Values.FirstOrDefault(other =>
                other == target || target.StartsWith(other + "/", StringComparison.Ordinal) || other.StartsWith(target + "/", StringComparison.Ordinal));
            if (clash is not null)
            {
                throw new ArgumentException($"Staging directories '{clash}' and '{target}' overlap; each root needs its own.", nameof(targets));
            }

            resolved[root.EntryPrefix] = target;
        }

        // A staging directory created below a directory with a default ACL inherited it, and
        // would pass it on to everything extracted; the root's own ACLs come from the archive.
        foreach (var target in resolved.Values)
        {
            _ = UnixFileSystem.RemoveExtendedAttribute(target, ExtendedAttributes.DefaultAcl);
            _ = UnixFileSystem.RemoveExtendedAttribute(target, ExtendedAttributes.AccessAcl);
        }

        _targets = resolved;
        _restoreOwnership = restoreOwnership;
    }

    /// <summary>What the target could not take, one entry per kind (see <see cref="ArchiveStats.NotKept"/>).</summary>
    public IReadOnlyList<ArchiveOmission> NotKept => _omissions.ToList();

    public void Extract(AdmittedMember admitted, TarEntryReader reader, CancellationToken cancellationToken)
    {
        var target = _targets[admitted.Root.EntryPrefix];
        var path = admitted.Relative.Length == 0 ? target : Path.Join(target, admitted.Relative);
        EnsureRealParents(admitted, target);

        switch (admitted.Kind)
        {
            case MemberKind.Directory:
                CreateDirectory(admitted, path);
                break;
            case MemberKind.File:
                WriteFile(admitted, path, reader, cancellationToken);
                break;
            case MemberKind.Symlink:
                CreateSymlink(admitted, path);
                break;
            case MemberKind.HardLink:
                CreateHardLink(admitted, path, cancellationToken);
                break;
        }
    }

    /// <summary>
    /// Applies directory owners, modes, ACLs and mtimes deepest first: a read-only directory can
    /// only be made so once it is full, a default ACL must not be inherited by the extracted
    /// entries, and creating an entry inside a directory bumps its mtime.
    /// </summary>
    public void Finish()
    {
        foreach (var (path, admitted) in _directories.OrderByDescending(d => d.Key.Count(c => c == '/')).ThenBy(d => d.Key, StringComparer.Ordinal))
        {
            if (admitted is null)
            {
                UnixFileSystem.SetPermissions(path, ImplicitDirectoryMode);
                continue;
            }

            SetOwnerAndMode(admitted, path);
            ApplyAcl(admitted, path, admitted.AccessAcl, access: true);
            ApplyAcl(admitted, path, admitted.DefaultAcl, access: false);
            UnixFileSystem.SetModificationTime(path, admitted.Member.ModifiedSeconds, admitted.Member.ModifiedNanoseconds);
        }
    }

    private void EnsureRealParents(AdmittedMember admitted, string target)
    {
        var relative = admitted.Relative;
        var slash = -1;
        while ((slash = relative.IndexOf('/', slash + 1)) >= 0)
        {
            var parent = Path.Join(target, relative[..slash]);
            var status = UnixFileSystem.TryGetStatus(parent);
            if (status is null)
            {
                UnixFileSystem.CreateDirectory(parent, WorkingDirectoryMode);
                _directories.TryAdd(parent, null);
                continue;
            }

            if (status.Value.Kind != UnixFileKind.Directory)
            {
                throw new UnsafeArchiveException(admitted.Member.Name, $"'{parent}' on the way to it is a {Describe(status.Value.Kind)}, not a real directory");
            }
        }
    }

    private void CreateDirectory(AdmittedMember admitted, string path)
    {
        var status = UnixFileSystem.TryGetStatus(path);
        if (status is null)
        {
            UnixFileSystem.CreateDirectory(path, WorkingDirectoryMode);
        }
        else if (status.Value.Kind != UnixFileKind.Directory)
        {
            throw new UnsafeArchiveException(admitted.Member.Name, $"'{path}' already exists as a {Describe(status.Value.Kind)}");
        }

        // Attributes other than ACLs are not inherited, so they can go on now.
        SetExtendedAttributes(admitted, path);
        _directories[path] = admitted with { Member = admitted.Member with { ExtendedAttributes = [] } };
    }

    private void WriteFile(AdmittedMember admitted, string path, TarEntryReader reader, CancellationToken cancellationToken)
    {
        using (var output = UnixFileSystem.CreateNewFile(path, WorkingFileMode))
        {
            long offset = 0;
            int read;
            while ((read = reader.ReadData(_buffer)) > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                WriteSkippingZeroBlocks(output, _buffer.AsSpan(0, read), offset);
                offset += read;
            }

            // Trailing zero blocks were skipped too: the length makes them holes.
            if (offset > 0)
            {
                RandomAccess.SetLength(output, offset);
            }
        }

        ApplyFileMetadata(admitted, path);
    }

    /// <summary>
    /// Sparse files are archived whole (their holes read as zeros, which gzip shrinks to almost
    /// nothing); here every all-zero block of <see cref="SparseBlock"/> bytes is left unwritten, so
    /// a sparse file comes back sparse instead of filling the disk. The content is identical.
    /// </summary>
    private static void WriteSkippingZeroBlocks(SafeFileHandle output, ReadOnlySpan<byte> data, long offset)
    {
        var start = 0;
        while (start < data.Length)
        {
            var end = start;
            while (end < data.Length && data[end..Math.Min(end + SparseBlock, data.Length)].ContainsAnyExcept((byte)0))
            {
                end = Math.Min(end + SparseBlock, data.Length);
            }

            if (end > start)
            {
                RandomAccess.Write(output, data[start..end], offset + start);
                start = end;
            }
            else
            {
                start = Math.Min(start + SparseBlock, data.Length);
            }
        }
    }

    private void CreateSymlink(AdmittedMember admitted, string path)
    {
        UnixFileSystem.CreateSymbolicLink(path, admitted.Member.LinkName);

        // Linux has no mode for a link itself; owner, attributes and mtime are set on the link, not its target.
        if (_restoreOwnership)
        {
            UnixFileSystem.SetOwner(path, admitted.UserId, admitted.GroupId);
        }

        SetExtendedAttributes(admitted, path);
        UnixFileSystem.SetModificationTime(path, admitted.Member.ModifiedSeconds, admitted.Member.ModifiedNanoseconds);
    }

    /// <summary>
    /// A second name for a file extracted earlier: link(2) to it, after checking on disk that it
    /// is still the regular file this extraction wrote. Two config directories restored onto
    /// different filesystems cannot share an inode; the name then gets a copy, and is reported.
    /// </summary>
    private void CreateHardLink(AdmittedMember admitted, string path, CancellationToken cancellationToken)
    {
        var (root, relative) = admitted.LinkTarget!.Value;
        var targetRoot = _targets[root.EntryPrefix];
        var existing = Path.Join(targetRoot, relative);
        EnsureRealParents(admitted with { Root = root, Relative = relative }, targetRoot);
        if (UnixFileSystem.TryGetStatus(existing) is not { Kind: UnixFileKind.Regular })
        {
            throw new UnsafeArchiveException(admitted.Member.Name, $"its hard link target '{existing}' is not a regular file extracted before it");
        }

        if (UnixFileSystem.TryCreateHardLink(existing, path))
        {
            return;
        }

        CopyWithMetadata(existing, path, cancellationToken);
        _omissions.Add("hard link between config directories on different filesystems (restored as a separate copy)", path);
    }

    private void CopyWithMetadata(string existing, string path, CancellationToken cancellationToken)
    {
        var status = UnixFileSystem.GetStatus(existing);
        using (var input = UnixFileSystem.OpenRead(existing))
        using (var output = UnixFileSystem.CreateNewFile(path, WorkingFileMode))
        {
            long offset = 0;
            int read;
            while ((read = RandomAccess.Read(input, _buffer, offset)) > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                WriteSkippingZeroBlocks(output, _buffer.AsSpan(0, read), offset);
                offset += read;
            }

            if (offset > 0)
            {
                RandomAccess.SetLength(output, offset);
            }
        }

        if (_restoreOwnership)
        {
            UnixFileSystem.SetOwner(path, status.UserId, status.GroupId);
        }

        UnixFileSystem.SetPermissions(path, status.Permissions);
        foreach (var name in UnixFileSystem.ListExtendedAttributes(existing))
        {
            if (UnixFileSystem.GetExtendedAttribute(existing, name) is { } value)
            {
                SetExtendedAttribute(name, value, path);
            }
        }

        UnixFileSystem.SetModificationTime(path, status.ModifiedSeconds, status.ModifiedNanoseconds);
    }

    private void ApplyFileMetadata(AdmittedMember admitted, string path)
    {
        SetOwnerAndMode(admitted, path);
        SetExtendedAttributes(admitted, path);
        ApplyAcl(admitted, path, admitted.AccessAcl, access: true);
        UnixFileSystem.SetModificationTime(path, admitted.Member.ModifiedSeconds, admitted.Member.ModifiedNanoseconds);
    }

    private void SetOwnerAndMode(AdmittedMember admitted, string path)
    {
        // chown clears setuid/setgid (and a file's capability), so ownership must come first.
        if (_restoreOwnership)
        {
            UnixFileSystem.SetOwner(path, admitted.UserId, admitted.GroupId);
        }

        UnixFileSystem.SetPermissions(path, admitted.Member.Permissions);
    }

    private void SetExtendedAttributes(AdmittedMember admitted, string path)
    {
        foreach (var (name, value) in admitted.Member.ExtendedAttributes)
        {
            SetExtendedAttribute(name, value, path);
        }
    }

    private void SetExtendedAttribute(string name, byte[] value, string path)
    {
        var errno = UnixFileSystem.SetExtendedAttribute(path, name, value);
        if (errno == 0)
        {
            return;
        }

        var omission = ExtendedAttributes.OmissionFor(name, errno, _privileged)
            ?? throw new IOException($"Cannot set the extended attribute '{UnsafeArchiveException.Printable(name)}' of '{UnsafeArchiveException.Printable(path)}': {UnixFileSystem.Describe(errno)}.");
        _omissions.Add(omission, path);
    }

    /// <summary>
    /// Sets an access or default ACL. On a filesystem without ACL support (EOPNOTSUPP) the ACL is
    /// reported as not kept and, for an access ACL, the mode's group bits are narrowed to what
    /// the owning group was effectively granted (its entry limited by the mask), so losing the
    /// ACL never gives the group more than it had; named users and groups lose their extra access.
    /// Any other refusal stops the restore: on a filesystem that supports ACLs, a refused ACL
    /// would leave the file with different permissions than it had, silently.
    /// </summary>
    private void ApplyAcl(AdmittedMember admitted, string path, PosixAcl? acl, bool access)
    {
        if (acl is null)
        {
            return;
        }

        var name = access ? ExtendedAttributes.AccessAcl : ExtendedAttributes.DefaultAcl;
        var errno = UnixFileSystem.SetExtendedAttribute(path, name, acl.ToXattr());
        if (errno == 0)
        {
            return;
        }

        if (errno != UnixFileSystem.Eopnotsupp)
        {
            throw new IOException($"Cannot set the {(access ? "access" : "default")} ACL of '{UnsafeArchiveException.Printable(path)}': {UnixFileSystem.Describe(errno)}. The filesystem supports ACLs, so the restore stops rather than leave different permissions in place.");
        }

        if (access)
        {
            var mode = admitted.Member.Permissions;
            UnixFileSystem.SetPermissions(path, (mode & ~0b000_111_000) | ((acl.EffectiveGroupPermissions & (mode >> 3) & 0b111) << 3));
            _omissions.Add("POSIX access ACL (the target filesystem does not support ACLs; the owning group keeps only its effective permissions)", path);
        }
        else
        {
            _omissions.Add("POSIX default ACL (the target filesystem does not support ACLs)", path);
        }
    }

    private static string Describe(UnixFileKind kind) => kind switch
    {
        UnixFileKind.Symlink => "symbolic link",
        UnixFileKind.Regular => "regular file",
        UnixFileKind.Directory => "directory",
        _ => "special file",
    };
}
