using System.Globalization;

namespace RegistryDR.Continuous;

/// <summary>Where a point-in-time restore goes: the end of the archived WAL, or a moment.</summary>
public sealed record RecoveryTarget(DateTimeOffset? Time)
{
    public static readonly RecoveryTarget Latest = new((DateTimeOffset?)null);
    public bool IsLatest => Time is null;

    /// <summary>"latest", or a UTC time in ISO 8601 (e.g. <c>2026-11-22T02:17:00Z</c>); a time without an offset is taken as UTC.</summary>
    public static RecoveryTarget Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Equals("latest", StringComparison.OrdinalIgnoreCase)) return Latest;
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var t))
            return new RecoveryTarget(t.ToUniversalTime());
        throw new FormatException($"'--to {text}' is neither 'latest' nor a UTC time such as 2026-11-22T02:17:00Z.");
    }

    public override string ToString() => Time is { } t ? t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture) : "latest";
}

/// <summary>
/// What a point-in-time restore will use: one base backup, the archived WAL from its start along
/// the target timeline, and every timeline history file. <see cref="Segments"/> are in replay order.
/// </summary>
public sealed record RecoveryPlan(
    BaseBackupManifest Base,
    RecoveryTarget Target,
    uint TargetTimeline,
    IReadOnlyList<WalObject> Segments,
    IReadOnlyList<WalObject> HistoryFiles,
    IReadOnlyList<string> SkippedBases)
{
    public long WalStoredBytes => Segments.Sum(s => s.StoredSize) + HistoryFiles.Sum(h => h.StoredSize);
    public long WalBytes => Segments.Count * Base.Server.WalSegmentSize;
    public WalObject? LastSegment => Segments.Count == 0 ? null : Segments[^1];

    /// <summary>
    /// The moment the restored database will reflect: the target time, or for "latest" the time the
    /// newest segment of the chain was archived (every transaction committed before it is in it).
    /// </summary>
    public DateTimeOffset ResultingPoint => Target.Time ?? LastSegment?.ArchivedAt ?? Base.CompletedAt;
}

/// <summary>The archive cannot give what was asked; the message says what is missing and what can be done instead.</summary>
public sealed class RecoveryPlanException(string message) : Exception(message);

/// <summary>
/// Chooses the base backup and the WAL for a target, the way PostgreSQL's recovery will read
/// them (<c>XLogFileReadAnyTLI</c>): each segment comes from the newest timeline of the target's
/// history that had begun by then. Pure: the same inputs give the same plan, so the dry run shows
/// exactly what the restore will download.
/// </summary>
public static class RecoveryPlanner
{
    /// <summary>
    /// Clock skew allowed between the database server (whose clock stamps commits) and the store
    /// (whose clock stamps objects): WAL archived up to this long after a target time is fetched too.
    /// </summary>
    public static readonly TimeSpan ClockSkewMargin = TimeSpan.FromMinutes(10);

    /// <param name="bases">Complete base backups' manifests, any order; those that fail are skipped in favour of older ones.</param>
    /// <param name="histories">Parsed timeline history files by timeline.</param>
    public static RecoveryPlan Plan(
        IReadOnlyList<BaseBackupManifest> bases, IReadOnlyList<WalObject> wal, IReadOnlyDictionary<uint, IReadOnlyList<TimelineSwitch>> histories,
        RecoveryTarget target, string? baseId = null)
    {
        if (bases.Count == 0) throw new RecoveryPlanException("There is no complete base backup in the store, so there is nothing to replay WAL onto.");
        var ordered = bases.OrderByDescending(b => b.BackupId, StringComparer.Ordinal).ToList();
        if (baseId is not null)
        {
            ordered = ordered.Where(b => b.BackupId == baseId).ToList();
            if (ordered.Count == 0) throw new RecoveryPlanException($"Base backup '{baseId}' is not a complete base backup in the store; `registry-dr list` shows them.");
        }
        if (target.Time is { } t)
        {
            var usable = ordered.Where(b => b.CompletedAt <= t).ToList();
            if (usable.Count == 0)
                throw new RecoveryPlanException($"No base backup was complete by {target}: the oldest, {ordered[^1].BackupId}, completed at {ordered[^1].CompletedAt:u}. A restore can go back no further.");
            ordered = usable;
        }
        var newestTimeline = Math.Max(histories.Keys.DefaultIfEmpty(0u).Max(), ordered.Max(b => b.Server.EndTimeline));
        var segments = wal.Where(w => w.File.Kind == WalFileKind.Segment).GroupBy(w => w.File.Name, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        var skipped = new List<string>();
        RecoveryPlanException? first = null;
        foreach (var b in ordered)
        {
            try
            {
                return PlanFrom(b, segments, wal, histories, newestTimeline, target) with { SkippedBases = skipped };
            }
            catch (RecoveryPlanException ex)
            {
                first ??= ex;
                skipped.Add($"{b.BackupId}: {ex.Message}");
            }
        }
        throw first!;
    }

    private static RecoveryPlan PlanFrom(
        BaseBackupManifest b, Dictionary<string, List<WalObject>> segments, IReadOnlyList<WalObject> wal,
        IReadOnlyDictionary<uint, IReadOnlyList<TimelineSwitch>> histories, uint targetTimeline, RecoveryTarget target)
    {
        var size = b.Server.WalSegmentSize;
        // The target timeline's ancestry, oldest first, each with the segment where it began.
        var lineage = new List<(uint Timeline, ulong BeginSegment, Lsn? LeftAt)>();
        if (targetTimeline == b.Server.Timeline || !histories.TryGetValue(targetTimeline, out var switches))
        {
            if (targetTimeline != b.Server.Timeline && targetTimeline != b.Server.EndTimeline)
                throw new RecoveryPlanException($"timeline {targetTimeline} is the newest, but its history file {WalFileName.HistoryName(targetTimeline)} is not in the store, so base backup {b.BackupId} (timeline {b.Server.Timeline}) cannot be followed onto it.");
            lineage.Add((targetTimeline, 0, null));
        }
        else
        {
            ulong begin = 0;
            foreach (var s in switches)
            {
                lineage.Add((s.Parent, begin, s.SwitchPoint));
                begin = s.SwitchPoint.Segment(size);
            }
            lineage.Add((targetTimeline, begin, null));
            var own = lineage.FindIndex(l => l.Timeline == b.Server.Timeline);
            if (own < 0)
                throw new RecoveryPlanException($"its timeline {b.Server.Timeline} is not an ancestor of the newest timeline {targetTimeline}.");
            if (lineage[own].LeftAt is { } left && left < b.End)
                throw new RecoveryPlanException($"timeline {targetTimeline} left its timeline {b.Server.Timeline} at {left}, before the base backup was consistent ({b.End}).");
        }

        var startSegment = b.Start.Segment(size);
        var endSegment = b.End.Segment(size);
        var chain = new List<WalObject>();
        var cutoff = target.Time is { } t ? t + ClockSkewMargin : (DateTimeOffset?)null;
        for (var s = startSegment; ; s++)
        {
            var timeline = lineage.Last(l => l.BeginSegment <= s).Timeline;
            var name = WalFileName.SegmentName(timeline, s, size);
            if (!segments.TryGetValue(name, out var copies))
            {
                if (s <= endSegment)
                    throw new RecoveryPlanException($"WAL segment {name}, which it needs to become consistent (its WAL runs {b.Start} to {b.End}), is not in the store.");
                CheckNoGap(name, s, lineage, segments, size);
                break;
            }
            if (copies.Select(c => c.Sha256).Distinct().Count() > 1)
                throw new RecoveryPlanException($"the store holds {copies.Count} different copies of WAL segment {name} ({string.Join(", ", copies.Select(c => c.Key))}); two servers wrote the same timeline, and which one is right cannot be told.");
            chain.Add(copies[0]);
            if (cutoff is { } c && copies[0].ArchivedAt > c && s >= endSegment) break;
        }
        if (target.Time is { } when && chain[^1].ArchivedAt < when)
            throw new RecoveryPlanException(
                $"the newest archived WAL on its timeline, {chain[^1].File.Name}, was archived at {chain[^1].ArchivedAt:u}, before {target}: WAL written after that has not reached the store, so {target} cannot be restored to exactly. `--to latest` restores everything archived.");
        var historyFiles = wal.Where(w => w.File.Kind == WalFileKind.History && lineage.Any(l => l.Timeline == w.File.Timeline)).ToList();
        return new RecoveryPlan(b, target, targetTimeline, chain, historyFiles, []);
    }

    /// <summary>
    /// Recovery stops at the first missing segment, silently. When WAL exists beyond it on the same
    /// line (segments the target's history would read; a left timeline's segments after it branched
    /// off are not on it), that WAL can never be replayed: refuse and say so, rather than restore less than the
    /// store seems to hold.
    /// </summary>
    private static void CheckNoGap(string missing, ulong at, List<(uint Timeline, ulong BeginSegment, Lsn? LeftAt)> lineage, Dictionary<string, List<WalObject>> segments, long size)
    {
        var later = segments.Values.Select(c => c[0])
            .Where(w => w.File.SegmentNumber(size) > at && lineage.Last(l => l.BeginSegment <= w.File.SegmentNumber(size)).Timeline == w.File.Timeline)
            .Select(w => w.File.Name).Order(StringComparer.Ordinal).Take(3).ToList();
        if (later.Count > 0)
            throw new RecoveryPlanException($"WAL segment {missing} is missing from the store, but later WAL is there ({string.Join(", ", later)}{(later.Count == 3 ? ", …" : "")}): recovery cannot replay past the gap. Restore to a time before {missing} was written, or find the missing segment.");
    }
}
