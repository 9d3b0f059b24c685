using System.Globalization;
using Npgsql;
using RegistryDR.Configuration;
using RegistryDR.Postgres;
using RegistryDR.Processes;

namespace RegistryDR.Continuous.Internal;

/// <summary>
/// PostgreSQL's own server-side programs that continuous mode drives (pg_basebackup, pg_verifybackup,
/// pg_ctl), found where the client tools are, and run as the data directory's owner when
/// registry-dr is root (PostgreSQL refuses to run as root; <c>runuser</c> is util-linux, on every
/// distribution this runs on).
/// </summary>
internal sealed class ServerTools
{
    private readonly string? _binDirectory;

    public ServerTools(DatabaseOptions options)
    {
        var pgDump = new PostgresTools(options).PgDump;
        _binDirectory = !string.IsNullOrEmpty(options.BinDirectory) ? options.BinDirectory
            : Path.IsPathRooted(pgDump) ? Path.GetDirectoryName(pgDump) : null;
    }

    public string PgBaseBackup => Resolve("pg_basebackup");
    public string PgVerifyBackup => Resolve("pg_verifybackup");
    public string PgCtl => Resolve("pg_ctl");

    private string Resolve(string tool) => _binDirectory is null ? tool : Path.Combine(_binDirectory, tool);

    /// <summary>
    /// <paramref name="spec"/> run as <paramref name="owner"/> (the uid owning the data directory): through
    /// <c>runuser</c> when this process is root and the owner is not, as is otherwise.
    /// </summary>
    public static ProcessSpec AsOwner(ProcessSpec spec, FileOwner owner)
    {
        if (!Environment.IsPrivilegedProcess || owner.Uid == 0) return spec;
        return spec with { FileName = "runuser", Arguments = ["-u", owner.Name, "--", spec.FileName, .. spec.Arguments] };
    }
}

/// <summary>The owner of a file: uid, gid and the account name (for runuser).</summary>
/// <remarks>Read and applied with coreutils' stat and chown: .NET has no API for owners.</remarks>
internal sealed record FileOwner(int Uid, int Gid, string Name)
{
    public static async Task<FileOwner> OfAsync(string path, CancellationToken cancellationToken)
    {
        var text = (await ProcessRunner.CaptureAsync(new ProcessSpec("stat", ["--format=%u:%g:%U", "--", path]) { Timeout = TimeSpan.FromSeconds(30) }, cancellationToken)).Trim();
        var parts = text.Split(':', 3);
        if (parts.Length != 3 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var uid) || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var gid))
            throw new IOException($"stat could not tell who owns {path} ('{text}').");
        return new FileOwner(uid, gid, parts[2] == "UNKNOWN" ? uid.ToString(CultureInfo.InvariantCulture) : parts[2]);
    }

    /// <summary>Gives <paramref name="path"/> and everything under it to this owner (symlinks themselves, never their targets). Only root can, and only root needs to.</summary>
    public async Task ApplyAsync(string path, CancellationToken cancellationToken)
    {
        if (!Environment.IsPrivilegedProcess) return;
        await ProcessRunner.RunCheckedAsync(new ProcessSpec("chown", ["-R", "--no-dereference", $"{Uid}:{Gid}", "--", path]) { Timeout = TimeSpan.FromMinutes(10) }, cancellationToken: cancellationToken);
    }
}

/// <summary>What the server says about itself that continuous protection depends on.</summary>
internal sealed record ServerState(
    string Version,
    int MajorVersion,
    string SystemIdentifier,
    long WalSegmentSize,
    string DataDirectory,
    string WalLevel,
    string ArchiveMode,
    string ArchiveCommand,
    string ArchiveLibrary,
    int ArchiveTimeoutSeconds,
    int ExtraTablespaces,
    ArchiverStats Archiver)
{
    public static async Task<ServerState> ReadAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = """
            SELECT current_setting('server_version'), current_setting('server_version_num')::int / 10000,
                   (SELECT system_identifier::text FROM pg_control_system()),
                   pg_size_bytes(current_setting('wal_segment_size')),
                   current_setting('data_directory'), current_setting('wal_level'), current_setting('archive_mode'),
                   current_setting('archive_command'), coalesce(current_setting('archive_library', true), ''),
                   (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout'),
                   (SELECT count(*)::int FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global'))
            """;
        string version, sysid, dataDir, walLevel, archiveMode, archiveCommand, archiveLibrary;
        int major, timeout, tablespaces;
        long segmentSize;
        await using (var r = await cmd.ExecuteReaderAsync(cancellationToken))
        {
            await r.ReadAsync(cancellationToken);
            version = r.GetString(0).Split(' ')[0];
            major = r.GetInt32(1);
            sysid = r.GetString(2);
            segmentSize = r.GetInt64(3);
            dataDir = r.GetString(4);
            walLevel = r.GetString(5);
            archiveMode = r.GetString(6);
            archiveCommand = r.GetString(7);
            archiveLibrary = r.GetString(8);
            timeout = r.GetInt32(9);
            tablespaces = r.GetInt32(10);
        }
        return new ServerState(version, major, sysid, segmentSize, dataDir, walLevel, archiveMode, archiveCommand, archiveLibrary, timeout, tablespaces,
            await ArchiverStats.ReadAsync(connection, cancellationToken));
    }

    /// <summary>What keeps WAL from reaching the store, as sentences naming the setting and the fix; empty when archiving is set up.</summary>
    public IReadOnlyList<string> ArchivingProblems(TimeSpan archiveTimeout)
    {
        var problems = new List<string>();
        if (WalLevel is not ("replica" or "logical"))
            problems.Add($"wal_level is '{WalLevel}'; continuous protection needs 'replica': ALTER SYSTEM SET wal_level = 'replica'; then restart PostgreSQL");
        if (ArchiveMode is not ("on" or "always"))
            problems.Add($"archive_mode is '{ArchiveMode}': ALTER SYSTEM SET archive_mode = 'on'; then restart PostgreSQL");
        if (ArchiveLibrary.Length > 0)
            problems.Add($"archive_library is '{ArchiveLibrary}', which replaces archive_command: ALTER SYSTEM RESET archive_library; SELECT pg_reload_conf();");
        if (!ArchiveCommand.Contains("wal-push", StringComparison.Ordinal) || !ArchiveCommand.Contains("%p", StringComparison.Ordinal))
            problems.Add($"archive_command is '{ArchiveCommand}', not registry-dr's: ALTER SYSTEM SET archive_command = '/opt/registry-dr/bin/registry-dr wal-push %p'; SELECT pg_reload_conf(); (with the path of this registry-dr)");
        var wanted = (int)Math.Ceiling(archiveTimeout.TotalSeconds);
        if (ArchiveTimeoutSeconds <= 0 || ArchiveTimeoutSeconds > wanted)
            problems.Add($"archive_timeout is {ArchiveTimeoutSeconds} s but Continuous:ArchiveTimeout is {wanted} s, so a quiet registry could lose more: ALTER SYSTEM SET archive_timeout = '{wanted}s'; SELECT pg_reload_conf();");
        return problems;
    }
}

/// <summary>
/// PostgreSQL's <c>pg_stat_archiver</c> view (what the archiver did since the statistics were last
/// reset), with the server's current WAL insert position to tell how much WAL is not archived yet.
/// </summary>
public sealed record ArchiverStats(
    long ArchivedCount,
    string? LastArchivedWal,
    DateTimeOffset? LastArchivedTime,
    long FailedCount,
    string? LastFailedWal,
    DateTimeOffset? LastFailedTime,
    Lsn CurrentLsn,
    long WalSegmentSize)
{
    /// <summary>True when the archiver's newest attempt failed (and has not succeeded since).</summary>
    public bool Failing => LastFailedTime is { } failed && (LastArchivedTime is not { } ok || failed > ok);

    /// <summary>
    /// Bytes of WAL written after the end of the newest archived segment: what a node lost now would
    /// lose. 0 once the archiver has caught up; null when the newest archived file is not a segment
    /// (a .history or .backup file), so the position is not known.
    /// </summary>
    public long? PendingBytes =>
        LastArchivedWal is { } name && WalFileName.TryParse(name, out var file) && file!.Kind is WalFileKind.Segment or WalFileKind.Partial
            ? (long)Math.Max(0, (decimal)CurrentLsn.Value - (file.SegmentNumber(WalSegmentSize) + 1) * (decimal)WalSegmentSize)
            : LastArchivedWal is null ? (long)CurrentLsn.Value : null;

    internal static async Task<ArchiverStats> ReadAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = """
            SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time,
                   CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text,
                   pg_size_bytes(current_setting('wal_segment_size'))
            FROM pg_stat_archiver
            """;
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        await r.ReadAsync(cancellationToken);
        return new ArchiverStats(
            r.GetInt64(0), r.IsDBNull(1) ? null : r.GetString(1), r.IsDBNull(2) ? null : new DateTimeOffset(r.GetDateTime(2), TimeSpan.Zero),
            r.GetInt64(3), r.IsDBNull(4) ? null : r.GetString(4), r.IsDBNull(5) ? null : new DateTimeOffset(r.GetDateTime(5), TimeSpan.Zero),
            r.IsDBNull(6) ? default : Lsn.Parse(r.GetString(6)), r.GetInt64(7));
    }
}

/// <summary>
/// <c>registry-dr wal-push</c> runs as the PostgreSQL server's user (archive_command), so on a file
/// store that user must be able to write <c>continuous/</c> and <c>continuous/wal/</c>; registry-dr
/// itself usually runs as root. Those two directories are made and given to the data directory's
/// owner (0755) before anything else creates them as root. S3 stores need nothing.
/// </summary>
internal static class WalStoreAccess
{
    public static async Task EnsureAsync(Configuration.RegistryDrOptions options, CancellationToken cancellationToken)
    {
        if (!Stores.StoreLocation.TryParse(options.Store.Url, out var location, out _) || location.Kind != Stores.StoreKind.FileSystem) return;
        var dataDirectory = options.Continuous.DataDirectory;
        if (string.IsNullOrEmpty(dataDirectory)) return;
        var root = Path.Combine(location.Path, ContinuousLayout.Root.TrimEnd('/'));
        var wal = Path.Combine(location.Path, ContinuousLayout.WalRoot.TrimEnd('/'));
        const UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        Directory.CreateDirectory(wal, mode);
        if (!Environment.IsPrivilegedProcess || !Directory.Exists(dataDirectory)) return;
        var owner = await FileOwner.OfAsync(dataDirectory, cancellationToken);
        foreach (var dir in new[] { root, wal })
            await ProcessRunner.RunCheckedAsync(new ProcessSpec("chown", ["--no-dereference", $"{owner.Uid}:{owner.Gid}", "--", dir]) { Timeout = TimeSpan.FromSeconds(30) }, cancellationToken: cancellationToken);
    }
}
