using System.Text.Json;
using System.Text.Json.Serialization;
using RegistryDR.Backup;

namespace RegistryDR.Continuous;

/// <summary>
/// <c>continuous/base/&lt;id&gt;/manifest.json</c>: the last object of a base backup set, whose
/// presence makes the set complete. It says where the backup begins and ends in the WAL (so a
/// restore knows which archived WAL it needs) and what each artifact's size and SHA-256 are.
/// </summary>
public sealed record BaseBackupManifest
{
    public const int CurrentFormatVersion = 1;

    public required int FormatVersion { get; init; }
    public required string BackupId { get; init; }
    /// <summary>When pg_basebackup was started (UTC).</summary>
    public required DateTimeOffset StartedAt { get; init; }
    /// <summary>When the set was complete (UTC): after the backup's last WAL segment had been archived, so every point from here on can be restored to.</summary>
    public required DateTimeOffset CompletedAt { get; init; }
    public required string Host { get; init; }
    public required string RegistryDrVersion { get; init; }
    public required ServerInfo Server { get; init; }
    public required IReadOnlyList<BackupManifest.ConfigDirectory> ConfigDirectories { get; init; }
    public required IReadOnlyList<BackupManifest.Artifact> Artifacts { get; init; }

    /// <summary>
    /// The fencing generation the writing node held (<see cref="Fencing.GenerationLedger"/>), as in a
    /// logical set's <see cref="BackupManifest.Generation"/>; null when fencing was not in use or the
    /// base backup predates this field. Retention uses it to tell a base backup written in an older
    /// epoch after a takeover (FENCED, <see cref="Fencing.TakeoverHistory"/>) from a restorable one.
    /// </summary>
    public long? Generation { get; init; }

    /// <summary>The PostgreSQL cluster and the WAL range the backup needs (from pg_basebackup's own backup_manifest and backup_label).</summary>
    public sealed record ServerInfo
    {
        public required string ServerVersion { get; init; }
        public required string PgBaseBackupVersion { get; init; }
        /// <summary>pg_control's system identifier: WAL of any other cluster is refused.</summary>
        public required string SystemIdentifier { get; init; }
        /// <summary>WAL segment size in bytes (wal_segment_size).</summary>
        public required long WalSegmentSize { get; init; }
        public required uint Timeline { get; init; }
        /// <summary>Where replay starts (backup_label's START WAL LOCATION).</summary>
        public required string StartLsn { get; init; }
        /// <summary>Where the backup is consistent (the end of backup_manifest's WAL-Ranges): a restore must replay at least to here.</summary>
        public required string EndLsn { get; init; }
        public required uint EndTimeline { get; init; }
        /// <summary>The data directory it was taken from (for messages).</summary>
        public required string DataDirectory { get; init; }
        /// <summary>Files in the base backup (from backup_manifest).</summary>
        public required int Files { get; init; }
    }

    [JsonIgnore] public Lsn Start => Lsn.Parse(Server.StartLsn);
    [JsonIgnore] public Lsn End => Lsn.Parse(Server.EndLsn);
    [JsonIgnore] public long TotalSize => Artifacts.Sum(a => a.Size);

    public BackupManifest.Artifact Get(string name) => Artifacts.Single(a => a.Name == name);

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, BackupManifest.Json);

    /// <summary>Parses and checks a manifest read from the store; every field a restore relies on is checked here, once.</summary>
    public static BaseBackupManifest Parse(ReadOnlySpan<byte> json, string expectedBackupId)
    {
        BaseBackupManifest? m;
        try
        {
            m = JsonSerializer.Deserialize<BaseBackupManifest>(json, BackupManifest.Json);
        }
        catch (JsonException ex)
        {
            throw new InvalidManifestException(expectedBackupId, $"it is not a valid base backup manifest: {ex.Message}");
        }
        if (m is null) throw new InvalidManifestException(expectedBackupId, "it is empty (null).");
        if (m.FormatVersion != CurrentFormatVersion)
            throw new InvalidManifestException(expectedBackupId, $"its formatVersion {m.FormatVersion} is not one this registry-dr reads ({CurrentFormatVersion}).");
        if (m.BackupId != expectedBackupId)
            throw new InvalidManifestException(expectedBackupId, $"it names base backup '{m.BackupId}', not the set it is stored in.");
        var prefix = ContinuousLayout.BasePrefix(expectedBackupId);
        foreach (var a in m.Artifacts)
        {
            if (a is null) throw new InvalidManifestException(expectedBackupId, "its artifact list contains null.");
            if (a.Key is null || !a.Key.StartsWith(prefix, StringComparison.Ordinal) || a.Key.Contains("..", StringComparison.Ordinal) || a.Key.Length == prefix.Length)
                throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' has key '{a.Key}', outside its set's prefix '{prefix}'.");
            if (a.Size < 0) throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' has a negative size.");
            if (a.Sha256 is null || a.Sha256.Length != 64 || !a.Sha256.All(char.IsAsciiHexDigitLower))
                throw new InvalidManifestException(expectedBackupId, $"artifact '{a.Name}' has no valid lower-case hex SHA-256.");
        }
        foreach (var required in new[] { ContinuousLayout.BaseArtifact, ContinuousLayout.ConfigArtifact })
            if (m.Artifacts.Count(a => a.Name == required) != 1)
                throw new InvalidManifestException(expectedBackupId, $"it must list exactly one '{required}' artifact.");
        var s = m.Server;
        if (s is null) throw new InvalidManifestException(expectedBackupId, "it has no server section.");
        if (!Lsn.TryParse(s.StartLsn, out var start) || !Lsn.TryParse(s.EndLsn, out var end) || end < start)
            throw new InvalidManifestException(expectedBackupId, $"its WAL range '{s.StartLsn}'–'{s.EndLsn}' is not two positions in order.");
        if (s.WalSegmentSize < 1 << 20 || s.WalSegmentSize > 1 << 30 || (s.WalSegmentSize & (s.WalSegmentSize - 1)) != 0)
            throw new InvalidManifestException(expectedBackupId, $"its WAL segment size {s.WalSegmentSize} is not a power of two between 1 MiB and 1 GiB.");
        if (s.Timeline == 0 || s.EndTimeline < s.Timeline)
            throw new InvalidManifestException(expectedBackupId, $"its timelines {s.Timeline}–{s.EndTimeline} are not valid.");
        if (string.IsNullOrEmpty(s.SystemIdentifier) || !s.SystemIdentifier.All(char.IsAsciiDigit))
            throw new InvalidManifestException(expectedBackupId, "its system identifier is not a number.");
        try
        {
            Archive.Internal.EntryNames.ValidateRoots(m.ConfigDirectories.Select(d => new Archive.ArchiveRoot(d.Path, d.EntryPrefix)).ToList());
        }
        catch (Exception ex) when (ex is ArgumentException or NullReferenceException)
        {
            throw new InvalidManifestException(expectedBackupId, $"its config directories cannot be restored: {ex.Message}");
        }
        return m;
    }
}
