using System.Globalization;

namespace RegistryDR.Backup;

/// <summary>
/// Where a backup set's objects live in the store:
/// <c>backups/&lt;id&gt;/{database.dump, globals.sql, config.tar.gz, manifest.json}</c>, plus
/// <c>backups/&lt;id&gt;/data/&lt;table&gt;-&lt;range&gt;.copy.zst</c> (<c>.copy.gz</c> in sets before
/// format 4, or with <c>Database:RangeCompression</c> gzip) for the block ranges of split tables.
/// Ids start with the UTC start time to the millisecond (ISO 8601 basic format,
/// <c>20261201T013705.123Z-3fa9c1</c>), so they sort oldest to newest as plain strings: two sets
/// started in the same second (a final backup right after a scheduled one, two operators' runs)
/// still sort by their start. Ids written before 2026-12 have whole seconds
/// (<c>20261122T021500Z-3fa9c1</c>) and are still read; only against a new id of the same second
/// does one sort out of order.
/// </summary>
public static class BackupLayout
{
    public const string Root = "backups/";
    public const string DatabaseArtifact = "database";
    public const string GlobalsArtifact = "globals";
    public const string ConfigArtifact = "config";

    private const string TimeFormat = "yyyyMMdd'T'HHmmss'.'fff'Z'";

    /// <summary>Every form an id's time has had: the current one first.</summary>
    private static readonly string[] TimeFormats = [TimeFormat, "yyyyMMdd'T'HHmmss'Z'"];

    public static string SetPrefix(string backupId) => Root + backupId + "/";
    public static string ManifestKey(string backupId) => SetPrefix(backupId) + BackupManifest.FileName;

    /// <summary>Written first and removed after the manifest: says which host and process is writing the set.</summary>
    public static string InProgressKey(string backupId) => SetPrefix(backupId) + InProgressFileName;

    public const string InProgressFileName = "in-progress.json";

    /// <param name="compression">For table-data artifacts, their codec (<see cref="ArtifactCompression"/>): it gives the extension.</param>
    public static string ArtifactKey(string backupId, string artifact, string compression = ArtifactCompression.Gzip) => SetPrefix(backupId) + artifact switch
    {
        DatabaseArtifact => "database.dump",
        GlobalsArtifact => "globals.sql",
        ConfigArtifact => "config.tar.gz",
        _ when IsTableDataArtifact(artifact) => "data/" + artifact[TableDataPrefix.Length..] + ".copy" + ArtifactCompression.Extension(compression),
        _ => throw new ArgumentOutOfRangeException(nameof(artifact)),
    };

    private const string TableDataPrefix = "data-";

    /// <summary>The artifact holding block range <paramref name="range"/> of split table <paramref name="table"/>: a compressed binary COPY.</summary>
    public static string TableDataArtifact(int table, int range) =>
        string.Create(CultureInfo.InvariantCulture, $"{TableDataPrefix}{table:D4}-{range:D5}");

    /// <summary>The artifacts that hold the database: the pg_dump archive and the split tables' block ranges.</summary>
    public static bool IsDatabaseArtifact(string artifact) => artifact == DatabaseArtifact || IsTableDataArtifact(artifact);

    public static bool IsTableDataArtifact(string artifact) =>
        artifact.StartsWith(TableDataPrefix, StringComparison.Ordinal) && artifact.Length > TableDataPrefix.Length &&
        artifact.AsSpan(TableDataPrefix.Length).IndexOfAnyExcept("0123456789-") < 0 && !artifact.EndsWith('-');

    public static string NewBackupId(DateTimeOffset now) =>
        now.UtcDateTime.ToString(TimeFormat, CultureInfo.InvariantCulture) + "-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3));

    public static bool TryParseTime(string backupId, out DateTimeOffset time)
    {
        var stamp = backupId.Split('-')[0];
        var ok = DateTime.TryParseExact(stamp, TimeFormats, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var t);
        time = ok ? new DateTimeOffset(t, TimeSpan.Zero) : default;
        return ok;
    }

    /// <summary>
    /// For each of <paramref name="fileNames"/> (records such as <c>verified.json</c>), the ids of
    /// the sets that hold one directly under their prefix: one listing, no record read.
    /// </summary>
    /// <param name="root">Where the sets are: <see cref="Root"/> (logical sets) or <c>continuous/base/</c> (base backups, <see cref="Continuous.ContinuousLayout.BaseRoot"/>).</param>
    public static async Task<Dictionary<string, HashSet<string>>> ReadRecordIdsAsync(Stores.IBackupStore store, IReadOnlyList<string> fileNames, CancellationToken cancellationToken, string root = Root)
    {
        var ids = fileNames.ToDictionary(f => f, _ => new HashSet<string>(StringComparer.Ordinal), StringComparer.Ordinal);
        await foreach (var item in store.ListAsync(root, cancellationToken))
        {
            var rest = item.Key.AsSpan(root.Length);
            var slash = rest.IndexOf('/');
            if (slash <= 0 || !ids.TryGetValue(rest[(slash + 1)..].ToString(), out var into)) continue;
            var id = rest[..slash].ToString();
            if (IsValidBackupId(id)) into.Add(id);
        }
        return ids;
    }

    public static bool IsValidBackupId(string id) =>
        id.Length is > 17 and < 64 && TryParseTime(id, out _) && id.IndexOf('-') is var dash and > 0 &&
        id.AsSpan(dash).IndexOfAnyExcept(IdSuffixCharacters) < 0;

    // The time stamp is validated by parsing it; what follows it is the random suffix.
    private static readonly System.Buffers.SearchValues<char> IdSuffixCharacters =
        System.Buffers.SearchValues.Create("-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
}
