using System.Runtime.CompilerServices;
using System.Text.Json.Serialization;
using RegistryDR.Stores;

namespace RegistryDR.Backup;

/// <summary>What a set is good for, judged from the store listing and its manifest alone.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<SetCondition>))]
public enum SetCondition
{
    /// <summary>The manifest parses and validates and every artifact it lists is in the store with the listed size.</summary>
    Restorable,
    /// <summary>No manifest: a backup that failed, was cancelled, is still running, or whose manifest has not replicated yet.</summary>
    Incomplete,
    /// <summary>The manifest is there but does not parse or validate (corrupt, truncated, hostile).</summary>
    ManifestInvalid,
    /// <summary>The manifest lists artifacts that are missing or have another size (not replicated yet, deleted, replaced).</summary>
    ArtifactsMissing,
    /// <summary>
    /// Written in an older fencing epoch after a takeover (a failover or failback to another
    /// region): newer than the set the takeover restored, so it is history the taking region
    /// never had (a recovered or zombie node of the old region, or its late replicas).
    /// </summary>
    Fenced,
    /// <summary>
    /// <c>verify</c>, a drill or a restore read it back and found an artifact whose bytes are
    /// wrong (<see cref="CorruptionRecord"/>); a <c>verify</c> that passes clears it.
    /// </summary>
    Corrupt,
}

/// <summary>One set and its <see cref="SetCondition"/>, with why it is not restorable.</summary>
/// <param name="Problem">Null when restorable; otherwise one sentence naming what is wrong (the first missing artifacts, the manifest's error).</param>
public sealed record SetJudgement(BackupSetInfo Set, SetCondition Condition, string? Problem)
{
    public string BackupId => Set.BackupId;

    public bool IsRestorable => Condition == SetCondition.Restorable;

    /// <summary>How <c>list</c> shows it: <c>complete</c>, <c>INCOMPLETE</c>, <c>MANIFEST INVALID</c>, <c>MISSING 3 ARTIFACTS</c>.</summary>
    public string Label { get; init; } = Condition switch
    {
        SetCondition.Restorable => "complete",
        SetCondition.Incomplete => "INCOMPLETE",
        SetCondition.ManifestInvalid => "MANIFEST INVALID",
        SetCondition.Fenced => "FENCED",
        SetCondition.Corrupt => "CORRUPT",
        _ => "ARTIFACTS MISSING",
    };

    /// <summary>"20261122T021500Z-3fa9c1 (MISSING 1 ARTIFACT: backups/…/database.dump is not in the store)".</summary>
    public string Describe() => Problem is null ? $"{BackupId} ({Label})" : $"{BackupId} ({Label}: {Problem})";
}

/// <summary>The newest restorable set, and the newer sets passed over on the way, each with why.</summary>
/// <param name="Sets">Every set in the store, newest first, as listed (not judged).</param>
public sealed record RestorableSelection(SetJudgement? Newest, IReadOnlyList<SetJudgement> Skipped, IReadOnlyList<BackupSetInfo> Sets)
{
    /// <summary>"skipped newer sets: A (INCOMPLETE), B (MANIFEST INVALID: …)", or null when none were.</summary>
    public string? SkippedSentence => Skipped.Count == 0 ? null
        : $"{Skipped.Count} newer set(s) are not restorable and were passed over: {string.Join("; ", Skipped.Select(s => s.Describe()))}";
}

/// <summary>
/// The one definition of "restorable", and the one selection of the newest restorable set, used
/// by <c>status</c>, <c>list</c>, <c>restore latest</c>, <c>verify latest</c>, <c>drill latest</c>,
/// the worker's catch-up and the bootstrap agent.
/// </summary>
/// <remarks>
/// A set is restorable only when its manifest parses and validates (<see cref="BackupManifest.Parse"/>),
/// every artifact it lists exists in the store with the size it lists, and no read-back has found
/// its bytes wrong (<see cref="CorruptionRecord"/>). A manifest alone is not
/// enough: S3 replication copies each object on its own and late (a large one can take hours
/// without Replication Time Control), so in a replica bucket a manifest can arrive before its
/// artifacts; and a manifest that is corrupt must not be vouched for. It stays cheap: one listing
/// for the sizes and one small GET per manifest judged, no artifact is downloaded. Whether the
/// bytes are right (SHA-256, pg_restore --list) stays <c>verify</c>'s and the restore's job.
/// <para>Across regions: a set whose manifest names a generation of an older epoch than a takeover
/// (<see cref="Fencing.Generation.IsTakeover"/>) and whose id is newer than the set that takeover
/// restored is <see cref="SetCondition.Fenced"/>, never restorable: the taking region's history
/// forks at the set it restored. Both ids come from the old region's clock, so no clock of
/// another region is compared.</para>
/// </remarks>
public sealed class RestorableSets(IBackupStore store)
{
    public IBackupStore Store => store;

    /// <summary>
    /// Every set, newest first, each judged when it is reached (so a caller that stops at the first
    /// restorable one reads no older manifest). Store failures are thrown, not turned into verdicts.
    /// </summary>
    public async IAsyncEnumerable<SetJudgement> JudgeAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var (sets, objects, takeovers) = await ListObjectsAsync(cancellationToken);
        var catalog = new BackupCatalog(store);
        foreach (var set in sets)
            yield return await JudgeAsync(catalog, set, objects, takeovers, store, cancellationToken);
    }

    /// <summary>Every set, newest first, judged.</summary>
    public async Task<IReadOnlyList<SetJudgement>> ListAsync(CancellationToken cancellationToken)
    {
        var all = new List<SetJudgement>();
        await foreach (var judgement in JudgeAsync(cancellationToken)) all.Add(judgement);
        return all;
    }

    /// <summary>
    /// The newest restorable set (null when there is none) and every newer one passed over, with
    /// why. Manifests older than the newest restorable set are not read.
    /// </summary>
    public async Task<RestorableSelection> SelectNewestAsync(CancellationToken cancellationToken)
    {
        var (sets, objects, takeovers) = await ListObjectsAsync(cancellationToken);
        var catalog = new BackupCatalog(store);
        var skipped = new List<SetJudgement>();
        foreach (var set in sets)
        {
            var judgement = await JudgeAsync(catalog, set, objects, takeovers, store, cancellationToken);
            if (judgement.IsRestorable) return new RestorableSelection(judgement, skipped, sets);
            skipped.Add(judgement);
        }
        return new RestorableSelection(null, skipped, sets);
    }

    private async Task<(IReadOnlyList<BackupSetInfo> Sets, Dictionary<string, long> Objects, Fencing.TakeoverHistory Takeovers)> ListObjectsAsync(CancellationToken cancellationToken)
    {
        var takeovers = await Fencing.TakeoverHistory.ReadAsync(store, cancellationToken);
        var items = new List<StoreItem>();
        await foreach (var item in store.ListAsync(BackupLayout.Root, cancellationToken)) items.Add(item);
        var objects = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var item in items) objects[item.Key] = item.Size;
        return (BackupCatalog.Group(items), objects, takeovers);
    }

    /// <summary>
    /// The complete sets among <paramref name="judgements"/> that are never restored, by id, with the
    /// label <c>list</c> shows (FENCED, CORRUPT): what <see cref="Retention.RetentionPlanner.Plan"/>
    /// takes as its unrestorable sets, for logical sets and continuous base backups alike.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Unrestorable(IEnumerable<SetJudgement> judgements) =>
        judgements.Where(j => j.Condition is SetCondition.Fenced or SetCondition.Corrupt).ToDictionary(j => j.BackupId, j => j.Label, StringComparer.Ordinal);

    /// <summary>
    /// The id "latest" (or null) stands for: the newest restorable set, with the newer ones passed
    /// over; any other id is returned as it is (a named set is judged by the restore or verify
    /// itself, which names the artifact that is wrong). Throws <see cref="BackupNotFoundException"/>
    /// saying why each set was passed over when nothing is restorable.
    /// </summary>
    public async Task<RestorableSelection> ResolveLatestAsync(CancellationToken cancellationToken)
    {
        var selection = await SelectNewestAsync(cancellationToken);
        if (selection.Newest is null)
            throw new BackupNotFoundException(selection.Sets.Count == 0
                ? $"There are no backups in {store.Description}."
                : !selection.Sets.Any(s => s.IsComplete)
                    ? $"There is no complete backup in {store.Description} ({selection.Sets.Count} incomplete set(s), which are never restored)."
                    : $"There is no restorable backup in {store.Description}: {string.Join("; ", selection.Skipped.Select(s => s.Describe()))}.");
        return selection;
    }

    private static async Task<SetJudgement> JudgeAsync(BackupCatalog catalog, BackupSetInfo set, Dictionary<string, long> objects, Fencing.TakeoverHistory takeovers, IBackupStore store, CancellationToken cancellationToken)
    {
        if (!set.IsComplete) return new SetJudgement(set, SetCondition.Incomplete, "it has no manifest");
        BackupManifest manifest;
        try
        {
            manifest = await catalog.ReadManifestAsync(set.BackupId, cancellationToken);
        }
        catch (StoreObjectNotFoundException)
        {
            return new SetJudgement(set, SetCondition.Incomplete, "its manifest was deleted while it was being read");
        }
        catch (InvalidManifestException ex)
        {
            return new SetJudgement(set, SetCondition.ManifestInvalid, ex.Message);
        }
        if (takeovers.FencedBy(set.BackupId, manifest.Generation) is { } takeover)
            return new SetJudgement(set, SetCondition.Fenced, await takeovers.DescribeAsync(takeover, manifest.Host, manifest.Generation, cancellationToken));
        // Known bad bytes: found once by reading the set back, never tried again as "latest".
        if (objects.ContainsKey(CorruptionRecord.Key(set.BackupId)) && await CorruptionRecord.ReadAsync(store, set.BackupId, cancellationToken) is { } finding)
            return new SetJudgement(set, SetCondition.Corrupt,
                (finding.FoundAt == default ? finding.Problem : $"{finding.By} found at {SetFormat.Time(finding.FoundAt)}: {finding.Problem}") +
                $" (a `registry-dr verify {set.BackupId}` that passes clears this)");
        var missing = new List<string>();
        var wrongSize = new List<string>();
        foreach (var artifact in manifest.Artifacts)
        {
            if (!objects.TryGetValue(artifact.Key, out var size)) missing.Add(artifact.Key);
            else if (size != artifact.Size) wrongSize.Add($"{artifact.Key} is {size} bytes, the manifest says {artifact.Size}");
        }
        if (missing.Count == 0 && wrongSize.Count == 0) return new SetJudgement(set, SetCondition.Restorable, null);
        var bad = missing.Count + wrongSize.Count;
        var problems = missing.Select(k => $"{k} is not in the store").Concat(wrongSize).ToList();
        var shown = string.Join(", ", problems.Take(3)) + (problems.Count > 3 ? $" and {problems.Count - 3} more" : "");
        return new SetJudgement(set, SetCondition.ArtifactsMissing, $"{bad} of its {manifest.Artifacts.Count} artifacts are missing or not whole yet: {shown}")
        {
            Label = $"MISSING {bad} ARTIFACT{(bad == 1 ? "" : "S")}",
        };
    }
}
