using System.Text;
using Npgsql;

namespace RegistryDR.Postgres;

/// <summary>
/// A table whose data is too big for one pg_dump stream: the registry's audit log is most of
/// its database, and one COPY of it (one backend, one pg_dump, one gzip) is the whole backup's
/// critical path. Its rows are dumped instead as block ranges (<c>ctid</c> ranges, a TID range
/// scan since PostgreSQL 14) by several binary COPYs in pg_dump's exported snapshot, and loaded
/// back by as many COPYs in parallel. Everything else still goes through pg_dump.
/// </summary>
internal sealed record SplitTable(string Schema, string Name, IReadOnlyList<string> Columns, long Pages, int BlockSize)
{
    /// <summary>Always quoted: exact case, and no name can change the statement it is put in.</summary>
    public string QualifiedName => Quote(Schema) + "." + Quote(Name);

    /// <summary>
    /// The table as a pg_dump pattern (<c>--exclude-table-data</c>): inside double quotes every
    /// pattern character (<c>* ? . $</c> and the rest) is taken literally, quotes doubled.
    /// </summary>
    public string DumpPattern => QualifiedName;

    private string ColumnList => string.Join(", ", Columns.Select(Quote));

    /// <summary>
    /// Rows in blocks [<paramref name="fromPage"/>, <paramref name="toPage"/>), or to the end
    /// when <paramref name="toPage"/> is null (the last range is open, so pages the table grew
    /// by after the size was read are still covered; the snapshot hides their new rows).
    /// </summary>
    public string CopyOutSql(long fromPage, long? toPage)
    {
        var where = new StringBuilder($"ctid >= '({fromPage},0)'::tid");
        if (toPage is { } to) where.Append($" AND ctid < '({to},0)'::tid");
        return $"COPY (SELECT {ColumnList} FROM ONLY {QualifiedName} WHERE {where}) TO STDOUT (FORMAT binary)";
    }

    public string CopyInSql => CopyIn(Schema, Name, Columns);

    /// <summary>The load of one range, from what a manifest records of the table.</summary>
    public static string CopyIn(string schema, string name, IReadOnlyList<string> columns) =>
        $"COPY {Quote(schema)}.{Quote(name)} ({string.Join(", ", columns.Select(Quote))}) FROM STDIN (FORMAT binary)";

    internal static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";

    /// <summary>Block ranges of about <paramref name="chunkPages"/> pages; the last one is open-ended.</summary>
    public static IReadOnlyList<(long From, long? To)> Ranges(long pages, long chunkPages)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkPages, 1);
        var ranges = new List<(long, long?)>();
        long from = 0;
        while (from + chunkPages < pages)
        {
            ranges.Add((from, from + chunkPages));
            from += chunkPages;
        }
        ranges.Add((from, null));
        return ranges;
    }

    /// <summary>The first bytes of every binary COPY stream (PostgreSQL's documented signature).</summary>
    internal static ReadOnlySpan<byte> BinaryCopySignature => [(byte)'P', (byte)'G', (byte)'C', (byte)'O', (byte)'P', (byte)'Y', (byte)'\n', 0xff, (byte)'\r', (byte)'\n', 0];

    /// <summary>
    /// The tables to split, read in the snapshot's own transaction, and the tables big enough to
    /// be split that stay in pg_dump's stream, each with the reason (<see cref="BinaryCopyPortability"/>).
    /// None below PostgreSQL 14 (without TID range scans every range would read the whole table).
    /// </summary>
    public static async Task<SplitPlan> FindAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, long minBytes, CancellationToken cancellationToken)
    {
        if (minBytes <= 0 || connection.PostgreSqlVersion.Major < 14) return new SplitPlan([], []);
        var encoding = connection.PostgresParameters.TryGetValue("server_encoding", out var e) ? e : "";
        if (!PostgresConnectionFactory.IsUtf8(encoding))
            return new SplitPlan([], [$"every table: the database's encoding is {encoding}, not UTF8"]);
        var tables = new List<SplitTable>();
        var kept = new List<string>();
        await using var command = new NpgsqlCommand(BinaryCopyPortability.CandidatesSql, connection, transaction);
        command.Parameters.AddWithValue("min", minBytes);
        command.Parameters.AddWithValue("portable", BinaryCopyPortability.PortableBaseTypes.ToArray());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var table = new SplitTable(reader.GetString(0), reader.GetString(1), reader.IsDBNull(3) ? [] : reader.GetFieldValue<string[]>(3), reader.GetInt64(2), reader.GetInt32(4));
            if (reader.IsDBNull(5)) tables.Add(table);
            else kept.Add($"{table.QualifiedName}: {reader.GetString(5)}");
        }
        return new SplitPlan(tables, kept);
    }
}

/// <param name="Tables">The tables dumped as block ranges.</param>
/// <param name="KeptInPgDump">Tables over the threshold that pg_dump dumps instead, each "name: why".</param>
internal sealed record SplitPlan(IReadOnlyList<SplitTable> Tables, IReadOnlyList<string> KeptInPgDump);
