using System.Runtime.CompilerServices;

namespace RegistryDR.Stores;

/// <summary>
/// A store on a local disk or an NFS mount. Each object is written to a temporary name beside
/// its final one (<c>&lt;key&gt;.partial-&lt;guid&gt;</c>), flushed to disk, then renamed, so a crash never
/// leaves a half-written file under a real key. The temporaries a killed process leaves are
/// listed by <see cref="ListTemporariesAsync"/> for clean-up and retention. Files are created
/// 0600 and directories 0700: the objects hold the roles' password hashes and the config's keys.
/// </summary>
public sealed class FileSystemStore : IBackupStore
{
    private const string PartialMarker = ".partial-";
    private readonly string _root;

    public FileSystemStore(string root)
    {
        _root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
    }

    public string Description => $"file://{_root}";

    public async Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken)
    {
        var path = PathFor(key);
        CreateParentDirectory(path);
        var temp = path + PartialMarker + Guid.NewGuid().ToString("N");
        try
        {
            long written;
            await using (var file = Secrets.PrivateFiles.CreateNew(temp, 1 << 20, FileOptions.Asynchronous, ModeFor(key)))
            {
                await content.CopyToAsync(file, 1 << 20, cancellationToken);
                await file.FlushAsync(cancellationToken);
                file.Flush(flushToDisk: true);
                written = file.Length;
            }
            File.Move(temp, path, overwrite: true);
            return written;
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    public Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken)
    {
        var path = PathFor(key);
        try
        {
            return Task.FromResult<Stream>(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous | FileOptions.SequentialScan));
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new StoreObjectNotFoundException(key, Description);
        }
    }

    public async IAsyncEnumerable<StoreItem> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await Task.Yield();
        if (!Directory.Exists(_root)) yield break;
        // Start from the deepest directory the prefix names, so listing one set does not walk them all.
        var lastSlash = prefix.LastIndexOf('/');
        var startDir = lastSlash < 0 ? _root : Path.Combine(_root, prefix[..lastSlash]);
        if (!Directory.Exists(startDir)) yield break;
        foreach (var file in Directory.EnumerateFiles(startDir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var key = Path.GetRelativePath(_root, file).Replace(Path.DirectorySeparatorChar, '/');
            if (!key.StartsWith(prefix, StringComparison.Ordinal) || key.Contains(PartialMarker, StringComparison.Ordinal)) continue;
            var info = new FileInfo(file);
            if (!info.Exists) continue; // deleted while listing
            yield return new StoreItem(key, info.Length, info.LastWriteTimeUtc);
        }
    }

    public async IAsyncEnumerable<StoreTemporary> ListTemporariesAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await Task.Yield();
        if (!Directory.Exists(_root)) yield break;
        var lastSlash = prefix.LastIndexOf('/');
        var startDir = lastSlash < 0 ? _root : Path.Combine(_root, prefix[..lastSlash]);
        if (!Directory.Exists(startDir)) yield break;
        foreach (var file in Directory.EnumerateFiles(startDir, "*" + PartialMarker + "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var id = Path.GetRelativePath(_root, file).Replace(Path.DirectorySeparatorChar, '/');
            var marker = id.LastIndexOf(PartialMarker, StringComparison.Ordinal);
            var key = id[..marker];
            if (!key.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var info = new FileInfo(file);
            if (!info.Exists) continue; // renamed into place or deleted while listing
            yield return new StoreTemporary(key, id, info.Length, info.LastWriteTimeUtc);
        }
    }

    public Task DeleteTemporaryAsync(StoreTemporary temporary, CancellationToken cancellationToken)
    {
        if (!temporary.Id.Contains(PartialMarker, StringComparison.Ordinal))
            throw new ArgumentException($"'{temporary.Id}' is not a temporary file of {Description}.", nameof(temporary));
        return DeleteAsync(temporary.Id, cancellationToken);
    }

    public Task DeleteAsync(string key, CancellationToken cancellationToken)
    {
        var path = PathFor(key);
        TryDelete(path);
        // Remove directories the delete left empty, up to the root, so pruned sets leave no husks.
        var dir = Path.GetDirectoryName(path);
        while (dir is not null && dir.Length > _root.Length && Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any())
        {
            try { Directory.Delete(dir); } catch (IOException) { break; }
            dir = Path.GetDirectoryName(dir);
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// Writes a temporary file, then hard-links it to the key: link(2) fails if the key exists,
    /// atomically, also on NFS, so exactly one of two racing nodes wins.
    /// </summary>
    public async Task<bool> TryCreateAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        var path = PathFor(key);
        CreateParentDirectory(path);
        var temp = path + PartialMarker + Guid.NewGuid().ToString("N");
        try
        {
            await using (var file = Secrets.PrivateFiles.CreateNew(temp, mode: ModeFor(key)))
            {
                await file.WriteAsync(content, cancellationToken);
                file.Flush(flushToDisk: true);
            }
            return Internal.PosixLink.TryLink(temp, path);
        }
        finally
        {
            TryDelete(temp);
        }
    }

    public bool CreateIsAtomic => true;

    /// <summary>Proves the directory exists and takes a file: writes a probe file and removes it. Never creates the directory.</summary>
    public Task CheckAccessAsync(CancellationToken cancellationToken)
    {
        RequireRoot();
        var probe = Path.Combine(_root, ".registry-dr-probe" + PartialMarker + Guid.NewGuid().ToString("N"));
        try
        {
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new StoreUnavailableException($"Store:Url {Description} is not writable: permission denied on {_root} (RegistryDR runs as {Environment.UserName}; check the directory's owner and mode, or the NFS export's options).", ex);
        }
        catch (IOException ex) when (ex.HResult == ReadOnlyFileSystem || ex.Message.Contains("Read-only file system", StringComparison.OrdinalIgnoreCase))
        {
            throw new StoreUnavailableException($"Store:Url {Description} is not writable: {_root} is on a read-only file system (check how it is mounted: `findmnt -T {_root}`).", ex);
        }
        catch (IOException ex)
        {
            throw new StoreUnavailableException($"Store:Url {Description} is not writable: {ex.Message}", ex);
        }
        return Task.CompletedTask;
    }

    private const int ReadOnlyFileSystem = 30; // EROFS

    /// <summary>
    /// Creates the directories below the store's root that a key needs, never the root itself: a
    /// missing root is an unmounted file system or a wrong Store:Url, and creating it would put
    /// backups on whatever disk is underneath.
    /// </summary>
    private void CreateParentDirectory(string path)
    {
        RequireRoot();
        var directory = Path.GetDirectoryName(path)!;
        if (Directory.Exists(directory)) return;
        // 0700: sets hold the database's data. The directories of the objects that hold no secret
        // (HoldsNoSecret) are 0755, so PostgreSQL's user can reach them in continuous mode.
        Directory.CreateDirectory(directory, HoldsNoSecret(Path.GetRelativePath(_root, path).Replace('\\', '/'))
            ? Secrets.PrivateFiles.ReadableDirectoryMode : Secrets.PrivateFiles.DirectoryMode);
    }

    /// <summary>
    /// The objects another local user must read: the store marker, fencing generations and the
    /// continuous archive's cluster identity. In continuous mode PostgreSQL's archive_command
    /// (registry-dr wal-push) runs as the server's user and checks all three before it stores a
    /// WAL file. None holds a secret; everything else (sets, WAL) is 0600.
    /// </summary>
    internal static bool HoldsNoSecret(string key) =>
        key == StoreMarker.Key || key.StartsWith(Fencing.GenerationLedger.Prefix, StringComparison.Ordinal) || key == Continuous.ContinuousLayout.ClusterKey;

    private static UnixFileMode ModeFor(string key) =>
        HoldsNoSecret(key) ? Secrets.PrivateFiles.ReadableFileMode : Secrets.PrivateFiles.FileMode;

    private void RequireRoot()
    {
        if (Directory.Exists(_root)) return;
        throw new StoreUnavailableException(File.Exists(_root)
            ? $"Store:Url {Description}: {_root} is a file, not a directory."
            : $"Store:Url {Description}: the directory {_root} does not exist (it is never created implicitly: is the file system mounted? `registry-dr init-store` creates a new store).");
    }

    private string PathFor(string key)
    {
        StoreKeys.Validate(key);
        return Path.Combine(_root, key.Replace('/', Path.DirectorySeparatorChar));
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
