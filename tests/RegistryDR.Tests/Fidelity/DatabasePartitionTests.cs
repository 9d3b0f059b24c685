namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Partitioned tables whose rows pg_dump loads through the partition root: since 15.3 pg_dump does
/// that for every partition of a tree with hash partitioning on an enum anywhere in it (the hash
/// of an enum value depends on the label's OID, which a restore changes), and rows then legitimately
/// land in other leaves. Such leaves must not be dumped as raw block ranges (their rows would
/// violate the partition constraint), and the fingerprint must count such a tree at its root.
/// </summary>
[TestClass]
public sealed class DatabasePartitionTests
{
    private const string Schema = """
        CREATE TYPE public.kind AS ENUM ('manifest', 'blob', 'tag', 'index', 'layer', 'config', 'signature', 'sbom');
        CREATE DOMAIN public.kind_d AS public.kind;

        -- hash on an enum
        CREATE TABLE public.events (k public.kind NOT NULL, id bigint NOT NULL, payload text) PARTITION BY HASH (k);
        CREATE TABLE public.events_p0 PARTITION OF public.events FOR VALUES WITH (MODULUS 4, REMAINDER 0);
        CREATE TABLE public.events_p1 PARTITION OF public.events FOR VALUES WITH (MODULUS 4, REMAINDER 1);
        CREATE TABLE public.events_p2 PARTITION OF public.events FOR VALUES WITH (MODULUS 4, REMAINDER 2);
        CREATE TABLE public.events_p3 PARTITION OF public.events FOR VALUES WITH (MODULUS 4, REMAINDER 3);

        -- range at the top, hash on an enum one level down, and a plain leaf beside it
        CREATE TABLE public.pulls (day int NOT NULL, k public.kind NOT NULL, n int) PARTITION BY RANGE (day);
        CREATE TABLE public.pulls_early PARTITION OF public.pulls FOR VALUES FROM (0) TO (100) PARTITION BY HASH (k);
        CREATE TABLE public.pulls_early_0 PARTITION OF public.pulls_early FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE public.pulls_early_1 PARTITION OF public.pulls_early FOR VALUES WITH (MODULUS 2, REMAINDER 1);
        CREATE TABLE public.pulls_late PARTITION OF public.pulls FOR VALUES FROM (100) TO (200);

        -- a multi-column hash key with an enum in it, and a domain over the enum
        CREATE TABLE public.pairs (id bigint NOT NULL, k public.kind NOT NULL) PARTITION BY HASH (id, k);
        CREATE TABLE public.pairs_0 PARTITION OF public.pairs FOR VALUES WITH (MODULUS 3, REMAINDER 0);
        CREATE TABLE public.pairs_1 PARTITION OF public.pairs FOR VALUES WITH (MODULUS 3, REMAINDER 1);
        CREATE TABLE public.pairs_2 PARTITION OF public.pairs FOR VALUES WITH (MODULUS 3, REMAINDER 2);
        CREATE TABLE public.wrapped (kd public.kind_d NOT NULL, id int) PARTITION BY HASH (kd);
        CREATE TABLE public.wrapped_0 PARTITION OF public.wrapped FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE public.wrapped_1 PARTITION OF public.wrapped FOR VALUES WITH (MODULUS 2, REMAINDER 1);

        -- control: hash on bigint is stable, its leaves are dumped (and counted) as themselves
        CREATE TABLE public.stable (id bigint NOT NULL, k public.kind NOT NULL) PARTITION BY HASH (id);
        CREATE TABLE public.stable_0 PARTITION OF public.stable FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE public.stable_1 PARTITION OF public.stable FOR VALUES WITH (MODULUS 2, REMAINDER 1);

        INSERT INTO public.events SELECT (enum_range(NULL::public.kind))[1 + g % 8], g, repeat('p', 40) FROM generate_series(1, 4000) g;
        INSERT INTO public.pulls SELECT g % 200, (enum_range(NULL::public.kind))[1 + g % 8], g FROM generate_series(1, 2000) g;
        INSERT INTO public.pairs SELECT g, (enum_range(NULL::public.kind))[1 + g % 8] FROM generate_series(1, 1500) g;
        INSERT INTO public.wrapped SELECT (enum_range(NULL::public.kind))[1 + g % 8], g FROM generate_series(1, 800) g;
        INSERT INTO public.stable SELECT g, (enum_range(NULL::public.kind))[1 + g % 8] FROM generate_series(1, 1000) g;
        """;

    private const string Digest = """
        SELECT string_agg(t || ' ' || n, ', ' ORDER BY t) FROM (
            SELECT 'events' AS t, count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) AS n FROM public.events x
            UNION ALL SELECT 'pulls', count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM public.pulls x
            UNION ALL SELECT 'pairs', count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM public.pairs x
            UNION ALL SELECT 'wrapped', count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM public.wrapped x
            UNION ALL SELECT 'stable_0', count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM public.stable_0 x
            UNION ALL SELECT 'stable_1', count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM public.stable_1 x) d
        """;

    [TestMethod]
    [DataRow(false, DisplayName = "default settings")]
    [DataRow(true, DisplayName = "splitting forced")]
    public async Task TreesPgDumpLoadsViaTheRoot_RestoreEveryRow_AndAreCountedAtTheRoot(bool split)
    {
        await using var node = await FidelityNode.CreateAsync();
        if (split) node.ForceSplitting();
        await node.ExecuteAsync(Schema);
        var before = await node.ScalarAsync<string>(Digest);
        StringAssert.StartsWith(before, "events 4000:");
        var store = node.CreateStore();

        var manifest = await node.BackupAsync(store);

        // Counted where rows are stable: the roots of the trees pg_dump loads via the root, the
        // leaves of the others.
        CollectionAssert.AreEquivalent(
            new[] { "public.events", "public.pulls", "public.pairs", "public.wrapped", "public.stable_0", "public.stable_1" },
            manifest.Fingerprint!.RowCounts.Keys.ToArray());
        Assert.AreEqual(4000L, manifest.Fingerprint.RowCounts["public.events"]);
        Assert.AreEqual(2000L, manifest.Fingerprint.RowCounts["public.pulls"]);
        Assert.AreEqual(1500L, manifest.Fingerprint.RowCounts["public.pairs"]);
        Assert.AreEqual(800L, manifest.Fingerprint.RowCounts["public.wrapped"]);
        // Only leaves pg_dump loads as themselves may be split.
        CollectionAssert.AreEquivalent(split ? new[] { "public.pulls_late", "public.stable_0", "public.stable_1" } : [],
            manifest.SplitTables.Select(t => t.Schema + "." + t.Name).ToArray());

        await node.DropDatabaseAsync();
        // The labels get new OIDs on restore (the OID counter has moved on), so their hashes change.
        await node.RestoreAsync(store);

        Assert.AreEqual(before, await node.ScalarAsync<string>(Digest));
        var drill = await node.DrillAsync(store, manifest.BackupId);
        Assert.IsTrue(drill.Succeeded, drill.Failure);
    }
}
