using RegistryDR.Restore;

namespace RegistryDR.Tests.Restore;

[TestClass]
public sealed class RolesScriptTests
{
    private const string Globals = """
        CREATE ROLE postgres;
        ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:abc=$def=:ghi=';
        CREATE ROLE registry_app;
        ALTER ROLE registry_app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x=$y=:z=';
        GRANT registry_app TO postgres GRANTED BY postgres;
        """;

    [TestMethod]
    public void CreateRole_BecomesCreateUnlessItExists()
    {
        var script = RestoreService.MakeRolesIdempotent(Globals, "postgres");
        StringAssert.Contains(script, "DO $registrydr$ BEGIN CREATE ROLE registry_app; EXCEPTION WHEN duplicate_object THEN NULL; END $registrydr$;");
        Assert.DoesNotContain("\nCREATE ROLE", "\n" + script);
    }

    [TestMethod]
    public void TheConnectingRoleKeepsItsPassword_OthersGetTheirsFromTheBackup()
    {
        var script = RestoreService.MakeRolesIdempotent(Globals, "postgres");
        StringAssert.Contains(script, "ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;");
        StringAssert.Contains(script, "ALTER ROLE registry_app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x=$y=:z=';");
        StringAssert.Contains(script, "GRANT registry_app TO postgres GRANTED BY postgres;");
    }
}
