using Npgsql;
using RegistryDR.Backup;
using RegistryDR.Postgres;

namespace RegistryDR.Restore;

/// <summary>
/// The database a restore or a drill loads into: created as the backed-up one was (owner,
/// encoding, locale, locale provider, tablespace) and, once loaded and counted, given the
/// backed-up database's own properties, which are then read back and compared — before a restore
/// swaps it in (the swap renames it, and the properties go with it).
/// </summary>
internal static class RestoredDatabase
{
    /// <summary>
    /// CREATE DATABASE <paramref name="name"/> from template0 with the recorded encoding, LC_COLLATE,
    /// LC_CTYPE and locale provider; with the recorded owner and tablespace unless told not to
    /// (a drill on a server that lacks them).
    /// </summary>
    public static async Task CreateAsync(PostgresConnectionFactory postgres, string maintenanceDatabase, string name, BackupManifest.PostgresInfo pg,
        bool withOwner, bool withTablespace, CancellationToken cancellationToken)
    {
        await using var connection = await postgres.OpenAsync(maintenanceDatabase, cancellationToken);
        await using var create = connection.CreateCommand();
        var owner = withOwner ? $" WITH OWNER = {DatabaseProperties.Quote(pg.Owner)}" : "";
        create.CommandText = $"CREATE DATABASE {DatabaseProperties.Quote(name)}{owner} TEMPLATE = template0 ENCODING = {DatabaseProperties.Literal(pg.Encoding)} " +
            $"LC_COLLATE = {DatabaseProperties.Literal(pg.Collate)} LC_CTYPE = {DatabaseProperties.Literal(pg.Ctype)}{pg.Properties?.CreateClauses(withTablespace) ?? ""}";
        await create.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Gives <paramref name="name"/> the <paramref name="properties"/> (in one transaction, connected
    /// to it in its own encoding) and reads them back.
    /// </summary>
    /// <exception cref="DatabasePropertiesException">A property could not be applied, or does not read back as recorded.</exception>
    public static async Task GivePropertiesAsync(PostgresConnectionFactory postgres, string name, DatabaseProperties properties, CancellationToken cancellationToken)
    {
        await using var connection = await postgres.OpenInDatabaseEncodingAsync(name, cancellationToken);
        await properties.ApplyAsync(connection, name, cancellationToken);
        var actual = await DatabaseProperties.ReadAsync(connection, cancellationToken);
        if (properties.FirstDifference(actual) is { } difference)
            throw new DatabasePropertiesException($"the restored database's properties differ from the backup's: {difference}");
    }

    /// <summary>
    /// What a drill (which restores no roles) finds on the server: whether the recorded owner
    /// exists, every role name (as the properties hold them: raw bytes of the catalog, see
    /// <see cref="PostgresConnectionFactory.OpenInDatabaseEncodingAsync"/>), and whether the
    /// recorded tablespace exists.
    /// </summary>
    public static async Task<(bool Owner, HashSet<string> Roles, bool Tablespace)> WhatExistsAsync(
        PostgresConnectionFactory postgres, string maintenanceDatabase, string owner, string? tablespace, CancellationToken cancellationToken)
    {
        bool ownerExists;
        await using (var connection = await postgres.OpenAsync(maintenanceDatabase, cancellationToken))
        await using (var command = new NpgsqlCommand("SELECT 1 FROM pg_roles WHERE rolname = $1", connection))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = owner });
            ownerExists = await command.ExecuteScalarAsync(cancellationToken) is not null;
        }
        await using var raw = await postgres.OpenInDatabaseEncodingAsync(maintenanceDatabase, cancellationToken);
        var roles = new HashSet<string>(StringComparer.Ordinal);
        await using (var command = new NpgsqlCommand("SELECT rolname::text FROM pg_roles", raw))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            while (await reader.ReadAsync(cancellationToken)) roles.Add(reader.GetString(0));
        if (tablespace is null) return (ownerExists, roles, true);
        await using var spc = new NpgsqlCommand("SELECT 1 FROM pg_tablespace WHERE spcname = $1", raw);
        spc.Parameters.Add(new NpgsqlParameter { Value = tablespace });
        return (ownerExists, roles, await spc.ExecuteScalarAsync(cancellationToken) is not null);
    }

    /// <summary>A template database cannot be dropped: clears the flag first (restores and drills may have set it).</summary>
    public static async Task UnmarkTemplateAsync(NpgsqlConnection connection, string name, CancellationToken cancellationToken)
    {
        await using var check = connection.CreateCommand();
        check.CommandText = "SELECT datistemplate FROM pg_database WHERE datname = $1";
        check.Parameters.Add(new NpgsqlParameter { Value = name });
        if (await check.ExecuteScalarAsync(cancellationToken) is not true) return;
        await using var alter = connection.CreateCommand();
        alter.CommandText = $"ALTER DATABASE {DatabaseProperties.Quote(name)} IS_TEMPLATE = false";
        await alter.ExecuteNonQueryAsync(cancellationToken);
    }
}
