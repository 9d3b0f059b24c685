using System.Text;
using Npgsql;

namespace RegistryDR.Postgres;

/// <summary>
/// Row counts of every table, taken inside the very snapshot pg_dump dumps. A restore (or a
/// drill) counts again after loading: a dump that pg_restore accepted but that does not hold
/// what the database held is caught there, not on the day the registry comes back half-empty.
/// </summary>
public sealed record DatabaseFingerprint(IReadOnlyDictionary<string, long> RowCounts)
{
    public long TotalRows => RowCounts.Values.Sum();

    /// <summary>Null when equal; otherwise the first difference, for the operator.</summary>
    public string? FirstDifference(DatabaseFingerprint actual)
    {
        foreach (var (table, expected) in RowCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!actual.RowCounts.TryGetValue(table, out var got)) return $"table {table} is missing (the backup recorded {expected} rows)";
            if (got != expected) return $"table {table} has {got} rows; the backup recorded {expected}";
        }
        var extra = actual.RowCounts.Keys.Except(RowCounts.Keys, StringComparer.Ordinal).Order(StringComparer.Ordinal).FirstOrDefault();
        return extra is null ? null : $"table {extra} exists but the backup recorded no such table";
    }

    // Ordinary tables and partitions, outside system schemas, that are not members of an
    // extension (pg_dump does not dump extension members' data either).
    private const string TablesSql = """
        SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1
        """;

    /// <summary>Counts every table on <paramref name="connection"/> (in whatever snapshot its transaction holds).</summary>
    public static async Task<DatabaseFingerprint> CountAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
    {
        var tables = new List<string>();
        await using (var list = new NpgsqlCommand(TablesSql, connection, transaction))
        await using (var reader = await list.ExecuteReaderAsync(cancellationToken))
            while (await reader.ReadAsync(cancellationToken)) tables.Add(reader.GetString(0));
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        if (tables.Count == 0) return new DatabaseFingerprint(counts);
        // One round trip: a UNION of counts, labelled so the order does not matter.
        var sql = new StringBuilder();
        for (var i = 0; i < tables.Count; i++)
        {
            if (i > 0) sql.Append(" UNION ALL ");
            sql.Append("SELECT ").Append(i).Append(", count(*) FROM ").Append(tables[i]);
        }
        await using var count = new NpgsqlCommand(sql.ToString(), connection, transaction);
        await using var rows = await count.ExecuteReaderAsync(cancellationToken);
        while (await rows.ReadAsync(cancellationToken)) counts[tables[rows.GetInt32(0)]] = rows.GetInt64(1);
        return new DatabaseFingerprint(counts);
    }
}

/// <summary>
/// A repeatable-read transaction whose snapshot is exported to pg_dump (<c>--snapshot</c>), so
/// the fingerprint and the dump see exactly the same data.
/// </summary>
internal sealed partial class ExportedSnapshot : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;
    private readonly NpgsqlTransaction _transaction;

    private ExportedSnapshot(NpgsqlConnection connection, NpgsqlTransaction transaction, string id)
    {
        _connection = connection;
        _transaction = transaction;
        Id = id;
    }

    public string Id { get; }

    public static async Task<ExportedSnapshot> BeginAsync(PostgresConnectionFactory postgres, CancellationToken cancellationToken)
    {
        var connection = await postgres.OpenAsync(cancellationToken: cancellationToken);
        try
        {
            var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
            await using var cmd = new NpgsqlCommand("SET TRANSACTION READ ONLY; SELECT pg_export_snapshot()", connection, transaction);
            var id = (string)(await cmd.ExecuteScalarAsync(cancellationToken))!;
            return new ExportedSnapshot(connection, transaction, id);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public Task<DatabaseFingerprint> CountAsync(CancellationToken cancellationToken) => DatabaseFingerprint.CountAsync(_connection, _transaction, cancellationToken);

    /// <summary>The tables big enough to be dumped in block ranges, as this snapshot sees them.</summary>
    public Task<IReadOnlyList<SplitTable>> FindSplitTablesAsync(long minBytes, CancellationToken cancellationToken) =>
        SplitTable.FindAsync(_connection, _transaction, minBytes, cancellationToken);

    /// <summary>
    /// Starts a read-only repeatable-read transaction on <paramref name="connection"/> that sees
    /// exactly the snapshot <paramref name="snapshotId"/> (which must still be held by its exporter).
    /// Row security is off, as in pg_dump: a policy that would hide rows makes the COPY fail instead.
    /// </summary>
    public static async Task<NpgsqlTransaction> ImportAsync(NpgsqlConnection connection, string snapshotId, CancellationToken cancellationToken)
    {
        if (!SnapshotId().IsMatch(snapshotId)) throw new ArgumentException($"'{snapshotId}' is not a snapshot id.", nameof(snapshotId));
        var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        await using var cmd = new NpgsqlCommand($"SET TRANSACTION READ ONLY; SET TRANSACTION SNAPSHOT '{snapshotId}'; SET LOCAL row_security = off", connection, transaction);
        await cmd.ExecuteNonQueryAsync(cancellationToken);
        return transaction;
    }

    /// <summary>What a snapshot id from <c>pg_export_snapshot()</c> looks like; checked before it goes into SQL.</summary>
    [System.Text.RegularExpressions.GeneratedRegex("^[0-9A-F]+-[0-9A-F]+-[0-9]+$")]
    internal static partial System.Text.RegularExpressions.Regex SnapshotId();

    public async ValueTask DisposeAsync()
    {
        try { await _transaction.RollbackAsync(); } catch (Exception) { /* the connection is closing anyway */ }
        await _connection.DisposeAsync();
    }
}
