using ICSharpCode.SharpZipLib.GZip;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Tests.Fuzz;

/// <summary>How one call ended: with stats, with an exception, or not within the time limit.</summary>
internal sealed record ArchiveOutcome(ArchiveStats? Stats, Exception? Error, bool TimedOut)
{
    public bool Allowed => TimedOut is false && (Stats is not null || Error?.GetType() == typeof(UnsafeArchiveException) || Error?.GetType() == typeof(InvalidDataException));

    public string Kind => TimedOut ? "timeout" : Error is null ? "accepted" : Error.GetType().Name;

    public override string ToString() => TimedOut ? "timed out" : Error is null ? $"accepted: {Stats}" : $"{Error.GetType().FullName}: {Error.Message}";
}

/// <summary>
/// Runs one hostile archive through <see cref="ConfigArchiveReader.ValidateAsync"/> and
/// <see cref="ConfigArchiveReader.ExtractAsync"/> and checks every safety property:
/// only documented outcomes, no hang, bounded allocation, validation predicts extraction, and
/// nothing written outside the staging directories (a sentinel directory beside them stays empty,
/// no other sibling appears, and every symbolic link extracted resolves inside them).
/// </summary>
/// <remarks>
/// Layout: base/case/target-N (one staging directory per root), base/case/sentinel. The case
/// directory is recreated for every case.
/// </remarks>
internal sealed class ArchiveFuzzHarness : IDisposable
{
    /// <summary>Generous: a case normally takes a millisecond; only a hang gets near this.</summary>
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Fuzzed archives decompress to well under a megabyte; reading one may hold a bounded PAX
    /// record (1 MiB) and some buffers, never an allocation driven by a declared size.
    /// </summary>
    private const long MaxAllocatedBytesPerCase = 24L << 20;

    private readonly Dictionary<string, int> _outcomes = new(StringComparer.Ordinal);
    private readonly System.Diagnostics.Stopwatch _reading = new(), _validating = new(), _preparing = new(), _extracting = new(), _checking = new();

    public ArchiveFuzzHarness()
    {
        // Fixed length, so entry names built from these paths keep the same length on every run.
        // Thousands of tiny trees are created and deleted: tmpfs keeps that off the disk journal.
        var temp = Directory.Exists("/dev/shm") && UnixFileSystem.TryGetStatus("/dev/shm") is { Kind: UnixFileKind.Directory } ? "/dev/shm" : Path.GetTempPath();
        BasePath = Path.Combine(temp, "registrydr-fuzz-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(BasePath);
    }

    /// <summary>Gzip with the platform's zlib at its fastest level: the reader must take any valid gzip, and this is the hot path of every case.</summary>
    public static byte[] Gzip(byte[] tar)
    {
        var output = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(output, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(tar);
        }

        return output.ToArray();
    }

    public string BasePath { get; }

    public string CasePath => Path.Combine(BasePath, "case");

    public string SentinelPath => Path.Combine(CasePath, "sentinel");

    public string TargetPath(int rootIndex) => Path.Combine(CasePath, $"target-{rootIndex}");

    public IReadOnlyDictionary<string, int> Outcomes => _outcomes;

    public Fuzz.Failures Failures { get; } = new();

    public async Task RunAsync(byte[] archive, IReadOnlyList<ArchiveRoot> roots, string where, CancellationToken cancellationToken)
    {
        _reading.Start();
        var allocated = AllocatedWhileReadingOnThisThread(archive, roots);
        _reading.Stop();
        Assert.IsLessThanOrEqualTo(MaxAllocatedBytesPerCase, allocated, $"Reading allocated {allocated} bytes for a {archive.Length}-byte archive {where}");

        _validating.Start();
        var validation = await RunWithTimeoutAsync(ct => ConfigArchiveReader.ValidateAsync(new MemoryStream(archive), roots, ct), cancellationToken);
        _validating.Stop();
        Assert.IsFalse(validation.TimedOut, $"ValidateAsync did not finish within {CaseTimeout} {where}");
        Assert.IsTrue(validation.Allowed, $"ValidateAsync ended with an undocumented outcome {where}: {validation.Error}");
        CheckMessage(validation.Error, where);

        _preparing.Start();
        var targets = PrepareCase(roots);
        _preparing.Stop();
        _extracting.Start();
        var extraction = await RunWithTimeoutAsync(ct => ConfigArchiveReader.ExtractAsync(new MemoryStream(archive), roots, targets, restoreOwnership: Environment.IsPrivilegedProcess, ct), cancellationToken);
        _extracting.Stop();
        Assert.IsFalse(extraction.TimedOut, $"ExtractAsync did not finish within {CaseTimeout} {where}");
        Assert.IsTrue(extraction.Allowed, $"ExtractAsync ended with an undocumented outcome {where}: {extraction.Error}");
        CheckMessage(extraction.Error, where);

        // Validation exists so a restore can refuse an archive before touching anything; it is only
        // meaningful if extraction agrees with it. (Extraction alone can report attributes the
        // target could not take; that is not a disagreement.)
        var extracted = extraction with { Stats = extraction.Stats is { } s ? s with { NotKept = [] } : null };
        Assert.AreEqual(validation.ToString(), extracted.ToString(), $"ValidateAsync and ExtractAsync disagree {where}");

        _checking.Start();
        var found = AssertNothingOutside(roots, where);
        if (extraction.Stats is { } stats)
        {
            // Accepted means exactly what was counted is on disk: implicit parent directories are
            // the only thing extraction may add; each hard link is one more name of a file.
            Assert.AreEqual(stats.Files, found.Files, $"Regular files (inodes) on disk vs counted {where}");
            Assert.AreEqual(stats.HardLinks, found.ExtraNames, $"Further names of regular files on disk vs hard links counted {where}");
            Assert.AreEqual(stats.Symlinks, found.Symlinks, $"Symbolic links on disk vs counted {where}");
            Assert.AreEqual(stats.Bytes, found.Bytes, $"File bytes on disk vs counted {where}");
            Assert.IsGreaterThanOrEqualTo(stats.Directories, found.Directories, $"Directories on disk vs counted {where}");
        }

        _checking.Stop();
        var kind = validation.Kind;
        _outcomes[kind] = _outcomes.GetValueOrDefault(kind) + 1;
    }

    public string Summary() => string.Join(", ", _outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key} {o.Value}"));

    public string Timings() =>
        $"reading {_reading.Elapsed.TotalSeconds:F1}s, validating {_validating.Elapsed.TotalSeconds:F1}s, preparing {_preparing.Elapsed.TotalSeconds:F1}s, extracting {_extracting.Elapsed.TotalSeconds:F1}s, checking {_checking.Elapsed.TotalSeconds:F1}s";

    public void Dispose() => UnixFileSystem.DeleteTree(BasePath);

    private static async Task<ArchiveOutcome> RunWithTimeoutAsync(Func<CancellationToken, Task<ArchiveStats>> run, CancellationToken cancellationToken)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task<ArchiveStats> task;
        try
        {
            task = run(cancel.Token);
        }
        catch (Exception ex)
        {
            return new ArchiveOutcome(null, ex, TimedOut: false);
        }

        try
        {
            return new ArchiveOutcome(await task.WaitAsync(CaseTimeout, cancellationToken), null, TimedOut: false);
        }
        catch (TimeoutException) when (!task.IsCompleted)
        {
            await cancel.CancelAsync();
            return new ArchiveOutcome(null, null, TimedOut: true);
        }
        catch (Exception ex)
        {
            return new ArchiveOutcome(null, ex, TimedOut: false);
        }
    }

    /// <summary>
    /// The same read loop as <see cref="ConfigArchiveReader.ValidateAsync"/>, run synchronously
    /// so the allocation counter of this thread sees all of it (the public API runs on the
    /// thread pool). Exceptions do not matter here; the public calls are checked separately.
    /// </summary>
    private static long AllocatedWhileReadingOnThisThread(byte[] archive, IReadOnlyList<ArchiveRoot> roots)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            using var gzip = new GZipInputStream(new MemoryStream(archive), 64 * 1024);
            var reader = new TarEntryReader(gzip);
            var policy = new EntryPolicy(roots, ConfigArchiveReader.DefaultMaxEntrySize);
            while (reader.ReadNext() is { } member)
            {
                policy.Admit(member);
            }

            reader.VerifyEnd();
        }
        catch (Exception)
        {
            // Classified by the real calls.
        }

        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private static void CheckMessage(Exception? error, string where)
    {
        if (error is UnsafeArchiveException unsafeEntry)
        {
            Assert.StartsWith("Archive entry '", unsafeEntry.Message, where);
            Assert.Contains("' is refused: ", unsafeEntry.Message, where);
            Assert.IsFalse(unsafeEntry.Message.Any(char.IsControl), $"The message carries raw control characters {where}: {Fuzz.Printable(unsafeEntry.Message)}");
        }
        else if (error is InvalidDataException invalid)
        {
            Assert.IsFalse(string.IsNullOrWhiteSpace(invalid.Message), where);
            Assert.IsFalse(invalid.Message.Any(char.IsControl), $"The message carries raw control characters {where}: {Fuzz.Printable(invalid.Message)}");
        }
    }

    private Dictionary<string, string> PrepareCase(IReadOnlyList<ArchiveRoot> roots)
    {
        UnixFileSystem.DeleteTree(CasePath);

        Directory.CreateDirectory(SentinelPath);
        var targets = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < roots.Count; i++)
        {
            targets[roots[i].EntryPrefix] = Directory.CreateDirectory(TargetPath(i)).FullName;
        }

        return targets;
    }

    private (long Files, long ExtraNames, long Directories, long Symlinks, long Bytes) AssertNothingOutside(IReadOnlyList<ArchiveRoot> roots, string where)
    {
        long names = 0, directories = roots.Count, symlinks = 0, bytes = 0;
        var inodes = new Dictionary<(ulong, ulong), (uint LinkCount, uint Found, string Relative)>();
        Assert.IsFalse(Directory.EnumerateFileSystemEntries(SentinelPath).Any(), $"Something was written into the sentinel directory {where}");
        var expected = Enumerable.Range(0, roots.Count).Select(i => $"target-{i}").Append("sentinel").Order(StringComparer.Ordinal).ToList();
        var actual = Directory.EnumerateFileSystemEntries(CasePath).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        CollectionAssert.AreEqual(expected, actual, $"Something was written beside the staging directories {where}");
        Assert.AreEqual(1, Directory.EnumerateFileSystemEntries(BasePath).Count(), $"Something was written into the base directory {where}");

        var staging = roots.Select((root, i) => (root.Path, Staging: TargetPath(i))).ToList();
        for (var i = 0; i < roots.Count; i++)
        {
            var target = UnixFileSystem.GetStatus(TargetPath(i));
            Assert.AreEqual(UnixFileKind.Directory, target.Kind, $"The staging directory was replaced {where}");
            foreach (var (relative, kind) in Walk(TargetPath(i), string.Empty))
            {
                Assert.IsTrue(kind is UnixFileKind.Regular or UnixFileKind.Directory or UnixFileKind.Symlink, $"'{relative}' was extracted as a {kind} {where}");
                directories += kind == UnixFileKind.Directory ? 1 : 0;
                if (kind == UnixFileKind.Regular)
                {
                    names++;
                    var status = UnixFileSystem.GetStatus(Path.Join(TargetPath(i), relative));
                    var id = (status.Device, status.Inode);
                    if (inodes.TryGetValue(id, out var seen))
                    {
                        inodes[id] = seen with { Found = seen.Found + 1 };
                    }
                    else
                    {
                        inodes[id] = (status.LinkCount, 1, relative);
                        bytes += status.Size;
                    }
                }

                if (kind == UnixFileKind.Symlink)
                {
                    symlinks++;
                    var escape = SymlinkResolver.Escape(staging, i, relative);
                    Assert.IsNull(escape, $"Extracted link '{relative}' -> '{UnixFileSystem.ReadLink(Path.Join(TargetPath(i), relative))}' escapes: {escape} {where}");
                }
            }
        }

        // Every name of every extracted file is inside the staging directories: a hard link to
        // anything outside them (the sentinel, /etc/shadow) would show as a link count above the
        // names found here.
        foreach (var (linkCount, found, relative) in inodes.Values)
        {
            Assert.AreEqual(linkCount, found, $"'{relative}' has {linkCount} names but only {found} inside the staging directories {where}");
        }

        return (inodes.Count, names - inodes.Count, directories, symlinks, bytes);
    }

    /// <summary>Every path below <paramref name="directory"/>, by lstat, never following a link.</summary>
    private static IEnumerable<(string Relative, UnixFileKind Kind)> Walk(string directory, string relative)
    {
        foreach (var name in UnixFileSystem.ReadDirectory(directory))
        {
            var path = directory + "/" + name;
            var childRelative = relative.Length == 0 ? name : relative + "/" + name;
            var kind = UnixFileSystem.GetStatus(path).Kind;
            yield return (childRelative, kind);
            if (kind == UnixFileKind.Directory)
            {
                foreach (var child in Walk(path, childRelative))
                {
                    yield return child;
                }
            }
        }
    }
}

/// <summary>
/// Resolves an extracted symbolic link the way the kernel would once the staging directories
/// are renamed to their roots' paths: links inside are followed (up to 40 hops), absolute targets
/// are mapped through the roots' paths, and '..' is physical. Anything that ends outside every
/// staging directory is an escape.
/// </summary>
internal static class SymlinkResolver
{
    public static string? Escape(IReadOnlyList<(string RootPath, string Staging)> roots, int rootIndex, string relativeLinkPath)
    {
        // Position: a root index (or -1 for "somewhere in the real filesystem") and the path below it.
        var root = rootIndex;
        var parts = new List<string>();
        var pending = new LinkedList<string>(relativeLinkPath.Split('/'));
        var hops = 0;
        while (pending.First is { } first)
        {
            pending.RemoveFirst();
            var component = first.Value;
            if (component is "" or ".")
            {
                continue;
            }

            if (component == "..")
            {
                if (parts.Count > 0)
                {
                    parts.RemoveAt(parts.Count - 1);
                }
                else if (root >= 0)
                {
                    return $"'..' climbs above the root '{roots[root].RootPath}'";
                }

                continue;
            }

            parts.Add(component);
            if (root < 0)
            {
                var absolute = "/" + string.Join('/', parts);
                var entered = roots.ToList().FindIndex(r => r.RootPath == absolute);
                if (entered >= 0)
                {
                    root = entered;
                    parts.Clear();
                }

                continue;
            }

            var onDisk = Path.Join(roots[root].Staging, string.Join('/', parts));
            if (StatusOrNull(onDisk) is not { Kind: UnixFileKind.Symlink })
            {
                // A directory, a file, or nothing: the walk continues lexically (a missing
                // component would make the kernel stop with ENOENT, which is not an escape).
                continue;
            }

            if (++hops > 40)
            {
                return null; // ELOOP: the kernel refuses to resolve it at all.
            }

            var target = UnixFileSystem.ReadLink(onDisk);
            parts.RemoveAt(parts.Count - 1);
            if (target.StartsWith('/'))
            {
                root = -1;
                parts.Clear();
            }

            foreach (var segment in target.Split('/').Reverse())
            {
                pending.AddFirst(segment);
            }
        }

        return root < 0 ? $"it resolves to '/{string.Join('/', parts)}', outside every root" : null;
    }

    /// <summary>lstat, with "a file used as a directory" (ENOTDIR) and the like treated as missing.</summary>
    private static UnixFileStatus? StatusOrNull(string path)
    {
        try
        {
            return UnixFileSystem.TryGetStatus(path);
        }
        catch (IOException)
        {
            return null;
        }
    }
}
