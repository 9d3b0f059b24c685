using System.Globalization;
using System.Text.Json;
using RegistryDR.Stores;

namespace RegistryDR.Fencing;

/// <summary>One node's claim to be the writer: taken when it restores or first-boots.</summary>
public sealed record Generation(long Number, string Host, string? InstanceId, string Reason, string? RestoredFrom, DateTimeOffset TakenAt)
{
    /// <summary>A random token the taking node also records in its node state first, so it can recognise its own generation after a crash.</summary>
    public string? Claim { get; init; }

    /// <summary>The AWS region of the taking node (Agent:Region or instance metadata); null when unknown.</summary>
    public string? Region { get; init; }

    /// <summary>
    /// How many generation numbers one epoch spans. A number is <c>epoch × EpochSpan + sequence</c>
    /// (sequence ≥ 1), so comparing numbers compares (epoch, sequence): a takeover (a failover to
    /// another region) starts a new epoch, and nothing taken in an older epoch, however many times,
    /// ever reaches it. Stores from before epochs are epoch 0.
    /// </summary>
    public const long EpochSpan = 1_000_000;

    /// <summary>The epoch of generation <paramref name="number"/>.</summary>
    public static long EpochOf(long number) => number / EpochSpan;

    /// <summary>The epoch this generation belongs to (a failover to another region starts one).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public long Epoch => EpochOf(Number);

    /// <summary>True for the generation that opened its epoch: a takeover.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsTakeover => Number > EpochSpan && Number % EpochSpan == 1;

    /// <summary>"ip-10-0-1-5 (i-0abc) in region eu-west-1"; without the parts that are unknown.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string Who => $"{Host}{(InstanceId is null ? "" : " (" + InstanceId + ")")}{(Region is null ? "" : " in region " + Region)}";
}

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

    private async Task<List<long>> NumbersAsync(CancellationToken cancellationToken)
    {
        var numbers = new List<long>();
        await foreach (var item in store.ListAsync(Prefix, cancellationToken))
        {
            var name = item.Key[Prefix.Length..];
            if (name.EndsWith(".json", StringComparison.Ordinal) &&
                long.TryParse(name[..^5], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0)
                numbers.Add(n);
        }
        return numbers;
    }

    /// <summary>The highest generation in the store, or null when fencing has never been used here.</summary>
    public async Task<Generation?> CurrentAsync(CancellationToken cancellationToken)
    {
        var highest = (await NumbersAsync(cancellationToken)).DefaultIfEmpty(0).Max();
        if (highest == 0) return null;
        await using var stream = await store.OpenReadAsync(KeyOf(highest), cancellationToken);
        return await JsonSerializer.DeserializeAsync<Generation>(stream, Json, cancellationToken)
               ?? throw new InvalidDataException($"{store.Description}/{KeyOf(highest)} is empty.");
    }

    /// <summary>
    /// Every takeover in the store (the generation that opened each epoch above 0), oldest first.
    /// One listing and one small GET per takeover; a takeover whose record is not readable yet (a
    /// replica on its way) is left out until it is.
    /// </summary>
    public async Task<IReadOnlyList<Generation>> TakeoversAsync(CancellationToken cancellationToken)
    {
        var takeovers = new List<Generation>();
        foreach (var n in (await NumbersAsync(cancellationToken)).Where(n => n > Generation.EpochSpan && n % Generation.EpochSpan == 1).Order())
            if (await ReadAsync(n, cancellationToken) is { } g) takeovers.Add(g);
        return takeovers;
    }

    /// <summary>The generation <paramref name="number"/>, or null when the store has none by that number.</summary>
    public async Task<Generation?> ReadAsync(long number, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = await store.OpenReadAsync(KeyOf(number), cancellationToken);
            return await JsonSerializer.DeserializeAsync<Generation>(stream, Json, cancellationToken);
        }
        catch (StoreObjectNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// The generation a node with <paramref name="state"/> holds: its recorded one, or the one it
    /// was taking when it stopped (<see cref="Agent.NodeState.PendingGeneration"/>) if the store
    /// has it with this node's claim. Reads the store only when a take was left pending; writes nothing.
    /// </summary>
    public async Task<long?> HeldAsync(Agent.NodeState? state, CancellationToken cancellationToken)
    {
        if (state is { PendingGeneration: { } pending, PendingClaim: { } claim } &&
            (await ReadAsync(pending, cancellationToken))?.Claim == claim)
            return pending;
        return state?.Generation;
    }

    /// <summary>
    /// Takes the next generation and records it in the node state file as one step, at the moment
    /// the node changes hands. The order makes every crash window safe: (1) the node state records
    /// the generation as pending, with a random claim, fsync'd; (2) the generation is created in
    /// the store, carrying the claim; (3) the node state records it as held. A crash after (1)
    /// leaves a pending claim the store does not have (the node keeps its old generation); after
    /// (2) one the store has with this claim, which <see cref="HeldAsync"/> counts as held. So a
    /// node never publishes a generation it cannot prove is its own, and never loses one it published.
    /// </summary>
    /// <param name="stateFile">Agent:StateFile. A node without one gets a <see cref="Agent.NodeStatus.Manual"/> state holding the generation.</param>
    /// <param name="region">The taking node's AWS region, recorded in the generation; null when unknown.</param>
    /// <param name="takeOver">
    /// A takeover (a failover or failback to another region): open a new epoch, above every
    /// generation this store has and this node holds, so that nothing the previous region writes
    /// later in its own epoch (directly or through replication) is ever newer. Otherwise the next
    /// number in the current epoch — unless the store's newest generation was taken in another
    /// region than <paramref name="region"/> (both known): a node that takes over a store another
    /// region wrote last (a failback, after that region's sets were copied back) is a takeover too,
    /// whatever its role (docs/runbook.md, "Fail back").
    /// </param>
    public async Task<Generation> TakeAndRecordAsync(string stateFile, string reason, string? instanceId, string? restoredFrom, CancellationToken cancellationToken,
        string? region = null, bool takeOver = false)
    {
        var recorded = Agent.NodeStateFile.Read(stateFile);
        var held = await HeldAsync(recorded, cancellationToken);
        var baseline = (recorded ?? new Agent.NodeState(Agent.NodeStatus.Manual, time.GetUtcNow(), null, instanceId,
                "no restore recorded on this node before it took a fencing generation"))
            with { Generation = held, PendingGeneration = null, PendingClaim = null };
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var current = await CurrentAsync(cancellationToken);
            var fromAnotherRegion = !takeOver && IsFromAnotherRegion(current, region);
            var next = new Generation(NextNumber(Math.Max(current?.Number ?? 0, held ?? 0), takeOver || fromAnotherRegion), Environment.MachineName, instanceId,
                fromAnotherRegion ? $"takeover from region {current!.Region} ({reason})" : reason, restoredFrom, time.GetUtcNow())
            {
                Claim = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)),
                Region = region,
            };
            Agent.NodeStateFile.Write(stateFile, baseline with { PendingGeneration = next.Number, PendingClaim = next.Claim });
            if (!await store.TryCreateAsync(KeyOf(next.Number), JsonSerializer.SerializeToUtf8Bytes(next, Json), cancellationToken))
                continue; // another node took that number first; the next attempt replaces the pending claim
            Agent.NodeStateFile.Write(stateFile, baseline with { Generation = next.Number, At = time.GetUtcNow() });
            return next;
        }
        throw new InvalidOperationException($"Could not take a fencing generation in {store.Description}: other nodes kept taking the next number.");
    }

    /// <summary>True when <paramref name="current"/> was taken in a region, and it is not <paramref name="region"/>.</summary>
    public static bool IsFromAnotherRegion(Generation? current, string? region) =>
        region is not null && current?.Region is { } theirs && !string.Equals(theirs, region, StringComparison.Ordinal);

    private long NextNumber(long highest, bool takeOver)
    {
        if (takeOver) return (Generation.EpochOf(highest) + 1) * Generation.EpochSpan + 1;
        var next = highest + 1;
        // A number that would open the next epoch is a takeover's alone (a million restores in one epoch never happens).
        if (next % Generation.EpochSpan == 0)
            throw new InvalidOperationException($"Epoch {Generation.EpochOf(highest)} of {store.Description} has no generation number left; take over (a new epoch) instead.");
        return next;
    }

    /// <summary>Takes the next generation for this node; retries when another node takes the same number first.</summary>
    public async Task<Generation> TakeNextAsync(string reason, string? instanceId, string? restoredFrom, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var current = await CurrentAsync(cancellationToken);
            var next = new Generation(NextNumber(current?.Number ?? 0, takeOver: false), Environment.MachineName, instanceId, reason, restoredFrom, time.GetUtcNow());
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
        var who = $"generation {current.Number} was taken by {current.Who} at {current.TakenAt:u} ({current.Reason})";
        return held is null
            ? $"a node took over this store ({who}) and this node holds no generation; it stops writing backups"
            : held > current.Number
                ? $"this node holds generation {held} but the store's newest is {current.Number}; the store was changed behind its back, so it stops writing backups"
                : $"a newer node took over this store ({who}); this node holds generation {held} and stops writing backups";
    }
}
