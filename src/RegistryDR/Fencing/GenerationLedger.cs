using System.Globalization;
using System.Text.Json;
using RegistryDR.Stores;

namespace RegistryDR.Fencing;

/// <summary>One node's claim to be the writer: taken when it restores or first-boots.</summary>
public sealed record Generation(long Number, string Host, string? InstanceId, string Reason, string? RestoredFrom, DateTimeOffset TakenAt);

/// <summary>
/// The store's record of which node may write backups. Every node that restores or first-boots
/// takes the next number (<c>generations/0000000042.json</c>), created only-if-absent so two
/// nodes can never hold the same one. A node writes backups only while it holds the highest
/// number; an old node that comes back (a network partition, a zombie instance) finds a higher
/// one and stops. See docs/architecture.md for what is and is not guaranteed.
/// </summary>
public sealed class GenerationLedger(IBackupStore store, TimeProvider time)
{
    public const string Prefix = "generations/";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    private static string KeyOf(long number) => Prefix + number.ToString("D10", CultureInfo.InvariantCulture) + ".json";

    /// <summary>The highest generation in the store, or null when fencing has never been used here.</summary>
    public async Task<Generation?> CurrentAsync(CancellationToken cancellationToken)
    {
        long highest = 0;
        await foreach (var item in store.ListAsync(Prefix, cancellationToken))
        {
            var name = item.Key[Prefix.Length..];
            if (name.EndsWith(".json", StringComparison.Ordinal) &&
                long.TryParse(name[..^5], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > highest)
                highest = n;
        }
        if (highest == 0) return null;
        await using var stream = await store.OpenReadAsync(KeyOf(highest), cancellationToken);
        return await JsonSerializer.DeserializeAsync<Generation>(stream, Json, cancellationToken)
               ?? throw new InvalidDataException($"{store.Description}/{KeyOf(highest)} is empty.");
    }

    /// <summary>Takes the next generation for this node; retries when another node takes the same number first.</summary>
    public async Task<Generation> TakeNextAsync(string reason, string? instanceId, string? restoredFrom, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var current = await CurrentAsync(cancellationToken);
            var next = new Generation((current?.Number ?? 0) + 1, Environment.MachineName, instanceId, reason, restoredFrom, time.GetUtcNow());
            if (await store.TryCreateAsync(KeyOf(next.Number), JsonSerializer.SerializeToUtf8Bytes(next, Json), cancellationToken))
                return next;
        }
        throw new InvalidOperationException($"Could not take a fencing generation in {store.Description}: other nodes kept taking the next number.");
    }

    /// <summary>
    /// Null when a node holding <paramref name="held"/> may write; otherwise why not. No generation
    /// in the store means fencing is not in use yet (a node set up by hand), and anyone may write.
    /// </summary>
    public async Task<string?> WhyWritingIsRefusedAsync(long? held, CancellationToken cancellationToken)
    {
        var current = await CurrentAsync(cancellationToken);
        if (current is null || current.Number == held) return null;
        var who = $"generation {current.Number} was taken by {current.Host}{(current.InstanceId is null ? "" : " (" + current.InstanceId + ")")} at {current.TakenAt:u} ({current.Reason})";
        return held is null
            ? $"a node took over this store ({who}) and this node holds no generation; it stops writing backups"
            : held > current.Number
                ? $"this node holds generation {held} but the store's newest is {current.Number}; the store was changed behind its back, so it stops writing backups"
                : $"a newer node took over this store ({who}); this node holds generation {held} and stops writing backups";
    }
}
