using System.Formats.Tar;
using System.IO.Compression;
using RegistryDR.Backup;
using RegistryDR.Progress;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Continuous.Internal;

/// <summary>
/// The directories a point-in-time restore or drill builds before anything on the node changes,
/// all beside the live data directory (same file system, so the swap is a rename) and owned by
/// its owner: the restored data directory, the verified WAL it replays, and a private directory
/// for the rehearsal server's socket, configuration and log. Disposing removes what is left.
/// </summary>
internal sealed class RecoveryStaging : IAsyncDisposable
{
    private RecoveryStaging(string dataDirectory, string walDirectory, string scratchDirectory, FileOwner owner)
    {
        DataDirectory = dataDirectory;
        WalDirectory = walDirectory;
        ScratchDirectory = scratchDirectory;
        Owner = owner;
    }

    public string DataDirectory { get; }
    public string WalDirectory { get; }
    public string ScratchDirectory { get; }
    public FileOwner Owner { get; }

    /// <summary>Set once the restored data directory has been moved into place (it is then not deleted).</summary>
    public bool DataDirectoryTaken { get; set; }

    public static async Task<RecoveryStaging> CreateAsync(string liveDataDirectory, string purpose, CancellationToken cancellationToken)
    {
        var live = Path.TrimEndingDirectorySeparator(Path.GetFullPath(liveDataDirectory));
        var parent = Path.GetDirectoryName(live)!;
        var name = Path.GetFileName(live);
        Directory.CreateDirectory(parent);
        var owner = await FileOwner.OfAsync(Directory.Exists(live) ? live : parent, cancellationToken);
        var tag = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3));
        var data = Path.Combine(parent, $".{name}.registry-dr-{purpose}-{tag}");
        var wal = Path.Combine(parent, $".{name}.registry-dr-wal-{tag}");
        // The socket path must stay under 108 bytes, so the rehearsal's private directory is in /tmp.
        var scratch = Directory.CreateTempSubdirectory("rdr-pitr-").FullName;
        foreach (var dir in new[] { data, wal })
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(scratch, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return new RecoveryStaging(data, wal, scratch, owner);
    }

    /// <summary>
    /// Streams the base backup from the store through SHA-256 and gunzip into the staged data
    /// directory (regular files and directories only, every path inside it), then checks size and
    /// SHA-256 against the manifest: a backup that does not match is refused before anything uses it.
    /// </summary>
    public async Task ExtractBaseAsync(IBackupStore store, BaseBackupManifest manifest, IOperationProgress progress, CancellationToken cancellationToken)
    {
        var artifact = manifest.Get(ContinuousLayout.BaseArtifact);
        await using var source = await store.OpenReadAsync(artifact.Key, cancellationToken);
        using var hashing = new HashingStream(source, b => progress.Transferred(ContinuousLayout.BaseArtifact, b));
        var root = DataDirectory + Path.DirectorySeparatorChar;
        try
        {
            await using (var gunzip = new GZipStream(hashing, CompressionMode.Decompress, leaveOpen: true))
            await using (var reader = new TarReader(gunzip, leaveOpen: true))
            {
                while (await reader.GetNextEntryAsync(copyData: false, cancellationToken) is { } entry)
                {
                    var relative = entry.Name.StartsWith("./", StringComparison.Ordinal) ? entry.Name[2..] : entry.Name;
                    relative = relative.TrimEnd('/');
                    if (relative.Length == 0) continue;
                    var path = Path.GetFullPath(Path.Combine(DataDirectory, relative));
                    if (Path.IsPathRooted(relative) || relative.Split('/').Contains("..") || !path.StartsWith(root, StringComparison.Ordinal))
                        throw new ArtifactCorruptException(manifest.BackupId, ContinuousLayout.BaseArtifact, $"its tar holds '{entry.Name}', a path outside the data directory.");
                    switch (entry.EntryType)
                    {
                        case TarEntryType.Directory:
                            Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                            break;
                        case TarEntryType.RegularFile or TarEntryType.V7RegularFile:
                            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                            await using (var file = new FileStream(path, new FileStreamOptions
                            {
                                Mode = FileMode.CreateNew, Access = FileAccess.Write, Options = FileOptions.Asynchronous, BufferSize = 1 << 16,
                                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                            }))
                            {
                                if (entry.DataStream is { } data) await data.CopyToAsync(file, 1 << 16, cancellationToken);
                            }
                            break;
                        default:
                            // pg_basebackup writes links only for tablespaces, which a streamed base backup cannot hold.
                            throw new ArtifactCorruptException(manifest.BackupId, ContinuousLayout.BaseArtifact, $"its tar holds '{entry.Name}' of type {entry.EntryType}; a base backup holds only files and directories.");
                    }
                }
            }
            await hashing.CopyToAsync(Stream.Null, cancellationToken); // gzip trailer, padding
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException or EndOfStreamException)
        {
            await hashing.CopyToAsync(Stream.Null, cancellationToken);
            ArtifactIntegrity.Check(manifest.BackupId, artifact, hashing.BytesRead, hashing.HashHex()); // a checksum mismatch says more
            throw new ArtifactCorruptException(manifest.BackupId, ContinuousLayout.BaseArtifact, $"{artifact.Key} is not a readable gzip'd tar: {ex.Message}");
        }
        ArtifactIntegrity.Check(manifest.BackupId, artifact, hashing.BytesRead, hashing.HashHex());
    }

    /// <summary>Downloads the plan's WAL into the WAL directory, <paramref name="jobs"/> at a time, each gunzip'd and checked against its SHA-256 first.</summary>
    public async Task DownloadWalAsync(IBackupStore store, RecoveryPlan plan, int jobs, IOperationProgress progress, CancellationToken cancellationToken)
    {
        long done = 0;
        var files = plan.HistoryFiles.Concat(plan.Segments).ToList();
        await Parallel.ForEachAsync(files, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, jobs), CancellationToken = cancellationToken }, async (wal, ct) =>
        {
            var bytes = await WalCodec.ReadVerifiedAsync(store, wal, ct);
            await File.WriteAllBytesAsync(Path.Combine(WalDirectory, wal.File.Name), bytes, ct);
            progress.Transferred("wal", Interlocked.Add(ref done, wal.StoredSize));
        });
    }

    public Task GiveToOwnerAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(Owner.ApplyAsync(DataDirectory, cancellationToken), Owner.ApplyAsync(WalDirectory, cancellationToken), Owner.ApplyAsync(ScratchDirectory, cancellationToken));

    public ValueTask DisposeAsync()
    {
        foreach (var dir in DataDirectoryTaken ? new[] { WalDirectory, ScratchDirectory } : [DataDirectory, WalDirectory, ScratchDirectory])
        {
            try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        }
        return ValueTask.CompletedTask;
    }
}
