using System.Text;
using ICSharpCode.SharpZipLib.GZip;
using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Archive;

/// <summary>
/// Writes config directories as one tar.gz: ustar headers (PAX where a value does not fit) with
/// full permission bits including setuid/setgid/sticky, numeric uid/gid plus informational
/// user/group names, mtimes to the nanosecond, names and symbolic link targets as the bytes they
/// are, hard links as links, POSIX ACLs and extended attributes (GNU tar's SCHILY records).
/// Entries are written depth first, each directory before its contents, siblings in byte order,
/// so the same tree always gives the same tar stream.
/// </summary>
internal static class ConfigArchiveWriter
{
    private const int ChunkSize = 128 * 1024;
    private const int GzipBufferSize = 64 * 1024;

    /// <summary>
    /// Room left for an entry's attributes in the 1 MiB of extended headers the reader accepts per
    /// entry, after its longest possible path, link target and account names.
    /// </summary>
    private const int MaxAttributeBytes = TarEntryReader.MaxMetadataBytes - (64 * 1024);

    /// <summary>
    /// Streams a tar.gz of every root to <paramref name="output"/>, which may be non-seekable and
    /// is left open. File contents are streamed in chunks, never held whole in memory.
    /// </summary>
    /// <param name="excludeGlobs">Matched against each path relative to its root with '/' separators:
    /// '*' and '?' within one segment, '**' across segments, a pattern without '/' matches the
    /// basename at any depth. An excluded directory is skipped with everything in it.</param>
    /// <param name="warn">Told, once per kind at the end, what the archive does not hold (sockets,
    /// FIFOs, devices, links that point outside their root, further names of a hard-linked file
    /// that lie outside the roots, attributes a restore would refuse), and about files that
    /// changed while being read. The same kinds are in <see cref="ArchiveStats.NotKept"/>.</param>
    /// <exception cref="DirectoryNotFoundException">A root does not exist or is not a directory; nothing has been written then.</exception>
    /// <remarks>
    /// If an exception escapes after writing started, the output holds an unfinished archive with
    /// no gzip trailer, which the reader rejects; it is never silently complete-looking.
    /// </remarks>
    public static Task<ArchiveStats> WriteAsync(IReadOnlyList<ArchiveRoot> roots, IReadOnlyList<string> excludeGlobs, Stream output, Action<string>? warn, CancellationToken cancellationToken)
    {
        EntryNames.ValidateRoots(roots);
        ArgumentNullException.ThrowIfNull(excludeGlobs);
        ArgumentNullException.ThrowIfNull(output);
        if (!output.CanWrite)
        {
            throw new ArgumentException("The output stream is not writable.", nameof(output));
        }

        // SharpZipLib's streams are synchronous; the work runs on the thread pool so callers keep
        // an async shape without blocking their own thread.
        return Task.Run(() => new Session(excludeGlobs, output, warn, cancellationToken).Run(roots), cancellationToken);
    }

    private sealed class Session
    {
        private const string HardLinkOutside = "file with hard links outside the config directories (restored with fewer links)";

        private readonly ExcludeMatcher _excludes;
        private readonly Stream _output;
        private readonly Action<string>? _warn;
        private readonly CancellationToken _cancellationToken;
        private readonly AccountNames _accounts = AccountNames.Load();
        private readonly byte[] _buffer = new byte[ChunkSize];
        private readonly Omissions _omissions = new();

        // Regular files with more than one name, by (device, inode): the first name's entry, and
        // how many of the file's names the walk has met.
        private readonly Dictionary<(ulong Device, ulong Inode), (string EntryName, string Path, uint LinkCount, uint Met)> _linked = [];
        private TarEntryWriter _writer = null!;
        private long _files, _directories, _symlinks, _bytes, _hardLinks, _skipped;

        public Session(IReadOnlyList<string> excludeGlobs, Stream output, Action<string>? warn, CancellationToken cancellationToken)
        {
            _excludes = new ExcludeMatcher(excludeGlobs);
            _output = output;
            _warn = warn;
            _cancellationToken = cancellationToken;
        }

        public ArchiveStats Run(IReadOnlyList<ArchiveRoot> roots)
        {
            // Check every root before the first byte goes out, so a typo in the second root does
            // not leave half an upload behind.
            var rootStatus = new UnixFileStatus[roots.Count];
            for (var i = 0; i < roots.Count; i++)
            {
                // The root itself may be a link to the real directory (e.g. onto another volume);
                // what is archived is the directory it leads to.
                var status = UnixFileSystem.TryGetStatus(roots[i].Path, followSymlinks: true);
                if (status is not { Kind: UnixFileKind.Directory })
                {
                    throw new DirectoryNotFoundException(status is null
                        ? $"Archive root '{roots[i].Path}' does not exist."
                        : $"Archive root '{roots[i].Path}' is not a directory.");
                }

                rootStatus[i] = status.Value;
            }

            var gzip = new GZipOutputStream(_output, GzipBufferSize) { IsStreamOwner = false };
            var tar = new TarOutputStream(gzip, Encoding.UTF8) { IsStreamOwner = true };
            _writer = new TarEntryWriter(tar);

            for (var i = 0; i < roots.Count; i++)
            {
                // "/." makes the attribute calls act on the directory a linked root leads to.
                PutDirectory(roots[i].EntryPrefix, roots[i].Path + "/.", rootStatus[i]);
                WalkDirectory(roots[i], roots[i].Path, string.Empty);
            }

            foreach (var (_, path, linkCount, met) in _linked.Values)
            {
                if (met < linkCount)
                {
                    _omissions.Add(HardLinkOutside, path);
                }
            }

            // Only a complete run finishes the archive: disposing writes the end-of-archive blocks
            // and the gzip trailer. On failure the streams are abandoned on purpose (they hold no
            // OS resources), leaving output that fails to decompress rather than a truncated
            // archive that looks whole.
            tar.Dispose();
            _output.Flush();

            var notKept = _omissions.ToList();
            foreach (var omission in notKept)
            {
                _warn?.Invoke("Not in the archive, " + omission.Describe());
            }

            return new ArchiveStats(_files, _directories, _symlinks, _bytes)
            {
                Skipped = _skipped,
                HardLinks = _hardLinks,
                NotKept = notKept,
            };
        }

        private void WalkDirectory(ArchiveRoot root, string directory, string relativeDirectory)
        {
            foreach (var name in UnixFileSystem.ReadDirectory(directory))
            {
                _cancellationToken.ThrowIfCancellationRequested();
                var path = directory + "/" + name;
                var relative = relativeDirectory.Length == 0 ? name : relativeDirectory + "/" + name;
                var entryName = root.EntryPrefix + "/" + relative;

                var found = UnixFileSystem.TryGetStatus(path);
                if (found is not { } status)
                {
                    Skip("entry that vanished while it was being archived", path);
                    continue;
                }

                if (_excludes.IsExcluded(relative, status.Kind == UnixFileKind.Directory))
                {
                    continue;
                }

                switch (status.Kind)
                {
                    case UnixFileKind.Directory:
                        PutDirectory(entryName, path, status);
                        WalkDirectory(root, path, relative);
                        break;
                    case UnixFileKind.Regular when status.LinkCount > 1:
                        PutLinkedFile(path, entryName, status);
                        break;
                    case UnixFileKind.Regular:
                        PutFile(path, entryName, status);
                        break;
                    case UnixFileKind.Symlink:
                        PutSymlink(root, path, relative, entryName, status);
                        break;
                    default:
                        Skip(Describe(status.Kind), path);
                        break;
                }
            }
        }

        private void PutDirectory(string entryName, string path, in UnixFileStatus status)
        {
            var attributes = ReadAttributes(path, UnixFileKind.Directory);
            _writer.PutEntry(entryName + "/", TarHeader.LF_DIR, status, _accounts.UserName(status.UserId), _accounts.GroupName(status.GroupId), size: 0, attributes: attributes);
            _directories++;
        }

        /// <summary>
        /// The first name of a hard-linked file is archived as the file; every later one as a hard
        /// link to that entry, as GNU tar does, so a restore makes them one inode again.
        /// </summary>
        private void PutLinkedFile(string path, string entryName, UnixFileStatus status)
        {
            var id = (status.Device, status.Inode);
            if (_linked.TryGetValue(id, out var first))
            {
                _writer.PutEntry(entryName, TarHeader.LF_LINK, status, _accounts.UserName(status.UserId), _accounts.GroupName(status.GroupId), size: 0, linkName: first.EntryName);
                _writer.CloseEntry();
                _linked[id] = first with { Met = first.Met + 1 };
                _hardLinks++;
                return;
            }

            _linked[id] = (entryName, path, status.LinkCount, 1);
            PutFile(path, entryName, status);
        }

        private void PutFile(string path, string entryName, UnixFileStatus status)
        {
            if (status.Size > ConfigArchiveReader.DefaultMaxEntrySize)
            {
                _warn?.Invoke($"'{UnsafeArchiveException.Printable(path)}' is {status.Size} bytes, over the {ConfigArchiveReader.DefaultMaxEntrySize}-byte per-entry limit a restore applies by default; restoring it needs a raised limit.");
            }

            // A sparse file is read whole (its holes as zeros); the restore leaves zero blocks unallocated.
            using var handle = UnixFileSystem.OpenRead(path);
            var attributes = ReadAttributes(path, UnixFileKind.Regular);
            _writer.PutEntry(entryName, TarHeader.LF_NORMAL, status, _accounts.UserName(status.UserId), _accounts.GroupName(status.GroupId), status.Size, attributes: attributes);

            long offset = 0;
            while (offset < status.Size)
            {
                _cancellationToken.ThrowIfCancellationRequested();
                var wanted = (int)Math.Min(_buffer.Length, status.Size - offset);
                var read = RandomAccess.Read(handle, _buffer.AsSpan(0, wanted), offset);
                if (read == 0)
                {
                    // The header with the size is already out and the output cannot seek back.
                    throw new IOException($"'{UnsafeArchiveException.Printable(path)}' shrank from {status.Size} to {offset} bytes while it was being archived; retry the backup.");
                }

                _writer.Write(_buffer, read);
                offset += read;
            }

            _writer.CloseEntry();
            if (RandomAccess.Read(handle, _buffer.AsSpan(0, 1), offset) > 0)
            {
                _warn?.Invoke($"'{UnsafeArchiveException.Printable(path)}' grew while it was being archived; only its first {status.Size} bytes are in the archive.");
            }

            _files++;
            _bytes += status.Size;
        }

        private void PutSymlink(ArchiveRoot root, string path, string relative, string entryName, in UnixFileStatus status)
        {
            var target = UnixFileSystem.ReadLink(path);

            // The reader refuses the whole archive over such a link; leaving the link out keeps the
            // rest of the backup restorable, and the warning makes the gap visible at backup time.
            if (EntryNames.SymlinkEscapeReason(root, relative, target) is not null)
            {
                Skip("symbolic link pointing outside its config directory (a restore would refuse it)", path + " -> " + target);
                return;
            }

            var attributes = ReadAttributes(path, UnixFileKind.Symlink);
            _writer.PutEntry(entryName, TarHeader.LF_SYMLINK, status, _accounts.UserName(status.UserId), _accounts.GroupName(status.GroupId), size: 0, linkName: target, attributes: attributes);
            _symlinks++;
        }

        /// <summary>
        /// The entry's extended attributes and ACLs, as the archive stores them. Anything the
        /// reader would refuse is left out and reported instead, so the archive stays restorable.
        /// </summary>
        private EntryAttributes ReadAttributes(string path, UnixFileKind kind)
        {
            var names = UnixFileSystem.ListExtendedAttributes(path);
            if (names.Count == 0)
            {
                return EntryAttributes.None;
            }

            string? accessAcl = null, defaultAcl = null;
            var attributes = new List<KeyValuePair<string, byte[]>>();
            long total = 0;
            foreach (var name in names.Order(StringComparer.Ordinal))
            {
                if (UnixFileSystem.GetExtendedAttribute(path, name) is not { } value)
                {
                    continue; // Removed since it was listed.
                }

                if (name is ExtendedAttributes.AccessAcl or ExtendedAttributes.DefaultAcl)
                {
                    var acl = PosixAcl.FromXattr(value, out var error);
                    if (acl is null)
                    {
                        _omissions.Add($"POSIX ACL in a form registry-dr cannot read ({error})", path);
                    }
                    else if (name == ExtendedAttributes.AccessAcl)
                    {
                        accessAcl = acl.ToText();
                    }
                    else if (kind == UnixFileKind.Directory)
                    {
                        defaultAcl = acl.ToText();
                    }

                    continue;
                }

                if (ExtendedAttributes.Refusal(name, value, kind == UnixFileKind.Symlink, kind == UnixFileKind.Regular) is { } refusal)
                {
                    _omissions.Add($"{ExtendedAttributes.KindOf(name)} extended attribute a restore would refuse ({refusal})", path);
                    continue;
                }

                attributes.Add(KeyValuePair.Create(name, value));
                total += SurrogateEscape.GetByteCount(name) + value.Length + 32;
            }

            total += (accessAcl?.Length ?? 0) + (defaultAcl?.Length ?? 0);
            if (total > MaxAttributeBytes)
            {
                _omissions.Add($"set of extended attributes and ACLs over {MaxAttributeBytes} bytes on one entry (more than a restore accepts)", path);
                return EntryAttributes.None;
            }

            return new EntryAttributes(accessAcl, defaultAcl, attributes);
        }

        /// <summary>An entry left out of the archive altogether.</summary>
        private void Skip(string kind, string path)
        {
            _skipped++;
            _omissions.Add(kind, path);
        }

        private static string Describe(UnixFileKind kind) => kind switch
        {
            UnixFileKind.Fifo => "FIFO",
            UnixFileKind.Socket => "socket",
            UnixFileKind.CharDevice => "character device",
            UnixFileKind.BlockDevice => "block device",
            _ => "special file of unknown type",
        };
    }
}
