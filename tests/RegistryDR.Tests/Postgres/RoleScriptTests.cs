using RegistryDR.Postgres;

namespace RegistryDR.Tests.Postgres;

/// <summary>
/// pg_dumpall's roles script made replayable by statement, not by line: quoted names may hold
/// ';', line breaks, quotes and SQL. (Replayed against a server in Fidelity/RoleNamesTests.)
/// </summary>
[TestClass]
public sealed class RoleScriptTests
{
    private const string Globals = """"
        \restrict abc123
        SET default_transaction_read_only = off;
        -- CREATE ROLE "in a comment";
        CREATE ROLE "ops;
        team";
        ALTER ROLE "ops;
        team" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
        CREATE ROLE "evil; DROP ROLE postgres; --";
        CREATE ROLE "has $registrydr$ in it";
        CREATE ROLE "me ""myself""";
        ALTER ROLE "me ""myself""" WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:a=$b=:c=';
        ALTER ROLE other WITH LOGIN PASSWORD 'it''s; secret';
        COMMENT ON ROLE "ops;
        team" IS 'CREATE ROLE x; -- not a statement';
        CREATE TABLESPACE "fast;disk" OWNER postgres LOCATION '/srv/fast';
        \unrestrict abc123

        """";

    [TestMethod]
    public void EveryCreateRole_IsGuardedWhole_AndNothingElseChanges()
    {
        var script = RoleScript.MakeIdempotent(Globals, "me \"myself\"");
        Assert.AreEqual(""""
            \restrict abc123
            SET default_transaction_read_only = off;
            -- CREATE ROLE "in a comment";
            DO $registrydr$ BEGIN CREATE ROLE "ops;
            team"; EXCEPTION WHEN duplicate_object THEN NULL; END $registrydr$;
            ALTER ROLE "ops;
            team" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
            DO $registrydr$ BEGIN CREATE ROLE "evil; DROP ROLE postgres; --"; EXCEPTION WHEN duplicate_object THEN NULL; END $registrydr$;
            DO $registrydr1$ BEGIN CREATE ROLE "has $registrydr$ in it"; EXCEPTION WHEN duplicate_object THEN NULL; END $registrydr1$;
            DO $registrydr$ BEGIN CREATE ROLE "me ""myself"""; EXCEPTION WHEN duplicate_object THEN NULL; END $registrydr$;
            ALTER ROLE "me ""myself""" WITH SUPERUSER LOGIN;
            ALTER ROLE other WITH LOGIN PASSWORD 'it''s; secret';
            COMMENT ON ROLE "ops;
            team" IS 'CREATE ROLE x; -- not a statement';
            DO $registrydr$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_tablespace WHERE spcname = 'fast;disk') THEN RAISE EXCEPTION 'tablespace % does not exist on this server; create it first (the backup''s server had: %)', 'fast;disk', 'CREATE TABLESPACE "fast;disk" OWNER postgres LOCATION ''/srv/fast'';'; END IF; END $registrydr$;
            \unrestrict abc123

            """", script);
    }

    [TestMethod]
    public void AnUnquotedConnectingRole_IsMatchedCaseFolded_AndOnlyItsPasswordGoes()
    {
        var script = RoleScript.MakeIdempotent("ALTER ROLE Postgres WITH LOGIN PASSWORD 'x';\nALTER ROLE \"Postgres\" WITH LOGIN PASSWORD 'y';\n", "postgres");
        Assert.AreEqual("ALTER ROLE Postgres WITH LOGIN;\nALTER ROLE \"Postgres\" WITH LOGIN PASSWORD 'y';\n", script);
    }

    [TestMethod]
    public void BytesOfAnyEncoding_PassThroughUnchanged()
    {
        // "café" in Latin-1 and "角色" in UTF8: every byte comes back as it was.
        byte[] globals = [.. "CREATE ROLE \"caf"u8, 0xE9, .. "\";\nCREATE ROLE \"\u89d2\u8272\";\n"u8];
        var script = RoleScript.ToBytes(RoleScript.MakeIdempotent(RoleScript.FromBytes(globals), RoleScript.AsScriptText("postgres")));
        byte[] expected = [.. "DO $registrydr$ BEGIN CREATE ROLE \"caf"u8, 0xE9, .. "\"; EXCEPTION WHEN duplicate_object THEN NULL; END $registrydr$;\nDO $registrydr$ BEGIN CREATE ROLE \"\u89d2\u8272\"; EXCEPTION WHEN duplicate_object THEN NULL; END $registrydr$;\n"u8];
        CollectionAssert.AreEqual(expected, script);
    }

    [TestMethod]
    public void DollarQuotesAndEscapeStrings_DoNotEndAStatement()
    {
        var statements = RoleScript.Statements("COMMENT ON ROLE a IS $x$ ; $x$; COMMENT ON ROLE b IS E'\\' ; '; SELECT 1").Select(s => s.Tokens.Count).ToList();
        Assert.HasCount(2, statements);
    }
}
