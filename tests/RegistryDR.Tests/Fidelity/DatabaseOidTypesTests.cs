using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Columns whose values are OIDs of catalog objects (regclass, regtype, regproc, ... and any
/// array, domain, composite or range of them). pg_dump writes them as names, so they follow their
/// object to its new OID on restore; a binary COPY writes the raw OID, which after a restore names
/// nothing or another object. Such tables must never be split, whatever the threshold.
/// </summary>
[TestClass]
public sealed class DatabaseOidTypesTests
{
    private static string Schema(string role) => $$"""
        CREATE SCHEMA registry;
        CREATE TABLE registry.repositories (id int PRIMARY KEY);
        CREATE TABLE public.tags (id int PRIMARY KEY, name text);
        INSERT INTO public.tags SELECT g, 'tag-' || g FROM generate_series(1, 400) g;
        CREATE TYPE public.visibility AS ENUM ('public', 'private');
        CREATE FUNCTION public.touch(integer) RETURNS integer LANGUAGE sql AS 'SELECT $1';
        CREATE OPERATOR public.=== (LEFTARG = integer, RIGHTARG = integer, FUNCTION = int4eq);
        CREATE TEXT SEARCH DICTIONARY public.registry_dict (TEMPLATE = simple);
        CREATE TEXT SEARCH CONFIGURATION public.registry_search (COPY = simple);
        CREATE COLLATION public.registry_c (locale = 'C');
        CREATE DOMAIN public.type_ref AS regtype;
        CREATE TYPE public.owner_ref AS (who regrole, note text);
        CREATE TYPE public.proc_span AS RANGE (subtype = oid);

        CREATE TABLE public.audit_log (
            id int PRIMARY KEY,
            rel regclass, typ regtype, proc regproc, procedure regprocedure, oper regoper, operator regoperator,
            config regconfig, dict regdictionary, nsp regnamespace, role regrole, coll regcollation,
            rels regclass[], typ_ref public.type_ref, owner public.owner_ref, owners public.owner_ref[],
            raw_oid oid, span public.proc_span, txid xid, tuple tid, cmd cid);
        INSERT INTO public.audit_log
        SELECT g, CASE WHEN g % 2 = 0 THEN 'registry.repositories'::regclass ELSE 'public.tags'::regclass END,
               'public.visibility'::regtype, 'public.touch'::regproc, 'public.touch(integer)'::regprocedure,
               'public.===(integer,integer)'::regoperator::oid::regoper, 'public.===(integer,integer)'::regoperator,
               'public.registry_search'::regconfig, 'public.registry_dict'::regdictionary, 'registry'::regnamespace,
               '{{role}}'::regrole, 'public.registry_c'::regcollation,
               ARRAY['registry.repositories'::regclass, 'public.tags'::regclass], 'integer[]'::regtype,
               ROW('{{role}}'::regrole, 'owner ' || g)::public.owner_ref, ARRAY[ROW('{{role}}'::regrole, 'x')::public.owner_ref],
               4242, '[10,20)'::public.proc_span, '1234'::xid, '(3,4)'::tid, '5'::cid
        FROM generate_series(1, 300) g;
        """;

    private const string Readback = """
        SELECT format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s',
                      rel, typ, proc, procedure, oper, operator, config, dict, nsp, role, coll, rels, typ_ref, owner, owners, raw_oid, span, txid, tuple, cmd)
        FROM public.audit_log WHERE id IN (1, 2) ORDER BY id
        """;

    [TestMethod]
    public async Task OidBearingColumns_AreNeverSplit_AndNameTheSameObjectsAfterRestore()
    {
        var role = "rdr_oid_owner_" + Guid.NewGuid().ToString("N")[..8];
        var cluster = await TestEnvironment.PostgresAsync();
        var admin = FidelityNode.Unlimited(cluster.ConnectionString());
        await FidelityNode.ExecuteAsync(admin, $"CREATE ROLE {role} NOLOGIN");
        try
        {
            await using var node = await FidelityNode.CreateAsync(cluster);
            node.ForceSplitting();
            await node.ExecuteAsync(Schema(role));
            var store = node.CreateStore();
            var manifest = await node.BackupAsync(store);

            // The table without OID-bearing columns is split; the one with them stays in pg_dump.
            CollectionAssert.AreEqual(new[] { "public.tags" }, manifest.SplitTables.Select(t => t.Schema + "." + t.Name).ToArray());

            // Every object gets a new OID: the database and the role are recreated by the restore.
            await node.DropDatabaseAsync();
            await FidelityNode.ExecuteAsync(admin, $"DROP ROLE {role}");
            await node.RestoreAsync(store);

            // Read with only pg_catalog on the search path, so every name is shown schema-qualified.
            var qualified = new Npgsql.NpgsqlConnectionStringBuilder(node.ConnectionString);
            qualified.Options += " -c search_path=pg_catalog";
            var lines = await node.LinesAsync(Readback, qualified.ConnectionString);
            CollectionAssert.AreEqual(new[]
            {
                $"public.tags|public.visibility|public.touch|public.touch(integer)|public.===|public.===(integer,integer)|public.registry_search|public.registry_dict|registry|{role}|public.registry_c|{{registry.repositories,public.tags}}|integer[]|({role},\"owner 1\")|{{\"({role},x)\"}}|4242|[10,20)|1234|(3,4)|5",
                $"registry.repositories|public.visibility|public.touch|public.touch(integer)|public.===|public.===(integer,integer)|public.registry_search|public.registry_dict|registry|{role}|public.registry_c|{{registry.repositories,public.tags}}|integer[]|({role},\"owner 2\")|{{\"({role},x)\"}}|4242|[10,20)|1234|(3,4)|5",
            }, lines);
            Assert.AreEqual(150, await node.ScalarAsync<long>("SELECT count(*) FROM public.audit_log WHERE rel = 'registry.repositories'::regclass"));
            Assert.AreEqual(150, await node.ScalarAsync<long>("SELECT count(*) FROM public.audit_log WHERE rel = 'public.tags'::regclass"));
            Assert.AreEqual(300, await node.ScalarAsync<long>($"SELECT count(*) FROM public.audit_log WHERE role = '{role}'::regrole AND (owner).who = '{role}'::regrole"));
            Assert.AreEqual(400, await node.ScalarAsync<long>("SELECT count(*) FROM public.tags"));
        }
        finally
        {
            await FidelityNode.ExecuteAsync(admin, $"DROP ROLE IF EXISTS {role}");
        }
    }
}
