using System.Formats.Tar;
using System.IO.Compression;
using RegistryDR.Backup;
using RegistryDR.Progress;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Continuous.Internal;

/// <summary>
/// The directories a point-in-time restore or drill builds before anything on the node changes:
/// one private directory beside the live data directory (same file system, so the swap is a
/// rename), <see cref="Root"/>, holding the restored data directory as <c>tree</c> (the staged tree of
/// a <see cref="Restore.Internal.DirectorySwap"/>, like an extracted config directory) and the
/// verified WAL it replays as <c>wal</c>, all owned by the data directory's owner; and a private
/// directory in /tmp for the rehearsal server's socket, configuration and log. Disposing removes
/// what is left (the data directory, once swapped into place, is no longer inside).
/// </summary>
internal sealed class RecoveryStaging : IAsyncDisposable
{
    private RecoveryStaging(string root, string scratchDirectory, FileOwner owner)
    {
        Root = root;
        ScratchDirectory = scratchDirectory;
        Owner = owner;
    }

    /// <summary><c>.&lt;data directory&gt;.registry-dr-&lt;purpose&gt;-&lt;tag&gt;</c> beside the live data directory, 0700.</summary>
    public string Root { get; }
    public string DataDirectory => Path.Combine(Root, "tree");
    public string WalDirectory => Path.Combine(Root, "wal");
    public string ScratchDirectory { get; }
    public FileOwner Owner { get; }

    public static async Task<RecoveryStaging> CreateAsync(string liveDataDirectory, string purpose, CancellationToken cancellationToken)
    {
        var live = Path.TrimEndingDirectorySeparator(Path.GetFullPath(liveDataDirectory));
        var parent = Path.GetDirectoryName(live)!;
        var name = Path.GetFileName(live);
        Directory.CreateDirectory(parent);
        var owner = await FileOwner.OfAsync(Directory.Exists(live) ? live : parent, cancellationToken);
        var tag = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3));
        var root = Path.Combine(parent, $".{name}.registry-dr-{purpose}-{tag}");
        // The socket path must stay under 108 bytes, so the rehearsal's private directory is in /tmp.
        var scratch = Directory.CreateTempSubdirectory("rdr-pitr-").FullName;
        Secrets.PrivateFiles.CreateNewDirectory(root);
        var staging = new RecoveryStaging(root, scratch, owner);
        foreach (var dir in new[] { staging.DataDirectory, staging.WalDirectory })
            Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(scratch, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return staging;
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
        Task.WhenAll(Owner.ApplyAsync(Root, cancellationToken), Owner.ApplyAsync(ScratchDirectory, cancellationToken));

    public ValueTask DisposeAsync()
    {
        foreach (var dir in new[] { Root, ScratchDirectory })
        {
            try { Archive.Internal.UnixFileSystem.DeleteTree(dir); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        }
        return ValueTask.CompletedTask;
    }
}
