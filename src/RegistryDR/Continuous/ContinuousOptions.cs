using System.Text.Json.Serialization;
using RegistryDR.Configuration;

namespace RegistryDR.Continuous;

/// <summary>How the database is protected (<c>Database:Mode</c>).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<DatabaseMode>))]
public enum DatabaseMode
{
    /// <summary>pg_dump sets on the schedule (the default): portable, restorable by hand with pg_restore; the recovery point is the newest set.</summary>
    Logical,
    /// <summary>
    /// Physical base backups (pg_basebackup) on the schedule plus continuous WAL archiving
    /// (<c>archive_command = registry-dr wal-push %p</c>): the recovery point is the newest archived
    /// WAL, at most <see cref="ContinuousOptions.ArchiveTimeout"/> behind on a quiet registry, and
    /// a restore can go to any moment since the oldest kept base backup. The whole PostgreSQL
    /// cluster (its data directory) is protected and restored.
    /// </summary>
    Continuous,
}

/// <summary>
/// The <c>Continuous</c> section: what continuous protection (<c>Database:Mode</c> = <c>Continuous</c>)
/// needs to know about the PostgreSQL server on this node. Ignored in logical mode.
/// </summary>
public sealed class ContinuousOptions
{
    /// <summary>
    /// The server's data directory (<c>SHOW data_directory</c>), e.g. <c>/var/lib/pgsql/data</c>.
    /// A restore builds the restored one beside it (same file system) and swaps it in. Required.
    /// </summary>
    public string? DataDirectory { get; set; }

    /// <summary>
    /// The longest a quiet server may keep WAL before archiving it: PostgreSQL's
    /// <c>archive_timeout</c>, which must be set on the server to this or less (each base backup
    /// checks, and refuses with the <c>ALTER SYSTEM</c> line to run otherwise). It bounds the recovery
    /// point of a registry that writes little. Default 1 minute; 1 s – 1 hour.
    /// </summary>
    public TimeSpan ArchiveTimeout { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>argv that stops the PostgreSQL server, e.g. <c>["systemctl","stop","postgresql"]</c>. Required: a restore swaps the data directory while the server is stopped.</summary>
    public List<string> ServerStopCommand { get; set; } = [];

    /// <summary>argv that starts it again, e.g. <c>["systemctl","start","postgresql"]</c>. Required.</summary>
    public List<string> ServerStartCommand { get; set; } = [];

    /// <summary>How long a stop or start command may take, and how long restore waits for the started server to accept connections. Default 5 minutes.</summary>
    public TimeSpan ServerTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long the rehearsal server of a restore or drill may take to replay the WAL and promote. Default 2 hours.</summary>
    public TimeSpan RecoveryTimeout { get; set; } = TimeSpan.FromHours(2);

    /// <summary>How long pg_basebackup may run, including its wait for the backup's last WAL segment to be archived. Default 2 hours.</summary>
    public TimeSpan BaseBackupTimeout { get; set; } = TimeSpan.FromHours(2);

    /// <summary>gzip level (0–9) of base backups and archived WAL, compressed by RegistryDR. Default 1.</summary>
    public int CompressionLevel { get; set; } = 1;

    /// <summary>Adds one message per problem to <paramref name="errors"/>, each naming its key; nothing is checked in logical mode.</summary>
    public static void Validate(RegistryDrOptions options, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(errors);
        if (!Enum.IsDefined(options.Database.Mode))
            errors.Add($"Database:Mode '{options.Database.Mode}' must be Logical or Continuous.");
        if (options.Database.Mode != DatabaseMode.Continuous) return;
        var c = options.Continuous;
        if (string.IsNullOrWhiteSpace(c.DataDirectory) || !Path.IsPathFullyQualified(c.DataDirectory))
            errors.Add($"Continuous:DataDirectory '{c.DataDirectory}' must be the PostgreSQL server's data directory, an absolute path (SHOW data_directory), when Database:Mode is Continuous.");
        else if (Path.TrimEndingDirectorySeparator(Path.GetFullPath(c.DataDirectory)) == "/")
            errors.Add("Continuous:DataDirectory must not be the root directory.");
        if (c.ArchiveTimeout < TimeSpan.FromSeconds(1) || c.ArchiveTimeout > TimeSpan.FromHours(1))
            errors.Add($"Continuous:ArchiveTimeout is {c.ArchiveTimeout}; it must be between 00:00:01 and 01:00:00 (PostgreSQL's archive_timeout).");
        if (c.ServerStopCommand.Count == 0 || c.ServerStopCommand.Any(string.IsNullOrEmpty))
            errors.Add("Continuous:ServerStopCommand must be the argv that stops PostgreSQL, e.g. [\"systemctl\", \"stop\", \"postgresql\"], when Database:Mode is Continuous.");
        if (c.ServerStartCommand.Count == 0 || c.ServerStartCommand.Any(string.IsNullOrEmpty))
            errors.Add("Continuous:ServerStartCommand must be the argv that starts PostgreSQL, e.g. [\"systemctl\", \"start\", \"postgresql\"], when Database:Mode is Continuous.");
        foreach (var (value, key) in new[] { (c.ServerTimeout, "ServerTimeout"), (c.RecoveryTimeout, "RecoveryTimeout"), (c.BaseBackupTimeout, "BaseBackupTimeout") })
            if (value <= TimeSpan.Zero)
                errors.Add($"Continuous:{key} must be positive, e.g. \"00:05:00\".");
        if (c.CompressionLevel is < 0 or > 9)
            errors.Add($"Continuous:CompressionLevel is {c.CompressionLevel}; it must be between 0 and 9.");
    }
}
