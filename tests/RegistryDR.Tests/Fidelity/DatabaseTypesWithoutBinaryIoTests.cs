using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// A column whose own type has binary send/receive (an array, a domain, a composite, a range) but
/// which holds a type that has none — the built-in <c>aclitem</c>, an extension's type such as
/// <c>seg</c> — makes a binary COPY fail. Such tables must stay in pg_dump.
/// </summary>
[TestClass]
public sealed class DatabaseTypesWithoutBinaryIoTests
{
    private const string Schema = """
        CREATE EXTENSION cube;
        CREATE EXTENSION seg;
        CREATE DOMAIN public.acl_list AS aclitem[];
        CREATE DOMAIN public.box3 AS cube;
        CREATE TYPE public.grant_note AS (item aclitem, note text);
        CREATE TYPE public.cube_span AS RANGE (subtype = cube);
        CREATE TABLE public.grants (id int PRIMARY KEY, acl aclitem[], acl_domain public.acl_list, note public.grant_note);
        CREATE TABLE public.shapes (id int PRIMARY KEY, cubes cube[], box public.box3, spans public.cube_span, lengths seg[], spanset public.cube_span_multirange);
        CREATE TABLE public.plain (id int PRIMARY KEY, body text);
        INSERT INTO public.grants SELECT g, '{postgres=r/postgres,=w/postgres}', '{postgres=a/postgres}', ROW('postgres=U/postgres'::aclitem, 'n' || g)::public.grant_note
        FROM generate_series(1, 300) g;
        INSERT INTO public.shapes SELECT g, ARRAY['(1,2)'::cube, '(3,4),(5,6)'::cube], '(7,8,9)', '["(1)","(2)")', ARRAY['1 .. 2'::seg],
               '{["(1)","(2)"),["(3)","(4)")}'
        FROM generate_series(1, 300) g;
        INSERT INTO public.plain SELECT g, repeat('p', 40) FROM generate_series(1, 300) g;
        """;

    [TestMethod]
    public async Task TypesWithoutBinaryIoInsideOtherTypes_StayInPgDump_AndRestoreExactly()
    {
        await using var node = await FidelityNode.CreateAsync();
        node.ForceSplitting();
        await node.ExecuteAsync(Schema);
        var store = node.CreateStore();

        var manifest = await node.BackupAsync(store);
        CollectionAssert.AreEqual(new[] { "public.plain" }, manifest.SplitTables.Select(t => t.Schema + "." + t.Name).ToArray());

        await node.DropDatabaseAsync();
        await node.RestoreAsync(store);

        CollectionAssert.AreEqual(new[] { "{postgres=r/postgres,=w/postgres}|{postgres=a/postgres}|(postgres=U/postgres,n7)" },
            await node.LinesAsync("SELECT format('%s|%s|%s', acl, acl_domain, note) FROM public.grants WHERE id = 7"));
        CollectionAssert.AreEqual(new[] { "{\"(1, 2)\",\"(3, 4),(5, 6)\"}|(7, 8, 9)|[\"(1)\",\"(2)\")|{\"1 .. 2\"}|{[\"(1)\",\"(2)\"),[\"(3)\",\"(4)\")}" },
            await node.LinesAsync("SELECT format('%s|%s|%s|%s|%s', cubes, box, spans, lengths, spanset) FROM public.shapes WHERE id = 7"));
        Assert.AreEqual(300L, await node.ScalarAsync<long>("SELECT count(*) FROM public.grants"));
        Assert.AreEqual(300L, await node.ScalarAsync<long>("SELECT count(*) FROM public.shapes"));
        Assert.AreEqual(300L, await node.ScalarAsync<long>("SELECT count(*) FROM public.plain"));
    }
}
