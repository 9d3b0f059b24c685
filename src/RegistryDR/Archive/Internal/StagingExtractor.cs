namespace RegistryDR.Archive.Internal;

/// <summary>
/// Writes admitted members into the staging directories. The policy has already ruled out
/// anything unsafe on paper; this class re-checks the real filesystem before every write
/// (no symbolic link among the parents, never reuse or follow an existing final path), so a
/// policy gap or a concurrent change cannot turn into a write outside the staging directory.
/// </summary>
internal sealed class StagingExtractor
{
    private const int ChunkSize = 128 * 1024;

    // Directories stay owner-only while being filled so nobody else can open a file in them
    // before its final owner and mode are in place; their real modes are applied at the end.
    private const int WorkingDirectoryMode = 0b111_000_000;
    private const int WorkingFileMode = 0b110_000_000;
    private const int ImplicitDirectoryMode = 0b111_101_101;

    private readonly IReadOnlyDictionary<string, string> _targets;
    private readonly bool _restoreOwnership;
    private readonly byte[] _buffer = new byte[ChunkSize];

    // Value null: created only because a member needed it as a parent; it gets 0755 and no owner.
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

            if (Directory.EnumerateFileSystemEntries(target, "*", new EnumerationOptions { AttributesToSkip = 0 }).Any())
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

        _targets = resolved;
        _restoreOwnership = restoreOwnership;
    }

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
        }
    }

    /// <summary>
    /// Applies directory owners, modes and mtimes deepest first: a read-only directory can only be
    /// made so once it is full, and creating an entry inside a directory bumps its mtime.
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

            ApplyMetadata(admitted, path, setMode: true);
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

        _directories[path] = admitted;
    }

    private void WriteFile(AdmittedMember admitted, string path, TarEntryReader reader, CancellationToken cancellationToken)
    {
        using (var output = UnixFileSystem.CreateNewFile(path, WorkingFileMode))
        {
            int read;
            while ((read = reader.ReadData(_buffer)) > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                output.Write(_buffer, 0, read);
            }
        }

        ApplyMetadata(admitted, path, setMode: true);
    }

    private void CreateSymlink(AdmittedMember admitted, string path)
    {
        File.CreateSymbolicLink(path, admitted.Member.LinkName);

        // Linux has no mode for a link itself; owner and mtime are set on the link, not its target.
        ApplyMetadata(admitted, path, setMode: false);
    }

    private void ApplyMetadata(AdmittedMember admitted, string path, bool setMode)
    {
        // chown clears setuid/setgid, so ownership must come before the mode.
        if (_restoreOwnership)
        {
            UnixFileSystem.SetOwner(path, admitted.UserId, admitted.GroupId);
        }

        if (setMode)
        {
            UnixFileSystem.SetPermissions(path, admitted.Member.Permissions);
        }

        UnixFileSystem.SetModificationTime(path, admitted.Member.ModifiedSeconds, admitted.Member.ModifiedNanoseconds);
    }

    private static string Describe(UnixFileKind kind) => kind switch
    {
        UnixFileKind.Symlink => "symbolic link",
        UnixFileKind.Regular => "regular file",
        UnixFileKind.Directory => "directory",
        _ => "special file",
    };
}
