namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Row triggers declared on partitioned parents (cloned to every partition) whose plpgsql bodies
/// name tables without a schema, as the GitLab container registry's do. If such a trigger exists
/// while partitions are still being loaded, the next COPY fires it: under pg_restore's empty
/// search_path it fails, and under any other it would add rows that were never there. No
/// relation here is large enough to be split: the plain pg_restore path must be safe too.
/// </summary>
[TestClass]
public sealed class DatabaseTriggersDuringLoadTests
{
    private const string Schema = """
        CREATE SCHEMA partitions;
        CREATE TABLE public.review_queue (digest bytea PRIMARY KEY, event text NOT NULL);
        CREATE TABLE public.publications (repository_id bigint NOT NULL, tag text NOT NULL);
        CREATE TABLE public.repositories (id bigint NOT NULL PRIMARY KEY, name text NOT NULL, tags int NOT NULL DEFAULT 0) PARTITION BY HASH (id);
        CREATE TABLE public.blobs (digest bytea NOT NULL PRIMARY KEY, size bigint NOT NULL) PARTITION BY HASH (digest);
        CREATE TABLE public.tags (repository_id bigint NOT NULL REFERENCES public.repositories (id), name text NOT NULL,
                                  PRIMARY KEY (repository_id, name)) PARTITION BY HASH (repository_id);
        SELECT format('CREATE TABLE partitions.%I PARTITION OF public.%I FOR VALUES WITH (MODULUS 16, REMAINDER %s)', t || '_' || r, t, r)
        FROM unnest(ARRAY['repositories', 'blobs', 'tags']) t, generate_series(0, 15) r \gexec

        CREATE FUNCTION public.track_blob() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO review_queue (digest, event) VALUES (NEW.digest, 'upload');
            RETURN NULL;
        END $$;
        CREATE FUNCTION public.track_tag() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE repositories SET tags = tags + 1 WHERE id = NEW.repository_id;
            INSERT INTO publications (repository_id, tag) VALUES (NEW.repository_id, NEW.name);
            RETURN NULL;
        END $$;
        CREATE FUNCTION public.count_new_tags() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO publications (repository_id, tag) SELECT -1, 'batch of ' || count(*) FROM new_tags;
            RETURN NULL;
        END $$;
        CREATE TRIGGER track_blob AFTER INSERT ON public.blobs FOR EACH ROW EXECUTE FUNCTION public.track_blob();
        CREATE TRIGGER track_tag AFTER INSERT ON public.tags FOR EACH ROW EXECUTE FUNCTION public.track_tag();
        CREATE TRIGGER count_new_tags AFTER INSERT ON public.tags REFERENCING NEW TABLE AS new_tags FOR EACH STATEMENT EXECUTE FUNCTION public.count_new_tags();

        INSERT INTO public.repositories (id, name) SELECT g, 'repo-' || g FROM generate_series(1, 200) g;
        INSERT INTO public.blobs SELECT sha256(g::text::bytea), g * 100 FROM generate_series(1, 3000) g;
        INSERT INTO public.tags SELECT 1 + g % 200, 'v' || g FROM generate_series(1, 1000) g;
        """;

    private const string Digest = """
        SELECT (SELECT count(*) || ':' || md5(string_agg(encode(digest, 'hex') || event, ',' ORDER BY digest)) FROM public.review_queue)
            || ' ' || (SELECT count(*) || ':' || md5(string_agg(repository_id || tag, ',' ORDER BY repository_id, tag)) FROM public.publications)
            || ' ' || (SELECT sum(tags) || ':' || md5(string_agg(id || name || tags, ',' ORDER BY id)) FROM public.repositories)
            || ' ' || (SELECT count(*) FROM public.blobs) || ' ' || (SELECT count(*) FROM public.tags)
        """;

    [TestMethod]
    public async Task ParentLevelTriggers_NeverFireWhileTheDataLoads()
    {
        await using var node = await FidelityNode.CreateAsync();
        var script = Path.Combine(Path.GetTempPath(), "rdr-triggers-" + Guid.NewGuid().ToString("N") + ".sql");
        await File.WriteAllTextAsync(script, Schema);
        try { await node.PsqlFileAsync(script, new Dictionary<string, string>()); }
        finally { File.Delete(script); }
        node.Options.Restore.Jobs = 4;
        var before = await node.ScalarAsync<string>(Digest);
        StringAssert.StartsWith(before, "3000:");
        StringAssert.EndsWith(before, " 3000 1000");
        var store = node.CreateStore();
        var manifest = await node.BackupAsync(store);
        Assert.IsEmpty(manifest.SplitTables);

        await node.DropDatabaseAsync();
        await node.RestoreAsync(store);

        // Exactly the rows that were there: no trigger ran during the load.
        Assert.AreEqual(before, await node.ScalarAsync<string>(Digest));
        Assert.AreEqual(1001L, await node.ScalarAsync<long>("SELECT count(*) FROM public.publications"));
        Assert.AreEqual(1000L, await node.ScalarAsync<long>("SELECT sum(tags) FROM public.repositories"));
        // ...and the triggers are there afterwards, as they were.
        await node.ExecuteAsync("SET search_path = public; INSERT INTO public.tags VALUES (7, 'after-restore')");
        Assert.AreEqual(1003L, await node.ScalarAsync<long>("SELECT count(*) FROM public.publications"));

        var drill = await node.DrillAsync(store, manifest.BackupId);
        Assert.IsTrue(drill.Succeeded, drill.Failure);
    }
}
