using Npgsql;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Postgres;

namespace RegistryDR.Restore;

/// <summary>One thing a restore needs, checked before anything is downloaded.</summary>
/// <param name="Name">What was checked: "database server", "privileges", "sessions", "staging space", "pg_restore".</param>
/// <param name="Detail">What was found, or what is wrong and how to fix it.</param>
public sealed record PreflightCheck(string Name, bool Passed, string Detail);

/// <summary>Every preflight check of one restore, passed or not.</summary>
public sealed record PreflightReport(IReadOnlyList<PreflightCheck> Checks)
{
    public bool Passed => Checks.All(c => c.Passed);

    /// <summary>"- name: detail" per failed check, one per line.</summary>
    public string Failures => string.Join(Environment.NewLine, Checks.Where(c => !c.Passed).Select(c => $"  - {c.Name}: {c.Detail}"));
}

/// <summary>
/// The restore's first phase: what can be checked before anything is downloaded or changed —
/// the database server answers with this password, the role may create databases and roles, the
/// live database's sessions may be cut at the swap, the staging directory has room for the set,
/// and this pg_restore can read the dump. Every check runs (one failure does not hide the next),
/// except those that need the connection that failed.
/// </summary>
internal sealed class RestorePreflight(RegistryDrOptions options, PostgresConnectionFactory postgres, PostgresTools tools, string stagingRoot)
{
    public async Task<PreflightReport> RunAsync(BackupManifest manifest, bool terminateSessions, CancellationToken cancellationToken)
    {
        var checks = new List<PreflightCheck>();
        var db = options.Database;
        NpgsqlConnection? connection = null;
        try
        {
            try
            {
                connection = await postgres.OpenAsync(db.MaintenanceDatabase, cancellationToken);
                checks.Add(new("database server", true, $"connected to {db.Host}:{db.Port} as {db.User} (PostgreSQL {connection.PostgreSqlVersion})"));
            }
            catch (DatabaseUnavailableException ex)
            {
                checks.Add(new("database server", false, ex.Message));
            }
            if (connection is not null)
            {
                checks.Add(await PrivilegesAsync(connection, cancellationToken));
                checks.Add(await SessionsAsync(connection, terminateSessions, cancellationToken));
            }
        }
        finally
        {
            if (connection is not null) await connection.DisposeAsync();
        }
        checks.Add(StagingSpace(manifest));
        checks.Add(await PgRestoreVersionAsync(manifest, cancellationToken));
        return new PreflightReport(checks);
    }

    /// <summary>CREATE DATABASE for the scratch database and CREATE ROLE for the roles dump: a superuser, or a role with CREATEDB and CREATEROLE.</summary>
    private async Task<PreflightCheck> PrivilegesAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user";
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
            return new("privileges", false, $"role {options.Database.User} is not in pg_roles");
        var (super, createDb, createRole) = (reader.GetBoolean(0), reader.GetBoolean(1), reader.GetBoolean(2));
        if (super) return new("privileges", true, $"{options.Database.User} is a superuser");
        if (createDb && createRole) return new("privileges", true, $"{options.Database.User} has CREATEDB and CREATEROLE");
        var missing = string.Join(" and ", new[] { createDb ? null : "CREATEDB", createRole ? null : "CREATEROLE" }.Where(m => m is not null));
        return new("privileges", false,
            $"{options.Database.User} lacks {missing}: the restore creates a scratch database and the backup's roles. Set Database:User to a superuser (or ALTER ROLE {options.Database.User} CREATEDB CREATEROLE).");
    }

    /// <summary>
    /// The swap terminates every session on the live database. With Registry:StopCommand the
    /// registry is stopped first, so only stragglers are cut; without it the registry's own
    /// sessions would be, and the restore refuses unless told (--terminate-sessions).
    /// </summary>
    private async Task<PreflightCheck> SessionsAsync(NpgsqlConnection connection, bool terminateSessions, CancellationToken cancellationToken)
    {
        var name = options.Database.Name;
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1), (SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid())";
        cmd.Parameters.Add(new NpgsqlParameter { Value = name });
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var exists = reader.GetInt64(0) > 0;
        var sessions = reader.GetInt64(1);
        if (!exists) return new("sessions", true, $"database '{name}' does not exist yet: no session to terminate");
        if (options.Registry.StopCommand.Count > 0)
            return new("sessions", true, $"{sessions} session(s) on '{name}' now; the registry is stopped (Registry:StopCommand) before the swap, which terminates any session still open");
        if (terminateSessions)
            return new("sessions", true, $"{sessions} session(s) on '{name}' now; no Registry:StopCommand, so the registry is not stopped and the swap terminates every session on '{name}' (--terminate-sessions)");
        return new("sessions", false,
            $"no Registry:StopCommand is configured, so the registry is not stopped before the swap, and the swap terminates every session on database '{name}' ({sessions} now). " +
            "Configure Registry:StopCommand, or stop the registry yourself and pass --terminate-sessions.");
    }

    /// <summary>Everything but the block ranges is downloaded to staging first (<see cref="RestoreService.StagedArtifacts"/>).</summary>
    private PreflightCheck StagingSpace(BackupManifest manifest)
    {
        // The same arithmetic as the check the restore repeats just before it downloads (SpaceCheck).
        var needed = SpaceCheck.StagingNeed(RestoreService.StagedArtifacts(manifest));
        long free;
        try
        {
            free = SpaceCheck.Free(stagingRoot);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return new("staging space", false, $"cannot tell the free space of {stagingRoot}: {ex.Message}");
        }
        return free >= needed
            ? new("staging space", true, $"{SetFormat.Bytes(needed)} to stage in {stagingRoot}, {SetFormat.Bytes(free)} free")
            : new("staging space", false, $"{SetFormat.Bytes(needed)} must be staged in {stagingRoot} but only {SetFormat.Bytes(free)} is free: free space or set Restore:StagingDirectory");
    }

    /// <summary>pg_restore reads archives made by its own major version and older ones, not newer ones.</summary>
    private async Task<PreflightCheck> PgRestoreVersionAsync(BackupManifest manifest, CancellationToken cancellationToken)
    {
        string version;
        try
        {
            version = await PostgresTools.GetVersionAsync(tools.PgRestore, cancellationToken);
        }
        catch (Exception ex) when (ex is Processes.ProcessFailedException or IOException or System.ComponentModel.Win32Exception)
        {
            return new("pg_restore", false, $"{tools.PgRestore} cannot be run: {ex.Message} (Database:BinDirectory)");
        }
        var dumped = manifest.Postgres.PgDumpVersion;
        var (have, need) = (PostgresTools.MajorVersion(version), PostgresTools.MajorVersion(dumped));
        return have >= need
            ? new("pg_restore", true, $"pg_restore {version} reads a dump made by pg_dump {dumped}")
            : new("pg_restore", false, $"pg_restore {version} ({tools.PgRestore}) cannot read a dump made by pg_dump {dumped}: install PostgreSQL {need}'s client tools or set Database:BinDirectory");
    }
}

/// <summary>The restore's preflight failed: nothing was downloaded and nothing on the node changed. The message lists each failed check.</summary>
public sealed class RestorePreflightException(string backupId, PreflightReport report)
    : Exception($"Restore of backup {backupId} cannot start; nothing was downloaded or changed:{Environment.NewLine}{report.Failures}")
{
    public PreflightReport Report { get; } = report;
}
