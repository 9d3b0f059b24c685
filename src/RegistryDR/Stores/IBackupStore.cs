namespace RegistryDR.Stores;

/// <summary>
/// Where backup sets live: an S3 bucket prefix or a local/NFS directory. Keys are relative to
/// the store's root and use '/' separators. Implementations stream: a put never holds a whole
/// artifact in memory, and an object only becomes visible once it is completely written.
/// </summary>
public interface IBackupStore
{
    /// <summary>Where this store points, for messages (never carries credentials).</summary>
    string Description { get; }

    /// <summary>Writes <paramref name="content"/> (read to its end, possibly non-seekable) to <paramref name="key"/>. Returns the bytes written.</summary>
    Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken);

    /// <summary>Opens an object for reading. Throws <see cref="StoreObjectNotFoundException"/> when it is absent.</summary>
    Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken);

    /// <summary>Every object whose key starts with <paramref name="prefix"/>, in no particular order.</summary>
    IAsyncEnumerable<StoreItem> ListAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>Deletes an object; deleting an absent object is not an error.</summary>
    Task DeleteAsync(string key, CancellationToken cancellationToken);

    /// <summary>Proves the store can be reached, listed and written (a probe object, removed again); throws <see cref="StoreUnavailableException"/> naming Store:Url and the reason otherwise.</summary>
    Task CheckAccessAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Creates <paramref name="key"/> only if it does not exist yet; false when it already does.
    /// Used for fencing generations, where two nodes must never both win. See
    /// <see cref="CreateIsAtomic"/> for whether the store can promise that.
    /// </summary>
    Task<bool> TryCreateAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken);

    /// <summary>Whether <see cref="TryCreateAsync"/> is atomic against a concurrent writer (documented per store).</summary>
    bool CreateIsAtomic { get; }

    /// <summary>
    /// The temporary objects a put leaves while it runs (and for good, if its process is killed)
    /// whose final key starts with <paramref name="prefix"/>: the file store's partial files, S3's
    /// multipart uploads neither completed nor aborted. <see cref="ListAsync"/> never shows them
    /// (they are not objects yet); clean-up and retention find them here. A store that makes no
    /// temporaries has none to list.
    /// </summary>
    IAsyncEnumerable<StoreTemporary> ListTemporariesAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>Removes a temporary (deletes the partial file, aborts the upload); one already gone is not an error.</summary>
    Task DeleteTemporaryAsync(StoreTemporary temporary, CancellationToken cancellationToken);
}

public sealed record StoreItem(string Key, long Size, DateTimeOffset LastModified);

/// <summary>
/// A temporary object: <paramref name="Key"/> is the key it was going to become, <paramref name="Id"/>
/// what the store needs to remove it (the partial file's key, the upload id), <paramref name="Bytes"/>
/// what it occupies when the store knows (the partial file's size; null for an S3 upload).
/// </summary>
public sealed record StoreTemporary(string Key, string Id, long? Bytes, DateTimeOffset Started);

/// <summary>The store could not be reached or refused the request. The message says which store and why, never with credentials.</summary>
public sealed class StoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

public sealed class StoreObjectNotFoundException(string key, string store) : Exception($"'{key}' does not exist in {store}.")
{
    public string Key { get; } = key;
}

internal static class StoreKeys
{
    /// <summary>Refuses keys that could escape the store's root on a filesystem or confuse a listing.</summary>
    public static void Validate(string key)
    {
        if (string.IsNullOrEmpty(key) || key.StartsWith('/') || key.Contains('\\') || key.Contains('\0') ||
            key.Split('/').Any(s => s is "" or "." or ".."))
            throw new ArgumentException($"Invalid store key '{key}'.", nameof(key));
    }
}
