namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Databases whose encoding is not UTF8. RegistryDR's own sessions talk UTF8; text that has no
/// UTF8 form (Latin-1 bytes in SQL_ASCII, EUC_JP's user-defined characters) must still come back
/// byte for byte, in the data and in table names, at any split threshold.
/// </summary>
[TestClass]
public sealed class DatabaseEncodingTests
{
    // 0x01..0xFF: every byte a single-byte encoding can hold.
    private static readonly string AllBytes = string.Concat(Enumerable.Range(1, 255).Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));

    [TestMethod]
    [DataRow("SQL_ASCII", "636166e9", "\"caf\\xE9\"", DisplayName = "SQL_ASCII holding Latin-1 bytes")]
    [DataRow("LATIN1", "636166e9", "\"café\"", DisplayName = "LATIN1")]
    [DataRow("EUC_JP", "f5a1f5a2", "\"\\xF5\\xA1\\xF5\\xA2\"", DisplayName = "EUC_JP with user-defined characters")]
    public async Task NonUtf8Database_RoundTripsByteForByte(string encoding, string tableNameHex, string fingerprintName)
    {
        // EUC_JP: 2-byte JIS X 0208 (日本), 3-byte JIS X 0212 (0x8FA2B7), and user-defined
        // characters (0xF5A1...) that have no Unicode equivalent in PostgreSQL's conversion.
        var valueHex = encoding == "EUC_JP" ? "c6fccbdc8fa2b7f5a1f5a2fefe41" : AllBytes;
        await using var node = await FidelityNode.CreateAsync(createOptions: $"TEMPLATE template0 ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C'");
        node.ForceSplitting();
        await node.ExecuteAsync($$"""
            CREATE TABLE public.payload (id int PRIMARY KEY, v text NOT NULL, b bytea NOT NULL);
            INSERT INTO public.payload SELECT g, convert_from('\x{{valueHex}}'::bytea, '{{encoding}}') || g, '\x{{valueHex}}'::bytea
            FROM generate_series(1, 300) g;
            DO $$ BEGIN
                EXECUTE format('CREATE TABLE public.%I (id int, v text)', convert_from('\x{{tableNameHex}}'::bytea, '{{encoding}}'));
                EXECUTE format('INSERT INTO public.%I SELECT g, %L FROM generate_series(1, 200) g',
                               convert_from('\x{{tableNameHex}}'::bytea, '{{encoding}}'), convert_from('\x{{tableNameHex}}'::bytea, '{{encoding}}'));
            END $$;
            """);
        const string Digest = """
            SELECT count(*) || ' ' || md5(string_agg(encode(convert_to(v, 'SQL_ASCII'), 'hex') || ':' || encode(b, 'hex'), ',' ORDER BY id))
            FROM public.payload
            """;
        const string Names = """
            SELECT encode(convert_to(relname::text, 'SQL_ASCII'), 'hex') FROM pg_class
            WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1
            """;
        var digestBefore = await node.ScalarAsync<string>(Digest);
        var store = node.CreateStore();

        var manifest = await node.BackupAsync(store);
        Assert.AreEqual(encoding, manifest.Postgres.Encoding);
        Assert.IsEmpty(manifest.SplitTables, "a database that is not UTF8 is never split");
        CollectionAssert.AreEquivalent(new[] { "public.payload", "public." + fingerprintName }, manifest.Fingerprint!.RowCounts.Keys.ToArray());
        Assert.AreEqual(200L, manifest.Fingerprint.RowCounts["public." + fingerprintName]);

        await node.DropDatabaseAsync();
        await node.RestoreAsync(store);

        Assert.AreEqual(encoding, await node.ScalarAsync<string>("SELECT pg_encoding_to_char(encoding)::text FROM pg_database WHERE datname = current_database()"));
        Assert.AreEqual(digestBefore, await node.ScalarAsync<string>(Digest));
        CollectionAssert.AreEqual(new[] { valueHex + "31", valueHex + "323030" }, await node.LinesAsync(
            "SELECT encode(convert_to(v, 'SQL_ASCII'), 'hex') FROM public.payload WHERE id IN (1, 200) ORDER BY id"));
        CollectionAssert.AreEqual(new[] { tableNameHex, "7061796c6f6164" }.Order(StringComparer.Ordinal).ToArray(), await node.LinesAsync(Names));
        // The rows of the oddly named table: its name cannot travel as UTF8, so the query is built server-side.
        Assert.AreEqual("200:" + tableNameHex, await node.ScalarAsync<string>($"""
            SELECT (xpath('/row/r/text()', query_to_xml(format('SELECT count(*) || '':'' || min(encode(convert_to(v, ''SQL_ASCII''), ''hex'')) AS r FROM public.%I', relname),
                                                     false, true, '')))[1]::text
            FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname::text = convert_from('\x{tableNameHex}'::bytea, '{encoding}')
            """));
    }
}
