using System.Globalization;

namespace RegistryDR.Backup;

/// <summary>
/// Where a backup set's objects live in the store:
/// <c>backups/&lt;id&gt;/{database.dump, globals.sql, config.tar.gz, manifest.json}</c>.
/// Ids start with the UTC start time, so they sort oldest to newest as plain strings.
/// </summary>
public static class BackupLayout
{
    public const string Root = "backups/";
    public const string DatabaseArtifact = "database";
    public const string GlobalsArtifact = "globals";
    public const string ConfigArtifact = "config";

    private const string TimeFormat = "yyyyMMdd'T'HHmmss'Z'";

    public static string SetPrefix(string backupId) => Root + backupId + "/";
    public static string ManifestKey(string backupId) => SetPrefix(backupId) + BackupManifest.FileName;

    /// <summary>Written first and removed after the manifest: says which host and process is writing the set.</summary>
    public static string InProgressKey(string backupId) => SetPrefix(backupId) + "in-progress.json";

    public static string ArtifactKey(string backupId, string artifact) => SetPrefix(backupId) + artifact switch
    {
        DatabaseArtifact => "database.dump",
        GlobalsArtifact => "globals.sql",
        ConfigArtifact => "config.tar.gz",
        _ => throw new ArgumentOutOfRangeException(nameof(artifact)),
    };

    public static string NewBackupId(DateTimeOffset now) =>
        now.UtcDateTime.ToString(TimeFormat, CultureInfo.InvariantCulture) + "-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3));

    public static bool TryParseTime(string backupId, out DateTimeOffset time)
    {
        var stamp = backupId.Split('-')[0];
        var ok = DateTime.TryParseExact(stamp, TimeFormat, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var t);
        time = ok ? new DateTimeOffset(t, TimeSpan.Zero) : default;
        return ok;
    }

    public static bool IsValidBackupId(string id) =>
        id.Length is > 17 and < 64 && TryParseTime(id, out _) && id.All(c => char.IsAsciiLetterOrDigit(c) || c == '-');
}
