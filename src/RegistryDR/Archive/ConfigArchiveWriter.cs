using System.Text;
using ICSharpCode.SharpZipLib.GZip;
using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Archive;

/// <summary>
/// Writes config directories as one tar.gz: ustar headers (PAX where a value does not fit) with
/// full permission bits including setuid/setgid/sticky, numeric uid/gid plus informational
/// user/group names, whole-second mtimes, and symbolic links as links. Entries are written
/// depth first, each directory before its contents, siblings in ordinal order, so the same tree
/// always gives the same tar stream.
/// </summary>
internal static class ConfigArchiveWriter
{
    private const int ChunkSize = 128 * 1024;
    private const int GzipBufferSize = 64 * 1024;

    // Dot files must not be skipped (the default EnumerationOptions treats them as hidden).
    private static readonly EnumerationOptions ListEverything = new()
    {
        AttributesToSkip = 0,
        IgnoreInaccessible = false,
        RecurseSubdirectories = false,
        ReturnSpecialDirectories = false,
    };

    /// <summary>
    /// Streams a tar.gz of every root to <paramref name="output"/>, which may be non-seekable and
    /// is left open. File contents are streamed in chunks, never held whole in memory.
    /// </summary>
    /// <param name="excludeGlobs">Matched against each path relative to its root with '/' separators:
    /// '*' and '?' within one segment, '**' across segments, a pattern without '/' matches the
    /// basename at any depth. An excluded directory is skipped with everything in it.</param>
    /// <param name="warn">Told about every entry that is left out (sockets, FIFOs, devices, links that
    /// point outside their root) and about files that changed while being read.</param>
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
        private readonly ExcludeMatcher _excludes;
        private readonly Stream _output;
        private readonly Action<string>? _warn;
        private readonly CancellationToken _cancellationToken;
        private readonly AccountNames _accounts = AccountNames.Load();
        private readonly byte[] _buffer = new byte[ChunkSize];
        private TarEntryWriter _writer = null!;
        private long _files, _directories, _symlinks, _bytes, _skipped;

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
                PutDirectory(roots[i].EntryPrefix, rootStatus[i]);
                WalkDirectory(roots[i], roots[i].Path, string.Empty);
            }

            // Only a complete run finishes the archive: disposing writes the end-of-archive blocks
            // and the gzip trailer. On failure the streams are abandoned on purpose (they hold no
            // OS resources), leaving output that fails to decompress rather than a truncated
            // archive that looks whole.
            tar.Dispose();
            _output.Flush();
            return new ArchiveStats(_files, _directories, _symlinks, _bytes) { Skipped = _skipped };
        }

        private void WalkDirectory(ArchiveRoot root, string directory, string relativeDirectory)
        {
            var names = Directory.EnumerateFileSystemEntries(directory, "*", ListEverything)
                .Select(Path.GetFileName)
                .OfType<string>()
                .Order(StringComparer.Ordinal)
                .ToList();

            foreach (var name in names)
            {
                _cancellationToken.ThrowIfCancellationRequested();
                var path = directory + "/" + name;
                var relative = relativeDirectory.Length == 0 ? name : relativeDirectory + "/" + name;
                var entryName = root.EntryPrefix + "/" + relative;

                var found = UnixFileSystem.TryGetStatus(path);
                if (found is not { } status)
                {
                    Skip($"'{path}' disappeared while the archive was being written; it is not in the archive.");
                    continue;
                }

                if (_excludes.IsExcluded(relative, status.Kind == UnixFileKind.Directory))
                {
                    continue;
                }

                switch (status.Kind)
                {
                    case UnixFileKind.Directory:
                        PutDirectory(entryName, status);
                        WalkDirectory(root, path, relative);
                        break;
                    case UnixFileKind.Regular:
                        PutFile(path, entryName, status);
                        break;
                    case UnixFileKind.Symlink:
                        PutSymlink(root, path, relative, entryName, status);
                        break;
                    default:
                        Skip($"'{path}' is a {Describe(status.Kind)}; it is not in the archive.");
                        break;
                }
            }
        }

        private void PutDirectory(string entryName, in UnixFileStatus status)
        {
            _writer.PutEntry(entryName + "/", TarHeader.LF_DIR, status, _accounts.UserName(status.UserId), _accounts.GroupName(status.GroupId), size: 0);
            _directories++;
        }

        private void PutFile(string path, string entryName, UnixFileStatus status)
        {
            if (status.Size > ConfigArchiveReader.DefaultMaxEntrySize)
            {
                _warn?.Invoke($"'{path}' is {status.Size} bytes, over the {ConfigArchiveReader.DefaultMaxEntrySize}-byte per-entry limit a restore applies by default; restoring it needs a raised limit.");
            }

            // Hard links are opened by path like any file, so each name is stored as a full copy.
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, FileOptions.SequentialScan);
            _writer.PutEntry(entryName, TarHeader.LF_NORMAL, status, _accounts.UserName(status.UserId), _accounts.GroupName(status.GroupId), status.Size);

            long offset = 0;
            while (offset < status.Size)
            {
                _cancellationToken.ThrowIfCancellationRequested();
                var wanted = (int)Math.Min(_buffer.Length, status.Size - offset);
                var read = RandomAccess.Read(handle, _buffer.AsSpan(0, wanted), offset);
                if (read == 0)
                {
                    // The header with the size is already out and the output cannot seek back.
                    throw new IOException($"'{path}' shrank from {status.Size} to {offset} bytes while it was being archived; retry the backup.");
                }

                _writer.Write(_buffer, read);
                offset += read;
            }

            _writer.CloseEntry();
            if (RandomAccess.Read(handle, _buffer.AsSpan(0, 1), offset) > 0)
            {
                _warn?.Invoke($"'{path}' grew while it was being archived; only its first {status.Size} bytes are in the archive.");
            }

            _files++;
            _bytes += status.Size;
        }

        private void PutSymlink(ArchiveRoot root, string path, string relative, string entryName, in UnixFileStatus status)
        {
            var target = new FileInfo(path).LinkTarget ?? string.Empty;

            // The reader refuses the whole archive over such a link; leaving the link out keeps the
            // rest of the backup restorable, and the warning makes the gap visible at backup time.
            if (EntryNames.SymlinkEscapeReason(root, relative, target) is { } reason)
            {
                Skip($"Symbolic link '{path}' -> '{target}' is not in the archive: {reason}, and a restore would refuse it.");
                return;
            }

            _writer.PutEntry(entryName, TarHeader.LF_SYMLINK, status, _accounts.UserName(status.UserId), _accounts.GroupName(status.GroupId), size: 0, linkName: target);
            _symlinks++;
        }

        private void Skip(string message)
        {
            _skipped++;
            _warn?.Invoke(message);
        }

        private static string Describe(UnixFileKind kind) => kind switch
        {
            UnixFileKind.Fifo => "FIFO",
            UnixFileKind.Socket => "socket",
            UnixFileKind.CharDevice => "character device",
            UnixFileKind.BlockDevice => "block device",
            _ => "file of unknown type",
        };
    }
}
