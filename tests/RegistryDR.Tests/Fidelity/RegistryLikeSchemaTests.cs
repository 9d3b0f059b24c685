using RegistryDR.Stores;
using RegistryDR.Tests.Deployment;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// The two shapes of registry database RegistryDR protects, built by bench/schemas/*.sql at a tiny
/// scale: a Harbor-like one and a GitLab-container-registry-like one (64-way hash partitions in a
/// second schema, composite foreign keys between partitioned tables, parent-level triggers with
/// unqualified names, a transition-table trigger, about 2,350 indexes). Each is backed up, lost
/// and restored at default settings and with every table split, through the file and the S3
/// store (the Harbor-like one in all four combinations, the larger GitLab-like one in two).
/// </summary>
[TestClass]
public sealed class RegistryLikeSchemaTests
{
    // Every table of every schema (count and digest of its rows), every sequence, and how many
    // indexes, triggers and constraints there are. Rows are read server-side by name, so no name
    // has to survive a round trip through the client.
    private const string Everything = """
        SELECT n.nspname || '.' || c.relname || ' ' ||
               (xpath('/row/d/text()', query_to_xml(format('SELECT count(*) || '':'' || coalesce(md5(string_agg(x::text, '','' ORDER BY x::text)), ''-'') AS d FROM ONLY %s x', c.oid::regclass),
                                                     false, true, '')))[1]::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
        UNION ALL SELECT 'sequence ' || schemaname || '.' || sequencename || ' ' || coalesce(last_value::text, 'unused') FROM pg_sequences
        UNION ALL SELECT 'indexes ' || count(*) FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
        UNION ALL SELECT 'triggers ' || count(*) FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL SELECT 'constraints ' || count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION ALL SELECT 'constraint ' || c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.conparentid = 0
        -- Constraints the server derives from a partitioned table's foreign key (one per referenced
        -- partition, and per referencing partition) are not dumped: they are made again when the
        -- parent's key is added, and named in that order, so only their definitions are compared.
        UNION ALL SELECT 'derived constraint ' || c.conrelid::regclass || ' ' || pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.conparentid <> 0
        ORDER BY 1
        """;

    [TestMethod]
    [DataRow("harbor-like", false, false, DisplayName = "harbor-like, default settings, file store")]
    [DataRow("harbor-like", true, false, DisplayName = "harbor-like, every table split, file store")]
    [DataRow("harbor-like", false, true, DisplayName = "harbor-like, default settings, S3 store")]
    [DataRow("harbor-like", true, true, DisplayName = "harbor-like, every table split, S3 store")]
    // The GitLab-like database takes about a minute per round trip on two cores: both settings
    // and both stores, but not every pair of them.
    [DataRow("gitlab-like", false, false, DisplayName = "gitlab-like, default settings, file store")]
    [DataRow("gitlab-like", true, true, DisplayName = "gitlab-like, every table split, S3 store")]
    public async Task RegistryLikeDatabase_RoundTripsExactly(string schema, bool split, bool s3)
    {
        CephS3Server? server = null;
        string? storeUrl = null;
        if (s3)
        {
            server = await TestEnvironment.S3Async();
            var bucket = "rdr-fidelity-" + Guid.NewGuid().ToString("N")[..8];
            await server.CreateBucketAsync(bucket);
            storeUrl = $"s3://{bucket}/node";
        }
        await using var node = await FidelityNode.CreateAsync(storeUrl: storeUrl, store: server is null ? null : s => s.ConfigureFor(server, partSizeMiB: 5));
        if (split) node.ForceSplitting();
        else node.Options.Restore.Jobs = 4;
        await node.PsqlFileAsync(Path.Combine(DeploymentTestSupport.RepoRoot, "bench", "schemas", schema + ".sql"), new Dictionary<string, string> { ["scale"] = "1" });

        var before = await node.LinesAsync(Everything);
        var oracle = await DatabaseSnapshot.CaptureAsync(node.ConnectionString);
        var nonEmpty = await node.LinesAsync("""
            SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname IN ('public', 'partitions') AND pg_relation_size(c.oid) > 0 ORDER BY 1
            """);
        AssertShape(schema, before);

        var store = node.CreateStore(server);
        using var disposeStore = store as IDisposable;
        var manifest = await node.BackupAsync(store);
        CollectionAssert.AreEquivalent(split ? nonEmpty.ToArray() : [], manifest.SplitTables.Select(t => t.Schema + "." + t.Name).ToArray());

        await node.DropDatabaseAsync();
        await node.RestoreAsync(store);

        CollectionAssert.AreEqual(before, await node.LinesAsync(Everything));
        // The shared oracle: every fact and every row (derived constraints are known by their
        // parent's name, which pg_dump keeps; see DatabaseSnapshot).
        var after = await DatabaseSnapshot.CaptureAsync(node.ConnectionString);
        Assert.IsNull(oracle.FirstDifference(after), oracle.FirstDifference(after));
        if (schema == "harbor-like")
        {
            var drill = await node.DrillAsync(store, manifest.BackupId);
            Assert.IsTrue(drill.Succeeded, drill.Failure);
        }
    }

    /// <summary>What the scripts build at scale 1, so a change to them that loses a kind of structure shows here.</summary>
    private static void AssertShape(string schema, IReadOnlyList<string> everything)
    {
        string Line(string prefix) => everything.Single(l => l.StartsWith(prefix + " ", StringComparison.Ordinal));
        if (schema == "harbor-like")
        {
            StringAssert.StartsWith(Line("public.audit_log_ext"), "public.audit_log_ext 8000:");
            StringAssert.StartsWith(Line("public.schema_migrations"), "public.schema_migrations 1:");
            Assert.AreEqual("triggers 9", Line("triggers"));
            Assert.AreEqual("sequence public.audit_log_ext_id_seq 8000", Line("sequence public.audit_log_ext_id_seq"));
        }
        else
        {
            Assert.AreEqual(8 * 64, everything.Count(l => l.StartsWith("partitions.", StringComparison.Ordinal)));
            Assert.AreEqual("indexes 2351", Line("indexes"));
            Assert.AreEqual("triggers 326", Line("triggers"));
            StringAssert.StartsWith(Line("public.gc_blob_review_queue"), "public.gc_blob_review_queue 400:");
            StringAssert.StartsWith(Line("public.gc_manifest_review_queue"), "public.gc_manifest_review_queue 155:");
            StringAssert.StartsWith(Line("public.repository_deletion_log"), "public.repository_deletion_log 1:");
        }
    }
}
