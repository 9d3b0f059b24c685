using RegistryDR.Stores;

namespace RegistryDR.Fencing;

/// <summary>
/// The store's takeovers (failovers and failbacks to another region), and the one rule that says
/// which sets they fence: a set written in an older epoch than a takeover, and newer than the set
/// that takeover restored, is history the taking region never had. Used for logical sets
/// (<see cref="Backup.RestorableSets"/>) and for continuous base backups
/// (<see cref="Continuous.ContinuousRetention"/>) alike. Both ids compared come from the old
/// region's clock, so no clock of another region is compared.
/// </summary>
public sealed class TakeoverHistory
{
    private readonly GenerationLedger _ledger;

    private TakeoverHistory(GenerationLedger ledger, IReadOnlyList<Generation> takeovers)
    {
        _ledger = ledger;
        All = takeovers;
    }

    /// <summary>Every takeover, oldest first (<see cref="GenerationLedger.TakeoversAsync"/>).</summary>
    public IReadOnlyList<Generation> All { get; }

    /// <summary>One listing of <c>generations/</c> and one small GET per takeover.</summary>
    public static async Task<TakeoverHistory> ReadAsync(IBackupStore store, CancellationToken cancellationToken)
    {
        var ledger = new GenerationLedger(store, TimeProvider.System);
        return new TakeoverHistory(ledger, await ledger.TakeoversAsync(cancellationToken));
    }

    /// <summary>
    /// The first takeover that fences the set <paramref name="backupId"/> written holding
    /// <paramref name="generation"/> (null: written without fencing, epoch 0), or null when none does.
    /// </summary>
    public Generation? FencedBy(string backupId, long? generation) => All.FirstOrDefault(t =>
        Generation.EpochOf(generation ?? 0) < t.Epoch && t.RestoredFrom is { } from && string.CompareOrdinal(backupId, from) > 0);

    /// <summary>
    /// "written by ip-10-0-1-5 holding generation 3 after ip-10-1-2-7 in region b took over at generation 1000001 from set …":
    /// the sentence <c>list</c> shows for a FENCED set. Reads the writer's generation record when there is one.
    /// </summary>
    public async Task<string> DescribeAsync(Generation takeover, string host, long? generation, CancellationToken cancellationToken)
    {
        var writer = generation is { } g ? await _ledger.ReadAsync(g, cancellationToken) : null;
        var by = writer is null
            ? $"{host}{(generation is { } n ? $" holding generation {n}" : " holding no generation")}"
            : $"{writer.Who} holding generation {writer.Number}";
        return $"written by {by} after {takeover.Who} took over at generation {takeover.Number} from set {takeover.RestoredFrom}";
    }
}
