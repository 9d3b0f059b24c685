namespace RegistryDR.Postgres;

/// <summary>
/// Which tables may be dumped as binary COPY block ranges and loaded back as such: only those
/// whose every row is guaranteed to mean the same on the restore target (the same or a later
/// PostgreSQL major version, a database created with the same encoding). The rule, written out
/// in docs/architecture.md ("Split tables: when binary COPY is portable"):
/// <list type="number">
/// <item>The database's encoding is UTF8. RegistryDR's sessions talk UTF8, and text send/receive
/// convert to and from the client encoding: other encodings either fail (SQL_ASCII holding
/// non-UTF8 bytes, EUC_JP's user-defined characters) or depend on conversion tables.</item>
/// <item>pg_dump loads the table's rows as themselves, not through a partition root (pg_dump 15.3+
/// loads every partition of a tree with hash partitioning on an enum anywhere in it through the
/// root: the hash of an enum depends on its labels' OIDs, which a restore changes, so rows may
/// belong to another leaf afterwards).</item>
/// <item>Every dumped column's type is portable, recursively: a domain if its base type is, an
/// array if its element type is, a composite if all its attribute types are, a range if its
/// subtype is, a multirange if its range is; an enum always (enum values travel as their labels);
/// a base type only if it is one of the built-in types in <see cref="PortableBaseTypes"/>, whose
/// binary form carries no OID, no transaction id, no encoding-dependent bytes beyond UTF8 text
/// and is the same on every server of that version or later. Everything else — the OID-bearing
/// types (oid, regclass, regtype, regproc, regprocedure, regoper, regoperator, regconfig,
/// regdictionary, regnamespace, regrole, regcollation), xid, xid8, cid, tid, types without binary
/// send/receive (aclitem), every extension's types — stays in pg_dump, which writes text.</item>
/// </list>
/// Array and record binary forms do carry their element/attribute type OIDs, but the server
/// checks them only when both are built-in (OID below 10000, fixed in the catalogs of every
/// version), so user-defined enums, domains and composites inside them load on a server where
/// they have new OIDs.
/// </summary>
internal static class BinaryCopyPortability
{
    /// <summary>Built-in (pg_catalog, OID below 10000) base types whose binary send/receive is portable.</summary>
    public static readonly IReadOnlyList<string> PortableBaseTypes =
    [
        "bool", "bytea", "char", "name", "int2", "int4", "int8", "float4", "float8", "numeric", "money",
        "text", "varchar", "bpchar", "json", "jsonb", "jsonpath", "uuid",
        "date", "time", "timetz", "timestamp", "timestamptz", "interval",
        "bit", "varbit", "inet", "cidr", "macaddr", "macaddr8", "pg_lsn", "tsvector", "tsquery",
        "point", "lseg", "path", "box", "polygon", "line", "circle",
    ];

    /// <summary>
    /// For every table of at least <c>@min</c> bytes that pg_dump would dump the data of (ordinary
    /// table or partition, not an extension member, not temporary): schema, name, pages, dumped
    /// columns, block size, and why it may not be split (NULL when it may). Parameters:
    /// <c>@min</c> (bytes), <c>@portable</c> (<see cref="PortableBaseTypes"/>).
    /// </summary>
    public const string CandidatesSql = """
        WITH RECURSIVE candidates AS (
            SELECT c.oid, n.nspname, c.relname, c.relispartition
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND c.relpersistence <> 't'
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
              AND pg_relation_size(c.oid) >= @min
        ),
        columns AS (
            SELECT a.attrelid, a.attnum, a.attname, a.atttypid
            FROM pg_attribute a JOIN candidates k ON k.oid = a.attrelid
            WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ),
        -- Every type a column's values are built from: its own, and recursively the base type of
        -- a domain, the element of an array, the attributes of a composite, the subtype of a range
        -- and the range of a multirange.
        parts (attrelid, attnum, typ, depth) AS (
            SELECT attrelid, attnum, atttypid, 0 FROM columns
            UNION ALL
            SELECT p.attrelid, p.attnum, x.typ, p.depth + 1
            FROM parts p
            JOIN pg_type t ON t.oid = p.typ
            CROSS JOIN LATERAL (
                SELECT t.typbasetype WHERE t.typtype = 'd'
                UNION ALL SELECT t.typelem WHERE t.typtype = 'b' AND EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid)
                UNION ALL SELECT ca.atttypid FROM pg_attribute ca WHERE t.typtype = 'c' AND ca.attrelid = t.typrelid AND ca.attnum > 0 AND NOT ca.attisdropped
                UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE t.typtype = 'r' AND r.rngtypid = t.oid
                UNION ALL SELECT r.rngtypid FROM pg_range r WHERE t.typtype = 'm' AND r.rngmultitypid = t.oid
            ) x (typ)
            WHERE p.depth < 16
        ),
        unportable AS (
            SELECT DISTINCT ON (p.attrelid) p.attrelid,
                   format('column %s (%s) holds %s, whose binary form is not portable', quote_ident(col.attname),
                          format_type(col.atttypid, NULL), format_type(p.typ, NULL)) AS reason
            FROM parts p
            JOIN pg_type t ON t.oid = p.typ
            JOIN columns col ON col.attrelid = p.attrelid AND col.attnum = p.attnum
            WHERE p.depth >= 16 OR t.typtype NOT IN ('b', 'c', 'd', 'e', 'r', 'm')
               OR (t.typtype = 'b'
                   AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid)
                   AND NOT (t.oid < 10000 AND t.typnamespace = 'pg_catalog'::regnamespace AND t.typname = ANY (@portable)))
            ORDER BY p.attrelid, p.attnum, p.depth
        ),
        -- pg_dump's own rule (getPartitioningInfo): a partitioned table with hash partitioning on
        -- an enum makes every partition below it load through the tree's root.
        unsafe_partitioned AS (
            SELECT pt.partrelid FROM pg_partitioned_table pt
            WHERE (SELECT oc.oid FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                   WHERE oc.opcname = 'enum_ops' AND oc.opcnamespace = 'pg_catalog'::regnamespace AND am.amname = 'hash') = ANY (pt.partclass)
        )
        SELECT k.nspname, k.relname, pg_relation_size(k.oid) / current_setting('block_size')::bigint,
               (SELECT array_agg(col.attname::text ORDER BY col.attnum) FROM columns col WHERE col.attrelid = k.oid),
               current_setting('block_size')::int,
               CASE
                   WHEN NOT EXISTS (SELECT 1 FROM columns col WHERE col.attrelid = k.oid) THEN 'it has no columns to copy'
                   WHEN k.relispartition AND EXISTS (SELECT 1 FROM pg_partition_ancestors(k.oid) a JOIN unsafe_partitioned u ON u.partrelid = a.relid)
                       THEN 'pg_dump loads it through its partition root ' || pg_partition_root(k.oid)::regclass::text || ' (hash partitioning on an enum)'
                   ELSE (SELECT u.reason FROM unportable u WHERE u.attrelid = k.oid)
               END
        FROM candidates k
        ORDER BY pg_relation_size(k.oid) DESC, 1, 2
        """;
}
