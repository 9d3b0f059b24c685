using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Role names may hold anything a quoted identifier can: ';', line breaks, quotes, spaces,
/// backslashes, dollar signs, non-ASCII letters, SQL. The roles step must restore them on a node
/// where the roles still exist (the usual case: only the database was lost) and on one where they
/// do not. The cluster is this class's own: the roles are cluster-wide.
/// </summary>
[TestClass]
public sealed class RoleNamesTests
{
    private static readonly string[] Names =
    [
        "registry;readonly", "ops\nteam", "it's \"quoted\"", "with space", "ünïcødé 角色", "$registrydr$ dollar", "back\\slash",
        "evil; DROP ROLE postgres; --", "$$ dollars $$",
    ];

    private static string Ident(string name) => "\"" + name.Replace("\"", "\"\"") + "\"";

    private static string CreateRoles() =>
        string.Join("\n", Names.Select(n => $"CREATE ROLE {Ident(n)} {(n == "registry;readonly" ? "LOGIN PASSWORD 'ro'" : "NOLOGIN")};"))
        + $"\nGRANT {Ident("ops\nteam")} TO {Ident("registry;readonly")};\nCOMMENT ON ROLE {Ident("with space")} IS 'a role; with a comment';";

    [TestMethod]
    public async Task AwkwardRoleNames_RestoreWhereTheRolesExist_AndWhereTheyDoNot()
    {
        await using var cluster = await PostgresCluster.StartAsync();
        var admin = FidelityNode.Unlimited(cluster.ConnectionString());
        await FidelityNode.ExecuteAsync(admin, CreateRoles());
        await using var node = await FidelityNode.CreateAsync(cluster);
        await node.ExecuteAsync("CREATE TABLE public.t (i int); INSERT INTO public.t SELECT generate_series(1, 5);"
            + string.Concat(Names.Select(n => $"GRANT SELECT ON public.t TO {Ident(n)};")));
        const string Acl = "SELECT relacl::text FROM pg_class WHERE oid = 'public.t'::regclass";
        var aclBefore = await node.ScalarAsync<string>(Acl);
        var store = node.CreateStore();
        await node.BackupAsync(store);

        // Only the database is lost; the roles are still there.
        await node.DropDatabaseAsync();
        await node.RestoreAsync(store);
        await AssertRestoredAsync(node, cluster, aclBefore);

        // A fresh server: the roles are gone too.
        await node.DropDatabaseAsync();
        await FidelityNode.ExecuteAsync(admin, string.Concat(Names.Select(n => $"DROP ROLE {Ident(n)};")));
        Assert.AreEqual(0L, await node.ScalarAsync<long>("SELECT count(*) FROM pg_roles WHERE rolname LIKE '%;%' OR rolname LIKE '% %'", admin));
        await node.RestoreAsync(store);
        await AssertRestoredAsync(node, cluster, aclBefore);
    }

    private static async Task AssertRestoredAsync(FidelityNode node, PostgresCluster cluster, string aclBefore)
    {
        var admin = FidelityNode.Unlimited(cluster.ConnectionString());
        CollectionAssert.AreEqual(Names.Order(StringComparer.Ordinal).ToArray(), (await node.LinesAsync(
            "SELECT rolname::text FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> 'postgres' ORDER BY rolname COLLATE \"C\"", admin)).ToArray());
        CollectionAssert.AreEqual(Names.Select(n => n + ":SELECT").ToArray(), (await node.LinesAsync(
            "SELECT pg_get_userbyid(x.grantee) || ':' || x.privilege_type FROM pg_class c, aclexplode(c.relacl) WITH ORDINALITY x(grantor, grantee, privilege_type, is_grantable, n) WHERE c.oid = 'public.t'::regclass AND x.grantee <> c.relowner ORDER BY n")).ToArray());
        Assert.AreEqual(aclBefore, await node.ScalarAsync<string>("SELECT relacl::text FROM pg_class WHERE oid = 'public.t'::regclass"));
        CollectionAssert.AreEqual(new[] { "ops\nteam -> registry;readonly" }, await node.LinesAsync(
            "SELECT r.rolname || ' -> ' || m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member WHERE r.rolname !~ '^pg_'", admin));
        Assert.AreEqual("a role; with a comment", await node.ScalarAsync<string>("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'with space'", admin));
        CollectionAssert.AreEqual(new[] { "registry;readonly" }, await node.LinesAsync("SELECT rolname::text FROM pg_roles WHERE rolcanlogin AND rolname <> 'postgres'", admin));
        // The login role's password came back with it.
        var asReader = new Npgsql.NpgsqlConnectionStringBuilder(cluster.ConnectionString(node.Database, "registry;readonly", "ro")).ConnectionString;
        Assert.AreEqual(5L, await node.ScalarAsync<long>("SELECT count(*) FROM public.t", asReader));
    }
}
