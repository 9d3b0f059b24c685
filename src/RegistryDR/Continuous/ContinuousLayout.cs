using RegistryDR.Backup;

namespace RegistryDR.Continuous;

/// <summary>
/// Where continuous protection keeps its objects in the store, beside (never inside) the logical
/// sets under <c>backups/</c>:
/// <code>
/// continuous/cluster.json                     the PostgreSQL cluster (system identifier) this archive belongs to
/// continuous/base/&lt;id&gt;/in-progress.json      written first, removed after the manifest
/// continuous/base/&lt;id&gt;/base.tar.gz           pg_basebackup's tar (backup_manifest included), gzip'd
/// continuous/base/&lt;id&gt;/config.tar.gz         the config directories, as in a logical set
/// continuous/base/&lt;id&gt;/manifest.json         written last: the set is complete only with it
/// continuous/base/&lt;id&gt;/verified.json         written by a successful verify or drill
/// continuous/wal/&lt;file&gt;-&lt;sha256&gt;.gz         every archived WAL file, gzip'd; the SHA-256 is of the file itself
/// </code>
/// Base backup ids have the logical sets' form (UTC start time and six hex digits). A WAL object's
/// key names the SHA-256 of the file PostgreSQL archived, so the bytes of a segment can be
/// checked by anyone with <c>gunzip</c> and <c>sha256sum</c>, and two different files with the
/// same name can never share a key.
/// </summary>
public static class ContinuousLayout
{
    public const string Root = "continuous/";
    public const string BaseRoot = Root + "base/";
    public const string WalRoot = Root + "wal/";
    public const string ClusterKey = Root + "cluster.json";

    public const string BaseArtifact = "base";
    public const string ConfigArtifact = "config";

    public static string BasePrefix(string backupId) => BaseRoot + backupId + "/";
    /// <summary>A base backup's manifest, named as a logical set's.</summary>
    public const string ManifestFileName = BackupManifest.FileName;
    public static string ManifestKey(string backupId) => BasePrefix(backupId) + ManifestFileName;
    public static string InProgressKey(string backupId) => BasePrefix(backupId) + "in-progress.json";
    public static string VerifiedKey(string backupId) => BasePrefix(backupId) + Retention.VerificationRecord.FileName;
    public static string BaseKey(string backupId) => BasePrefix(backupId) + "base.tar.gz";
    public static string ConfigKey(string backupId) => BasePrefix(backupId) + "config.tar.gz";

    /// <summary>The object holding WAL file <paramref name="name"/> whose (uncompressed) SHA-256 is <paramref name="sha256"/>.</summary>
    public static string WalKey(string name, string sha256) => WalRoot + name + "-" + sha256 + ".gz";

    /// <summary>The listing prefix of every stored copy of WAL file <paramref name="name"/> (normally one).</summary>
    public static string WalNamePrefix(string name) => WalRoot + name + "-";

    /// <summary>Parses a key under <see cref="WalRoot"/>; false for anything that is not a WAL object.</summary>
    public static bool TryParseWalKey(string key, out WalFileName? name, out string sha256)
    {
        name = null;
        sha256 = "";
        if (!key.StartsWith(WalRoot, StringComparison.Ordinal) || !key.EndsWith(".gz", StringComparison.Ordinal)) return false;
        var rest = key.AsSpan(WalRoot.Length, key.Length - WalRoot.Length - 3);
        var dash = rest.LastIndexOf('-');
        if (dash <= 0 || rest.Length - dash - 1 != 64) return false;
        var hash = rest[(dash + 1)..];
        foreach (var c in hash)
            if (!char.IsAsciiHexDigitLower(c)) return false;
        if (!WalFileName.TryParse(rest[..dash].ToString(), out name)) return false;
        sha256 = hash.ToString();
        return true;
    }

    public static bool IsValidBackupId(string id) => BackupLayout.IsValidBackupId(id);
}
