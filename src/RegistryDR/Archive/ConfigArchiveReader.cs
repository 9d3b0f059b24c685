using ICSharpCode.SharpZipLib;
using ICSharpCode.SharpZipLib.GZip;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Archive;

/// <summary>
/// Reads config archives written by <see cref="ConfigArchiveWriter"/>, treating them as
/// untrusted: every entry is checked before anything is written, and anything that could land
/// outside its staging directory (hard links included: only to a regular file extracted before
/// them), or that our writer never produces, is refused with
/// <see cref="UnsafeArchiveException"/>. Damaged data gives <see cref="InvalidDataException"/>.
/// </summary>
internal static class ConfigArchiveReader
{
    /// <summary>Largest regular file accepted by default (16 GiB); a bigger declared size means a damaged or hostile archive.</summary>
    public const long DefaultMaxEntrySize = 16L * 1024 * 1024 * 1024;

    private const int GzipBufferSize = 64 * 1024;

    /// <summary>
    /// Reads the whole archive and applies every safety rule without writing anything.
    /// </summary>
    /// <exception cref="UnsafeArchiveException">An entry breaks a safety rule.</exception>
    /// <exception cref="InvalidDataException">The gzip or tar data is damaged or truncated, or a root is missing.</exception>
    public static Task<ArchiveStats> ValidateAsync(Stream input, IReadOnlyList<ArchiveRoot> roots, CancellationToken cancellationToken) =>
        ValidateAsync(input, roots, DefaultMaxEntrySize, cancellationToken);

    /// <inheritdoc cref="ValidateAsync(Stream, IReadOnlyList{ArchiveRoot}, CancellationToken)"/>
    /// <param name="maxEntrySize">Largest regular file accepted, in bytes.</param>
    public static Task<ArchiveStats> ValidateAsync(Stream input, IReadOnlyList<ArchiveRoot> roots, long maxEntrySize, CancellationToken cancellationToken)
    {
        CheckArguments(input, roots, maxEntrySize);
        return Task.Run(() => Read(input, roots, maxEntrySize, extractor: null, cancellationToken), cancellationToken);
    }

    /// <summary>
    /// Extracts each root's entries into <c>targets[root.EntryPrefix]</c>, an existing empty
    /// staging directory. On any exception the staging directories hold a partial, unusable
    /// result and must be discarded, never swapped into place. What the target could not take
    /// (attributes its filesystem does not support, attributes only root may set) is in the
    /// result's <see cref="ArchiveStats.NotKept"/>, one entry per kind, for the caller to report.
    /// </summary>
    /// <param name="restoreOwnership">Set each entry's uid/gid from the archive (needs root).</param>
    /// <exception cref="UnsafeArchiveException">An entry breaks a safety rule.</exception>
    /// <exception cref="InvalidDataException">The gzip or tar data is damaged or truncated, or a root is missing.</exception>
    public static Task<ArchiveStats> ExtractAsync(Stream input, IReadOnlyList<ArchiveRoot> roots, IReadOnlyDictionary<string, string> targets, bool restoreOwnership, CancellationToken cancellationToken) =>
        ExtractAsync(input, roots, targets, restoreOwnership, DefaultMaxEntrySize, cancellationToken);

    /// <inheritdoc cref="ExtractAsync(Stream, IReadOnlyList{ArchiveRoot}, IReadOnlyDictionary{string, string}, bool, CancellationToken)"/>
    /// <param name="maxEntrySize">Largest regular file accepted, in bytes.</param>
    public static Task<ArchiveStats> ExtractAsync(Stream input, IReadOnlyList<ArchiveRoot> roots, IReadOnlyDictionary<string, string> targets, bool restoreOwnership, long maxEntrySize, CancellationToken cancellationToken)
    {
        CheckArguments(input, roots, maxEntrySize);
        var extractor = new StagingExtractor(roots, targets, restoreOwnership);
        return Task.Run(() => Read(input, roots, maxEntrySize, extractor, cancellationToken), cancellationToken);
    }

    private static void CheckArguments(Stream input, IReadOnlyList<ArchiveRoot> roots, long maxEntrySize)
    {
        ArgumentNullException.ThrowIfNull(input);
        EntryNames.ValidateRoots(roots);
        ArgumentOutOfRangeException.ThrowIfNegative(maxEntrySize);
    }

    // SharpZipLib's streams are synchronous; the work runs on the thread pool so callers keep an
    // async shape without blocking their own thread.
    private static ArchiveStats Read(Stream input, IReadOnlyList<ArchiveRoot> roots, long maxEntrySize, StagingExtractor? extractor, CancellationToken cancellationToken)
    {
        var policy = new EntryPolicy(roots, maxEntrySize);
        long files = 0, directories = 0, symlinks = 0, bytes = 0, hardLinks = 0;
        try
        {
            using var gzip = new GZipInputStream(input, GzipBufferSize) { IsStreamOwner = false };
            var reader = new TarEntryReader(new DecompressorGuard(gzip));
            while (reader.ReadNext() is { } member)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var admitted = policy.Admit(member);
                if (extractor is not null)
                {
                    extractor.Extract(admitted, reader, cancellationToken);
                }

                switch (admitted.Kind)
                {
                    case MemberKind.File:
                        files++;
                        bytes += member.Size;
                        break;
                    case MemberKind.Directory:
                        directories++;
                        break;
                    case MemberKind.Symlink:
                        symlinks++;
                        break;
                    case MemberKind.HardLink:
                        hardLinks++;
                        break;
                }
            }

            reader.VerifyEnd();
        }
        catch (SharpZipBaseException ex)
        {
            throw new InvalidDataException($"The archive is not a valid gzip stream: {ex.Message}", ex);
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException($"The archive is truncated: {ex.Message}", ex);
        }

        policy.EnsureEveryRootPresent();
        extractor?.Finish();
        return new ArchiveStats(files, directories, symlinks, bytes) { HardLinks = hardLinks, NotKept = extractor?.NotKept ?? [] };
    }

    /// <summary>
    /// SharpZipLib's inflater does not always report damaged deflate data as a
    /// SharpZipBaseException: a corrupt dynamic Huffman table makes it throw
    /// IndexOutOfRangeException (found by the fuzz tests). Whatever it throws while decoding the
    /// bytes is damaged data, so it becomes <see cref="InvalidDataException"/> here, at the gzip
    /// boundary, where it cannot mask a fault in our own tar code. I/O errors of the underlying
    /// stream and cancellation pass through unchanged.
    /// </summary>
    private sealed class DecompressorGuard(Stream gzip) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            try
            {
                return gzip.Read(buffer);
            }
            catch (Exception ex) when (ex is not (IOException or SharpZipBaseException or OperationCanceledException or OutOfMemoryException))
            {
                throw new InvalidDataException($"The archive is not a valid gzip stream: its compressed data is damaged ({ex.GetType().Name}: {ex.Message})", ex);
            }
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
