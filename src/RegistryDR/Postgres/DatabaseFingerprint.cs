using System.Text;
using Npgsql;

namespace RegistryDR.Postgres;

/// <summary>
/// Row counts of every table, taken inside the very snapshot pg_dump dumps. A restore (or a
/// drill) counts again after loading: a dump that pg_restore accepted but that does not hold
/// what the database held (a missing or a duplicated row) is caught there, not on the day the
/// registry comes back half-empty.
/// </summary>
/// <remarks>
/// Each table is counted with its inheritance children, as a plain SELECT does, under its
/// quoted, schema-qualified name. The partitions of a tree in which pg_dump loads partitions
/// through the root (hash partitioning on an enum anywhere in the tree; see
/// <see cref="BinaryCopyPortability"/>) are all counted together under the root's name: rows
/// loaded through the root may legitimately land in other leaves after a restore, so only the
/// tree's total is stable.
/// </remarks>
public sealed record DatabaseFingerprint(IReadOnlyDictionary<string, long> RowCounts)
{
    /// <summary>
    /// For the partitions this count folded into their root: partition name to root name. Not
    /// stored; lets <see cref="FirstDifference"/> compare with sets that counted such partitions
    /// one by one.
    /// </summary>
    public IReadOnlyDictionary<string, string> CountedAtRoot { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    public long TotalRows => RowCounts.Values.Sum();

    /// <summary>Null when equal; otherwise the first difference, for the operator.</summary>
    public string? FirstDifference(DatabaseFingerprint actual)
    {
        var expected = FoldIntoRoots(RowCounts, actual.CountedAtRoot);
        foreach (var (table, count) in expected.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!actual.RowCounts.TryGetValue(table, out var got)) return $"table {table} is missing (the backup recorded {count} rows)";
            if (got != count) return $"table {table} has {got} rows; the backup recorded {count}";
        }
        var extra = actual.RowCounts.Keys.Except(expected.Keys, StringComparer.Ordinal).Order(StringComparer.Ordinal).FirstOrDefault();
        return extra is null ? null : $"table {extra} exists but the backup recorded no such table";
    }

    // A set written before partitions were counted at their root has one count per leaf.
    private static Dictionary<string, long> FoldIntoRoots(IReadOnlyDictionary<string, long> counts, IReadOnlyDictionary<string, string> roots)
    {
        var folded = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (table, count) in counts)
        {
            var key = roots.TryGetValue(table, out var root) ? root : table;
            folded[key] = folded.GetValueOrDefault(key) + count;
        }
        return folded;
    }

    // Tables pg_dump dumps the data of: ordinary tables and partitions, outside system schemas,
    // not members of an extension, not other sessions' temporary tables. For each: its name and
    // (for partitions counted at their root) the root's name, both as the database's own bytes
    // (convert_to ... 'SQL_ASCII' converts nothing), and its row count, counted server-side so
    // that no name has to travel back into SQL from here.
    private const string TablesSql = """
        WITH unsafe_partitioned AS (
            SELECT pt.partrelid FROM pg_partitioned_table pt
            WHERE (SELECT oc.oid FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                   WHERE oc.opcname = 'enum_ops' AND oc.opcnamespace = 'pg_catalog'::regnamespace AND am.amname = 'hash') = ANY (pt.partclass)
        ),
        tables AS (
            SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
                   CASE WHEN c.relispartition AND EXISTS (SELECT 1 FROM pg_partition_tree(pg_partition_root(c.oid)) p JOIN unsafe_partitioned u ON u.partrelid = p.relid)
                        THEN pg_partition_root(c.oid) END AS root
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND c.relpersistence <> 't'
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        )
        SELECT convert_to(t.name, 'SQL_ASCII'),
               convert_to(quote_ident(rn.nspname) || '.' || quote_ident(r.relname), 'SQL_ASCII'),
               (regexp_match(query_to_xml(format('SELECT count(*) AS n FROM %s', t.oid::regclass), false, true, '')::text, '<n>([0-9]+)</n>'))[1]::bigint
        FROM tables t
        LEFT JOIN pg_class r ON r.oid = t.root
        LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
        """;

    /// <summary>Counts every table on <paramref name="connection"/> (in whatever snapshot its transaction holds).</summary>
    public static async Task<DatabaseFingerprint> CountAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
    {
        var sql = connection.PostgreSqlVersion.Major >= 12
            ? TablesSql
            // No pg_partition_root before 12: every table is counted as itself.
            : TablesSql.Replace("pg_partition_root(c.oid)", "NULL::oid", StringComparison.Ordinal)
                       .Replace("EXISTS (SELECT 1 FROM pg_partition_tree(pg_partition_root(c.oid)) p JOIN unsafe_partitioned u ON u.partrelid = p.relid)", "false", StringComparison.Ordinal);
        var rows = new List<(byte[] Name, byte[]? Root, long Count)>();
        await using (var command = new NpgsqlCommand(sql, connection, transaction))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            while (await reader.ReadAsync(cancellationToken))
                rows.Add((reader.GetFieldValue<byte[]>(0), reader.IsDBNull(1) ? null : reader.GetFieldValue<byte[]>(1), reader.GetInt64(2)));

        var names = new TableNames(connection, transaction);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var roots = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (nameBytes, rootBytes, count) in rows)
        {
            var name = await names.TextAsync(nameBytes, cancellationToken);
            if (!seen.Add(name)) throw new InvalidOperationException($"Two tables have the fingerprint name {name}; rename one of them.");
            var key = name;
            if (rootBytes is not null)
            {
                key = await names.TextAsync(rootBytes, cancellationToken);
                roots[name] = key;
            }
            counts[key] = counts.GetValueOrDefault(key) + count;
        }
        return new DatabaseFingerprint(counts) { CountedAtRoot = roots };
    }

    /// <summary>
    /// Table names as text for the fingerprint: as the server converts them to UTF8 (as they always
    /// were); a name with no UTF8 form (in SQL_ASCII or EUC_JP, say) keeps its ASCII characters
    /// and writes every other byte as <c>\xNN</c>.
    /// </summary>
    private sealed class TableNames(NpgsqlConnection connection, NpgsqlTransaction? transaction)
    {
        private readonly bool _utf8 = PostgresConnectionFactory.IsUtf8(connection.PostgresParameters.GetValueOrDefault("server_encoding", "UTF8"));

        public async Task<string> TextAsync(byte[] bytes, CancellationToken cancellationToken)
        {
            if (_utf8 || bytes.All(b => b < 0x80)) return Encoding.UTF8.GetString(bytes);
            // Ask the server for the UTF8 form; an error only means there is none.
            if (transaction is not null) await ExecuteAsync("SAVEPOINT registrydr_name", cancellationToken);
            try
            {
                await using var command = new NpgsqlCommand("SELECT convert_to(convert_from($1, current_setting('server_encoding')), 'UTF8')", connection, transaction);
                command.Parameters.Add(new NpgsqlParameter { Value = bytes });
                var utf8 = (byte[])(await command.ExecuteScalarAsync(cancellationToken))!;
                if (transaction is not null) await ExecuteAsync("RELEASE SAVEPOINT registrydr_name", cancellationToken);
                return Encoding.UTF8.GetString(utf8);
            }
            catch (PostgresException ex) when (ex.SqlState is PostgresErrorCodes.UntranslatableCharacter or PostgresErrorCodes.CharacterNotInRepertoire)
            {
                if (transaction is not null) await ExecuteAsync("ROLLBACK TO SAVEPOINT registrydr_name", cancellationToken);
                return string.Concat(bytes.Select(b => b < 0x80 ? ((char)b).ToString() : $"\\x{b:X2}"));
            }
        }

        private async Task ExecuteAsync(string sql, CancellationToken cancellationToken)
        {
            await using var command = new NpgsqlCommand(sql, connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
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

    /// <summary>The tables big enough to be dumped in block ranges, as this snapshot sees them, and those that stay in pg_dump.</summary>
    public Task<SplitPlan> FindSplitTablesAsync(long minBytes, CancellationToken cancellationToken) =>
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
