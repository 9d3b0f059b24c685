using System.Text.Json;
using System.Text.Json.Serialization;

namespace RegistryDR.Backup;

/// <summary>
/// The last object written to a backup set: its presence is what makes the set complete.
/// Everything restore needs to check and rebuild the node is here.
/// </summary>
public sealed record BackupManifest
{
    /// <summary>
    /// 2 added <see cref="TableData"/>; 3 added the database's own properties
    /// (<see cref="PostgresInfo.Properties"/>), so that a registry-dr that would silently restore
    /// without them refuses such a set. Sets of format 1 (one pg_dump archive) and 2 are still read
    /// and restored (without database properties, as they were taken). 4 added each table-data
    /// artifact's codec (<see cref="Artifact.Compression"/>, zstd by default), so that a
    /// registry-dr that would take zstd ranges for gzip refuses such a set.
    /// </summary>
    public const int CurrentFormatVersion = 4;
    public const int OldestReadableFormatVersion = 1;
    public const string FileName = "manifest.json";

    public required int FormatVersion { get; init; }
    public required string BackupId { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public required DateTimeOffset CompletedAt { get; init; }
    public required string Host { get; init; }
    public required string RegistryDrVersion { get; init; }
    public required PostgresInfo Postgres { get; init; }
    public required IReadOnlyList<ConfigDirectory> ConfigDirectories { get; init; }
    public required IReadOnlyList<Artifact> Artifacts { get; init; }

    /// <summary>Row counts per table taken in pg_dump's own snapshot; checked after every restore and drill.</summary>
    public FingerprintInfo? Fingerprint { get; init; }

    /// <summary>
    /// The fencing generation the writing node held (<see cref="Fencing.GenerationLedger"/>); null
    /// when fencing was not in use or the set predates this field. <see cref="RestorableSets"/>
    /// uses it to pass over a set written in an older epoch after a takeover (FENCED).
    /// </summary>
    public long? Generation { get; init; }

    /// <summary>Why this set looks suspicious (empty database, far smaller than the previous set); empty when it does not.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>
    /// Tables whose rows are not in the pg_dump archive but in block-range artifacts (binary
    /// COPY, compressed as each artifact's <see cref="Artifact.Compression"/> says), loaded between the archive's pre-data and post-data sections. Empty when the
    /// archive holds everything.
    /// </summary>
    public IReadOnlyList<TableData> SplitTables { get; init; } = [];

    public long TotalSize => Artifacts.Sum(a => a.Size);

    /// <summary>The bytes of the database itself: the pg_dump archive and the block ranges of split tables.</summary>
    public long DatabaseSize => DatabaseBytes(Artifacts);

    internal static long DatabaseBytes(IEnumerable<Artifact> artifacts) => artifacts.Where(a => BackupLayout.IsDatabaseArtifact(a.Name)).Sum(a => a.Size);

    public Artifact? Find(string name) => Artifacts.FirstOrDefault(a => a.Name == name);

    public sealed record PostgresInfo
    {
        public required string ServerVersion { get; init; }
        public required string PgDumpVersion { get; init; }
        public required string Database { get; init; }
        public required string Owner { get; init; }
        public required string Encoding { get; init; }
        public required string Collate { get; init; }
        public required string Ctype { get; init; }
        /// <summary>pg_dump's archive format: "custom".</summary>
        public required string DumpFormat { get; init; }
        /// <summary>
        /// What belongs to the database itself (settings, privileges, connection limit, comment,
        /// tablespace, locale provider...), applied to the restored database before it is swapped
        /// in. Null in sets of format 1 and 2.
        /// </summary>
        public Postgres.DatabaseProperties? Properties { get; init; }
    }

    public sealed record FingerprintInfo
    {
        public required IReadOnlyDictionary<string, long> RowCounts { get; init; }
    }

    public sealed record TableData
    {
        public required string Schema { get; init; }
        public required string Name { get; init; }
        /// <summary>The columns in the order the ranges hold them (generated columns excluded).</summary>
        public required IReadOnlyList<string> Columns { get; init; }
        /// <summary>The names of the artifacts holding the table's block ranges.</summary>
        public required IReadOnlyList<string> Ranges { get; init; }
    }

    public sealed record ConfigDirectory
    {
        public required string Path { get; init; }
        public required string EntryPrefix { get; init; }
    }

    public sealed record Artifact
    {
        /// <summary>"database", "globals" or "config".</summary>
        public required string Name { get; init; }
        /// <summary>The object's key, relative to the store root; always inside the set's own prefix.</summary>
        public required string Key { get; init; }
        public required long Size { get; init; }
        /// <summary>Lower-case hex SHA-256 of the stored bytes.</summary>
        public required string Sha256 { get; init; }
        /// <summary>
        /// The config artifact only: what the archive could not hold, one entry per kind (sockets,
        /// FIFOs, hard links to names outside the directories…); empty when everything was kept.
        /// Absent in sets written before registry-dr recorded it, and for other artifacts.
        /// </summary>
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public IReadOnlyList<NotKeptEntry>? NotKept { get; init; }

        /// <summary>
        /// Table-data artifacts only: the codec of the stored bytes, <c>"zstd"</c> or <c>"gzip"</c>
        /// (<see cref="ArtifactCompression"/>). Absent in sets of format 1–3, whose ranges are gzip
        /// (<see cref="RangeCompression"/>), and for other artifacts.
        /// </summary>
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public string? Compression { get; init; }

        /// <summary>The codec of a table-data artifact: its recorded one, gzip when none is recorded.</summary>
        [JsonIgnore]
        public string RangeCompression => Compression ?? ArtifactCompression.Gzip;
    }

    /// <summary>One kind of entry a backup could not keep: how many, and the first few paths.</summary>
    public sealed record NotKeptEntry
    {
        /// <summary>What was not kept, as a singular noun phrase ("socket", "FIFO").</summary>
        public required string Kind { get; init; }
        public required long Count { get; init; }
        /// <summary>Up to five of the paths, non-printable characters escaped (\xNN).</summary>
        public IReadOnlyList<string> Examples { get; init; } = [];
    }

    /// <summary>
    /// One line per kind the config archive could not keep ("socket (2): '/a', '/b'"), for verify
    /// and the restore plan; empty when everything was kept or the set predates the record.
    /// </summary>
    public IReadOnlyList<string> DescribeNotKept() =>
        Find(BackupLayout.ConfigArtifact)?.NotKept?.Select(n =>
            Archive.UnsafeArchiveException.Printable($"{n.Kind} ({n.Count}): {string.Join(", ", n.Examples.Select(e => $"'{e}'"))}{(n.Count > n.Examples.Count ? ", …" : "")}")).ToList() ?? [];

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
        RespectRequiredConstructorParameters = true,
        RespectNullableAnnotations = true,
    };

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    /// <summary>
    /// Parses and checks a manifest read from the store. A manifest is input from a bucket that
    /// others might write to, so every field a restore relies on is checked here, once.
    /// </summary>
    public static BackupManifest Parse(ReadOnlySpan<byte> json, string expectedBackupId)
    {
        BackupManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<BackupManifest>(json, Json);
        }
        catch (JsonException ex)
        {
            throw new InvalidManifestException(expectedBackupId, $"it is not a valid manifest: {ex.Message}");
        }
        if (manifest is null) throw new InvalidManifestException(expectedBackupId, "it is empty (null).");
        if (manifest.FormatVersion is < OldestReadableFormatVersion or > CurrentFormatVersion)
            throw new InvalidManifestException(expectedBackupId, $"its formatVersion {manifest.FormatVersion} is not one this registry-dr reads ({OldestReadableFormatVersion}–{CurrentFormatVersion}).");
        if (manifest.BackupId != expectedBackupId)
            throw new InvalidManifestException(expectedBackupId, $"it names backup '{manifest.BackupId}', not the set it is stored in.");
        var setPrefix = BackupLayout.SetPrefix(expectedBackupId);
        long totalSize = 0;
        foreach (var a in manifest.Artifacts)
        {
            // RespectNullableAnnotations covers properties, not list elements: "artifacts": [null]
            // reached the checks below as a NullReferenceException (found by the fuzz tests).
            if (a is null)
                throw new InvalidManifestException(expectedBackupId, "its artifact list contains null.");
            // The key must also be one the stores accept ("backups/<id>//x", "backups/<id>/./x",
            // a backslash or a NUL passed here and then failed the download with ArgumentException).
            if (a.Key is null || !a.Key.StartsWith(setPrefix, StringComparison.Ordinal) || a.Key.Contains("..", StringComparison.Ordinal) || a.Key.Length == setPrefix.Length || !IsStoreKey(a.Key))
                throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' has key '{a.Key}', outside its set's prefix '{setPrefix}'.");
            if (a.Size < 0)
                throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' has a negative size.");
            // TotalSize adds the sizes up for the restore plan; sizes whose sum is not a long made
            // it throw OverflowException after Parse had accepted them (found by the fuzz tests).
            if (a.Size > long.MaxValue - totalSize)
                throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' makes the sizes add up to more than {long.MaxValue} bytes.");
            totalSize += a.Size;
            if (a.Sha256 is null || a.Sha256.Length != 64 || !a.Sha256.All(char.IsAsciiHexDigitLower))
                throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' has no valid lower-case hex SHA-256.");
            if (a.Compression is { } compression && (a.Name is null || !BackupLayout.IsTableDataArtifact(a.Name) || !ArtifactCompression.IsKnown(compression)))
                throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' says it is compressed with '{compression}': only table-data artifacts record a codec, and this registry-dr reads '{ArtifactCompression.Zstd}' and '{ArtifactCompression.Gzip}'.");
            if (a.NotKept is { } notKept && (a.Name != BackupLayout.ConfigArtifact || notKept.Any(n => n is null || string.IsNullOrEmpty(n.Kind) || n.Count < 1 || n.Examples is null || n.Examples.Any(e => e is null))))
                throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' has a 'notKept' list that is not one of non-empty kinds, positive counts and example paths on the config artifact.");
        }
        foreach (var required in new[] { BackupLayout.DatabaseArtifact, BackupLayout.GlobalsArtifact, BackupLayout.ConfigArtifact })
            if (manifest.Artifacts.Count(a => a.Name == required) != 1)
                throw new InvalidManifestException(expectedBackupId, $"it must list exactly one '{required}' artifact.");
        CheckSplitTables(manifest, expectedBackupId);
        if (manifest.Postgres?.Properties?.Problem() is { } problem)
            throw new InvalidManifestException(expectedBackupId, $"its database properties are invalid: {problem}.");
        if (manifest.Fingerprint is { } fp && (fp.RowCounts is null || fp.RowCounts.Any(kv => string.IsNullOrEmpty(kv.Key) || kv.Value < 0)))
            throw new InvalidManifestException(expectedBackupId, "its fingerprint has an empty table name or a negative row count.");
        if (manifest.Fingerprint?.RowCounts is { } counts && counts.Values.Aggregate(0m, (sum, n) => sum + n) > long.MaxValue)
            throw new InvalidManifestException(expectedBackupId, "its fingerprint's row counts add up to more than a 64-bit count.");
        foreach (var d in manifest.ConfigDirectories)
            if (d is null || d.Path is null || !System.IO.Path.IsPathFullyQualified(d.Path) || d.EntryPrefix is null || d.EntryPrefix.Length == 0 || d.EntryPrefix.StartsWith('/') || d.EntryPrefix.Split('/').Contains(".."))
                throw new InvalidManifestException(expectedBackupId, $"config directory '{d?.Path}' / '{d?.EntryPrefix}' is not an absolute path with a relative entry prefix.");
        // Restore and verification turn these into archive roots, whose rules are stricter than
        // the loop above: "/", "//x", "/a/./b", a trailing '/', a NUL, overlapping directories or
        // an empty list passed here and then failed mid-restore with ArgumentException (and a null
        // entry with NullReferenceException; found by the fuzz tests). Check them once, here.
        try
        {
            Archive.Internal.EntryNames.ValidateRoots(manifest.ConfigDirectories.Select(d => new Archive.ArchiveRoot(d.Path, d.EntryPrefix)).ToList());
        }
        catch (ArgumentException ex)
        {
            throw new InvalidManifestException(expectedBackupId, $"its config directories cannot be restored: {ex.Message}");
        }
        return manifest;
    }

    /// <summary>
    /// Split tables name their columns in SQL (quoted) and their ranges by artifact: every range
    /// must be a table-data artifact of this set, used once, and every table-data artifact used.
    /// </summary>
    private static void CheckSplitTables(BackupManifest manifest, string backupId)
    {
        if (manifest.SplitTables.Count > 0 && manifest.FormatVersion < 2)
            throw new InvalidManifestException(backupId, "it lists split tables but its formatVersion is 1.");
        var dataArtifacts = manifest.Artifacts.Where(a => a.Name is not null && BackupLayout.IsTableDataArtifact(a.Name)).Select(a => a.Name).ToList();
        if (dataArtifacts.Distinct(StringComparer.Ordinal).Count() != dataArtifacts.Count)
            throw new InvalidManifestException(backupId, "it lists a table-data artifact twice.");
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in manifest.SplitTables)
        {
            if (t is null || !IsIdentifier(t.Schema) || !IsIdentifier(t.Name))
                throw new InvalidManifestException(backupId, "a split table has an empty or invalid schema or name.");
            if (t.Columns is null || t.Columns.Count == 0 || !t.Columns.All(IsIdentifier))
                throw new InvalidManifestException(backupId, $"split table {t.Schema}.{t.Name} has no columns or an invalid column name.");
            if (t.Ranges is null || t.Ranges.Count == 0)
                throw new InvalidManifestException(backupId, $"split table {t.Schema}.{t.Name} has no ranges.");
            foreach (var range in t.Ranges)
                if (range is null || !dataArtifacts.Contains(range, StringComparer.Ordinal) || !used.Add(range))
                    throw new InvalidManifestException(backupId, $"split table {t.Schema}.{t.Name} names range '{range}', which is not one of its set's unused table-data artifacts.");
        }
        if (used.Count != dataArtifacts.Count)
            throw new InvalidManifestException(backupId, "it lists a table-data artifact that no split table uses.");
    }

    // PostgreSQL identifiers: 1–63 bytes, no NUL (everything else is quoted when used).
    private static bool IsIdentifier(string? name) =>
        !string.IsNullOrEmpty(name) && !name.Contains('\0') && System.Text.Encoding.UTF8.GetByteCount(name) <= 63;

    private static bool IsStoreKey(string key)
    {
        try
        {
            Stores.StoreKeys.Validate(key);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

public sealed class InvalidManifestException(string backupId, string reason)
    : Exception($"The manifest of backup {backupId} is refused: {reason}");
