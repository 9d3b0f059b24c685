using System.Text.Json;

namespace RegistryDR.Stores;

/// <summary>
/// <c>registry-dr-store.json</c> at the root of a store: written once by <c>registry-dr init-store</c>
/// (or by the bootstrap agent's first boot with <c>Agent:AllowFirstBoot</c>), and required by every
/// later operation. Without it an unmounted NFS mount point (an empty local directory) or a
/// mistyped bucket or prefix would look like an empty store, and backups would quietly land on the
/// local disk or in the wrong place. See docs/architecture.md, "The store marker".
/// </summary>
public static class StoreMarker
{
    public const string Key = "registry-dr-store.json";
    public const int CurrentFormat = 1;

    /// <summary>What the marker says: the store layout's format, when and where it was created, and how.</summary>
    /// <param name="CreatedBy">"init-store", "first boot", or "adopted" (a store with backups from before markers existed).</param>
    public sealed record Contents(int Format, DateTimeOffset CreatedAt, string Host, string CreatedBy);

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>What a store holds besides the marker, to tell a new store from a wrong one.</summary>
    public sealed record Survey(Contents? Marker, bool HasBackups, int OtherObjects)
    {
        public bool IsEmpty => Marker is null && !HasBackups && OtherObjects == 0;
    }

    /// <summary>Reads the marker, and when there is none looks for RegistryDR's own prefixes (<c>backups/</c>, <c>generations/</c>) and anything else.</summary>
    public static async Task<Survey> SurveyAsync(IBackupStore store, CancellationToken cancellationToken)
    {
        var marker = await ReadAsync(store, cancellationToken);
        if (marker is not null) return new Survey(marker, false, 0);
        var hasBackups = await AnyAsync(store, Backup.BackupLayout.Root, cancellationToken) || await AnyAsync(store, Fencing.GenerationLedger.Prefix, cancellationToken);
        var others = 0;
        if (!hasBackups)
        {
            await foreach (var item in store.ListAsync("", cancellationToken))
                if (++others >= 10) break;
        }
        return new Survey(null, hasBackups, others);
    }

    /// <summary>The marker, or null when the store has none. A marker that is not ours is an error (<see cref="StoreNotInitializedException"/>).</summary>
    public static async Task<Contents?> ReadAsync(IBackupStore store, CancellationToken cancellationToken)
    {
        byte[] bytes;
        try
        {
            await using var stream = await store.OpenReadAsync(Key, cancellationToken);
            using var buffer = new MemoryStream();
            await stream.CopyToAsync(buffer, cancellationToken);
            bytes = buffer.ToArray();
        }
        catch (StoreObjectNotFoundException)
        {
            return null;
        }
        catch (Exception ex) when (ex is DirectoryNotFoundException or FileNotFoundException)
        {
            return null;
        }
        try
        {
            var contents = JsonSerializer.Deserialize<Contents>(bytes, Json);
            if (contents is { Format: >= 1 }) return contents;
        }
        catch (JsonException)
        {
        }
        throw new StoreNotInitializedException($"{store.Description} has a {Key} that RegistryDR cannot read: it was not written by RegistryDR, or is damaged. Check Store:Url.");
    }

    /// <summary>
    /// Writes the marker unless one is there (created only-if-absent, so two nodes cannot both
    /// initialise). Returns the marker now in the store and whether this call wrote it.
    /// </summary>
    public static async Task<(Contents marker, bool written)> WriteAsync(IBackupStore store, string createdBy, TimeProvider time, CancellationToken cancellationToken)
    {
        var contents = new Contents(CurrentFormat, time.GetUtcNow(), Environment.MachineName, createdBy);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(contents, Json);
        bool written;
        try
        {
            written = await store.TryCreateAsync(Key, bytes, cancellationToken);
        }
        catch (NotSupportedException)
        {
            await store.PutAsync(Key, new MemoryStream(bytes, writable: false), cancellationToken);
            written = true;
        }
        return written ? (contents, true) : (await ReadAsync(store, cancellationToken) ?? contents, false);
    }

    private static async Task<bool> AnyAsync(IBackupStore store, string prefix, CancellationToken cancellationToken)
    {
        await foreach (var _ in store.ListAsync(prefix, cancellationToken)) return true;
        return false;
    }
}

/// <summary>
/// The store has no <see cref="StoreMarker"/>: it was never initialised, or <c>Store:Url</c> does
/// not point where it should (an unmounted file system, a wrong bucket or prefix). The message
/// says what to check and the command that initialises a new store.
/// </summary>
public sealed class StoreNotInitializedException(string message) : Exception(message);
