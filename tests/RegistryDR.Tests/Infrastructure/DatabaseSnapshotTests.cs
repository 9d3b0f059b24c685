using System.Diagnostics;
using Npgsql;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// The database oracle sees every property a restore must keep: for each one, two databases
/// built the same way except for that property, and the oracle must report exactly the expected
/// difference lines (and none for two equal databases, or after a faithful pg_dump/pg_restore).
/// </summary>
[TestClass]
public sealed class DatabaseSnapshotTests
{
    private static readonly string Suffix = Guid.NewGuid().ToString("N")[..8];

    /// <summary>A login role that owns things, and a NOLOGIN role that receives grants; unique to this run.</summary>
    private static readonly string RoleA = "oracle_a_" + Suffix, RoleB = "oracle_b_" + Suffix;

    private static readonly List<string> Databases = [];

    [ClassInitialize]
    public static async Task CreateRolesAsync(TestContext context)
    {
        _ = context;
        await AdminAsync($"""
            CREATE ROLE {RoleA} LOGIN PASSWORD 'oracle-a';
            CREATE ROLE {RoleB} NOLOGIN;
            GRANT {RoleB} TO {RoleA};
            ALTER ROLE {RoleB} SET work_mem = '4MB';
            """);
    }

    [ClassCleanup]
    public static async Task DropRolesAsync()
    {
        var cluster = await TestEnvironment.PostgresAsync();
        foreach (var database in Databases)
        {
            await cluster.DropDatabaseAsync(database);
        }

        // Roles may still be referenced from another database's pg_default_acl / shdepend if a test failed half-way.
        foreach (var role in new[] { RoleA, RoleB })
        {
            try { await AdminAsync($"DROP ROLE IF EXISTS {role}"); }
            catch (PostgresException) { }
        }
    }

    /// <summary>One property: SQL run in both databases, then a change run in the second only.</summary>
    /// <param name="Mutation">Run in database B; lines starting with <c>ADMIN:</c> run in the maintenance database.</param>
    /// <param name="Expected">Exactly the difference lines the oracle must report (or, with
    /// <paramref name="Exact"/> false, lines it must report among others).</param>
    public sealed record PropertyCase(string Setup, string Mutation, string[] Expected, bool Exact = true, string CreateA = "", string CreateB = "");

    private static TestDataRow<PropertyCase> Case(string name, string setup, string mutation, params string[] expected) =>
        new(new PropertyCase(setup, mutation, expected)) { DisplayName = name };

    private static TestDataRow<PropertyCase> Case(string name, PropertyCase value) => new(value) { DisplayName = name };

    private const string Table = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two');";

    public static IEnumerable<TestDataRow<PropertyCase>> Cases =>
    [
        // --- rows and relations
        Case("rows: a changed value in another schema",
            "CREATE SCHEMA part; CREATE TABLE part.x (id int, v text); INSERT INTO part.x VALUES (1, 'a'), (2, 'b');",
            "UPDATE part.x SET v = 'c' WHERE id = 2",
            "relation part.x rows: row hash differs (2 rows in both); row 2 in row-text order: expected (2,b) got (2,c)"),
        Case("rows: a missing row",
            Table, "DELETE FROM t WHERE id = 2",
            "relation public.t rows: row hash differs (expected 2 rows got 1); first missing row: (2,two)"),
        Case("rows: physical order does not matter",
            "CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two');",
            "DELETE FROM t; INSERT INTO t VALUES (2, 'two'), (1, 'one')"),
        Case("rows: a child's rows are its own, not its parent's",
            "CREATE TABLE p (id int); CREATE TABLE c () INHERITS (p); INSERT INTO c VALUES (1);",
            "DELETE FROM c; INSERT INTO p VALUES (1)",
            "relation public.c rows: row hash differs (expected 1 rows got 0); first missing row: (1)",
            "relation public.p rows: row hash differs (expected 0 rows got 1); first extra row: (1)"),
        Case("rows: bytes that are not UTF-8 (SQL_ASCII)", new PropertyCase(
            "CREATE TABLE t (v text); INSERT INTO t VALUES (convert_from('\\x636166e9', 'SQL_ASCII'));",
            "UPDATE t SET v = convert_from('\\x636166e8', 'SQL_ASCII')",
            ["relation public.t rows: row hash differs (1 rows in both); row 1 in row-text order: expected (not UTF-8) (caf\\xe9) got (not UTF-8) (caf\\xe8)"],
            CreateA: "TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
            CreateB: "TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'")),
        Case("rows: hash partitions on an enum are compared through their parent",
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE TABLE h (id int, m mood) PARTITION BY HASH (m); "
            + "CREATE TABLE h0 PARTITION OF h FOR VALUES WITH (MODULUS 2, REMAINDER 0); CREATE TABLE h1 PARTITION OF h FOR VALUES WITH (MODULUS 2, REMAINDER 1); "
            + "INSERT INTO h SELECT g, (ARRAY['sad','ok','happy'])[1 + g % 3]::mood FROM generate_series(1, 30) g;",
            "UPDATE h SET id = 31 WHERE id = 30",
            "relation public.h rows: row hash differs (30 rows in both); row 24 in row-text order: expected (30,sad) got (31,sad)"),
        Case("relation kind",
            "CREATE TABLE k AS SELECT 1 AS one;", "DROP TABLE k; CREATE MATERIALIZED VIEW k AS SELECT 1 AS one",
            "relation public.k kind: expected table got materialized view",
            "view public.k: unexpected (got definition= SELECT 1 AS one;)"),
        Case("relation persistence", Table, "ALTER TABLE t SET UNLOGGED", "relation public.t persistence: expected permanent got unlogged"),
        Case("materialized view populated",
            "CREATE MATERIALIZED VIEW mv AS SELECT 1 AS one;", "REFRESH MATERIALIZED VIEW mv WITH NO DATA",
            "relation public.mv populated: expected t got f", "relation public.mv rows: missing (expected 1 rows)"),
        Case("partition bound",
            "CREATE TABLE p (a int) PARTITION BY RANGE (a); CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);",
            "ALTER TABLE p DETACH PARTITION p1; ALTER TABLE p ATTACH PARTITION p1 FOR VALUES FROM (0) TO (20)",
            "relation public.p1 partition bound: expected FOR VALUES FROM (0) TO (10) got FOR VALUES FROM (0) TO (20)"),
        Case("partition key",
            "CREATE TABLE p (a int, b int) PARTITION BY RANGE (a);", "DROP TABLE p; CREATE TABLE p (a int, b int) PARTITION BY RANGE (b)",
            "relation public.p partition key: expected RANGE (a) got RANGE (b)"),
        Case("inheritance parents",
            "CREATE TABLE par1 (a int); CREATE TABLE par2 (a int); CREATE TABLE ch (a int) INHERITS (par1);",
            "ALTER TABLE ch NO INHERIT par1; ALTER TABLE ch INHERIT par2",
            "relation public.ch inherits: expected [public.par1] got [public.par2]"),
        Case("table options", Table, "ALTER TABLE t SET (fillfactor = 70)", "relation public.t options: expected {} got {fillfactor=70}"),
        Case("replica identity", Table, "ALTER TABLE t REPLICA IDENTITY FULL", "relation public.t replica identity: expected d got f"),
        Case("row level security", Table, "ALTER TABLE t ENABLE ROW LEVEL SECURITY", "relation public.t row security: expected f got t"),
        Case("forced row level security", Table, "ALTER TABLE t FORCE ROW LEVEL SECURITY", "relation public.t force row security: expected f got t"),
        Case("column default", Table, "ALTER TABLE t ALTER COLUMN v SET DEFAULT 'x'", "column public.t.v default: expected (none) got 'x'::text"),
        Case("column not null", Table, "ALTER TABLE t ALTER COLUMN v SET NOT NULL", "column public.t.v not null: expected f got t"),
        Case("column collation", "CREATE TABLE t (v text COLLATE \"C\");", "ALTER TABLE t ALTER COLUMN v TYPE text COLLATE \"POSIX\"",
            "column public.t.v collation: expected \"C\" got \"POSIX\""),
        Case("column order", "CREATE TABLE t (a int, b int);", "DROP TABLE t; CREATE TABLE t (b int, a int)",
            "column public.t.a position: expected 1 got 2", "column public.t.b position: expected 2 got 1"),
        Case("view definition", "CREATE VIEW v AS SELECT 1 AS one;", "CREATE OR REPLACE VIEW v AS SELECT 2 AS one",
            "view public.v definition: expected  SELECT 1 AS one; got  SELECT 2 AS one;"),

        // --- sequences
        Case("sequence value", "CREATE SCHEMA s; CREATE SEQUENCE s.q;", "SELECT nextval('s.q')",
            "sequence s.q value: expected last_value=1 is_called=f got last_value=1 is_called=t"),
        Case("sequence is_called", "CREATE SEQUENCE q; SELECT setval('q', 5, true);", "SELECT setval('q', 5, false)",
            "sequence public.q value: expected last_value=5 is_called=t got last_value=5 is_called=f"),
        Case("sequence parameters", "CREATE SEQUENCE q;", "ALTER SEQUENCE q INCREMENT BY 5 CACHE 10",
            "sequence public.q increment: expected 1 got 5", "sequence public.q cache: expected 1 got 10"),

        // --- code
        Case("function body",
            "CREATE FUNCTION f(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 1';",
            "CREATE OR REPLACE FUNCTION f(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 2'",
            "function public.f(integer) definition: expected CREATE OR REPLACE FUNCTION public.f(i integer)\\n RETURNS integer\\n LANGUAGE sql\\nAS $function$SELECT i + 1$function$\\n "
            + "got CREATE OR REPLACE FUNCTION public.f(i integer)\\n RETURNS integer\\n LANGUAGE sql\\nAS $function$SELECT i + 2$function$\\n"),
        Case("procedure", "", "CREATE PROCEDURE pr() LANGUAGE sql AS 'SELECT 1'",
            "procedure public.pr(): unexpected (got owner=postgres acl={=X/postgres,postgres=X/postgres} definition=CREATE OR REPLACE PROCEDURE public.pr()\\n LANGUAGE sql\\nAS $procedure$SELECT 1$procedure$\\n)"),
        Case("trigger definition",
            Table + " CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION tf();",
            "DROP TRIGGER tr ON t; CREATE TRIGGER tr BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION tf()",
            "trigger tr on public.t definition: expected CREATE TRIGGER tr BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.tf() "
            + "got CREATE TRIGGER tr BEFORE UPDATE ON public.t FOR EACH ROW EXECUTE FUNCTION public.tf()"),
        Case("trigger enabled",
            Table + " CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION tf();",
            "ALTER TABLE t DISABLE TRIGGER tr", "trigger tr on public.t enabled: expected O got D"),
        Case("event trigger",
            "CREATE FUNCTION ef() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN NULL; END';",
            "CREATE EVENT TRIGGER et ON ddl_command_end EXECUTE FUNCTION ef(); ALTER EVENT TRIGGER et DISABLE",
            "event trigger et: unexpected (got event=ddl_command_end function=public.ef() enabled=D tags={} owner=postgres)"),
        Case("event trigger enabled",
            "CREATE FUNCTION ef() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN NULL; END'; CREATE EVENT TRIGGER et ON ddl_command_end EXECUTE FUNCTION ef(); ALTER EVENT TRIGGER et DISABLE;",
            "ALTER EVENT TRIGGER et ENABLE REPLICA", "event trigger et enabled: expected D got R"),
        Case("policy", Table + " CREATE POLICY pol ON t USING (id > 0);", "DROP POLICY pol ON t; CREATE POLICY pol ON t USING (id > 1)",
            "policy pol on public.t using: expected (id > 0) got (id > 1)"),
        Case("rule", Table, "CREATE RULE no_delete AS ON DELETE TO t DO INSTEAD NOTHING",
            "rule no_delete on public.t: unexpected (got definition=CREATE RULE no_delete AS\\n    ON DELETE TO public.t DO INSTEAD NOTHING; enabled=O)"),
        // An extension brings its members (functions, types, operators): those differ too.
        Case("extension", new PropertyCase("", "CREATE EXTENSION hstore",
            ["extension hstore: unexpected (got version=1.8 schema=public relocatable=t configuration tables={} conditions={})"], Exact: false)),
        Case("extension version", new PropertyCase("CREATE EXTENSION hstore VERSION '1.7';", "ALTER EXTENSION hstore UPDATE TO '1.8'",
            ["extension hstore version: expected 1.7 got 1.8"], Exact: false)),
        Case("extension schema", new PropertyCase("CREATE SCHEMA other; CREATE EXTENSION hstore;", "ALTER EXTENSION hstore SET SCHEMA other",
            ["extension hstore schema: expected public got other"], Exact: false)),
        Case("constraint definition", Table + " ALTER TABLE t ADD CONSTRAINT positive CHECK (id > 0);",
            "ALTER TABLE t DROP CONSTRAINT positive; ALTER TABLE t ADD CONSTRAINT positive CHECK (id < 10)",
            "constraint positive on public.t definition: expected CHECK ((id > 0)) got CHECK ((id < 10))"),
        Case("constraint validated", Table + " ALTER TABLE t ADD CONSTRAINT positive CHECK (id > 0) NOT VALID;",
            "ALTER TABLE t VALIDATE CONSTRAINT positive",
            "constraint positive on public.t definition: expected CHECK ((id > 0)) NOT VALID got CHECK ((id > 0))",
            "constraint positive on public.t validated: expected f got t"),
        Case("index definition", Table + " CREATE INDEX t_v ON t (v);", "DROP INDEX t_v; CREATE INDEX t_v ON t (v DESC)",
            "index public.t_v definition: expected CREATE INDEX t_v ON public.t USING btree (v) got CREATE INDEX t_v ON public.t USING btree (v DESC)"),
        Case("index valid", Table + " CREATE INDEX t_v ON t (v);", "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'public.t_v'::regclass",
            "index public.t_v valid: expected t got f"),
        Case("index clustered", Table, "ALTER TABLE t CLUSTER ON t_pkey", "index public.t_pkey clustered: expected f got t"),

        // --- types
        Case("enum label order", "CREATE TYPE e AS ENUM ('a', 'b');", "ALTER TYPE e ADD VALUE 'c' BEFORE 'a'",
            "type public.e definition: expected enum ('a', 'b') got enum ('c', 'a', 'b')"),
        Case("enum labels", "CREATE TYPE e AS ENUM ('a', 'b');", "ALTER TYPE e RENAME VALUE 'b' TO 'B'",
            "type public.e definition: expected enum ('a', 'b') got enum ('a', 'B')"),
        Case("domain", "CREATE DOMAIN d AS int DEFAULT 1;", "ALTER DOMAIN d SET DEFAULT 2",
            "type public.d definition: expected domain over integer not null=f default=1 collation=- got domain over integer not null=f default=2 collation=-"),
        Case("domain constraint", "CREATE DOMAIN d AS int CONSTRAINT positive CHECK (VALUE > 0);",
            "ALTER DOMAIN d DROP CONSTRAINT positive; ALTER DOMAIN d ADD CONSTRAINT positive CHECK (VALUE > 1)",
            "constraint positive on domain public.d definition: expected CHECK ((VALUE > 0)) got CHECK ((VALUE > 1))"),
        Case("composite type", "CREATE TYPE c AS (x int, y text);", "ALTER TYPE c ALTER ATTRIBUTE y TYPE varchar(10)",
            "type public.c definition: expected composite (x integer collation=-, y text collation=\"default\") got composite (x integer collation=-, y character varying(10) collation=\"default\")"),
        Case("range type", "CREATE TYPE r AS RANGE (subtype = float8);", "DROP TYPE r; CREATE TYPE r AS RANGE (subtype = float8, subtype_diff = float8mi)",
            "type public.r definition: expected range over double precision collation=- operator class=operator class float8_ops for access method btree canonical=- subtype diff=- multirange=public.r_multirange "
            + "got range over double precision collation=- operator class=operator class float8_ops for access method btree canonical=- subtype diff=float8mi multirange=public.r_multirange"),

        // --- comments
        Case("comment", Table, "COMMENT ON TABLE t IS 'rows'", "comment on table public.t: unexpected (got rows)"),
        Case("comment on a column", Table, "COMMENT ON COLUMN t.v IS 'the value'", "comment on column v of table public.t: unexpected (got the value)"),

        // --- ownership and privileges at every level
        Case("schema owner", "CREATE SCHEMA s;", "ALTER SCHEMA s OWNER TO {a}",
            "schema s owner: expected postgres got {a}", "schema s acl: expected {postgres=UC/postgres} got {{a}=UC/{a}}"),
        Case("schema acl", "CREATE SCHEMA s;", "GRANT USAGE ON SCHEMA s TO {b}",
            "schema s acl: expected {postgres=UC/postgres} got {{b}=U/postgres,postgres=UC/postgres}"),
        Case("relation owner", Table, "ALTER TABLE t OWNER TO {a}",
            "relation public.t owner: expected postgres got {a}", "relation public.t acl: expected {postgres=arwdDxt/postgres} got {{a}=arwdDxt/{a}}"),
        Case("relation acl", Table, "GRANT SELECT ON t TO {b}",
            "relation public.t acl: expected {postgres=arwdDxt/postgres} got {{b}=r/postgres,postgres=arwdDxt/postgres}"),
        Case("column acl", Table, "GRANT SELECT (v) ON t TO {b}", "column public.t.v acl: expected {} got {{b}=r/postgres}"),
        Case("function owner", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';", "ALTER FUNCTION f() OWNER TO {a}",
            "function public.f() owner: expected postgres got {a}",
            "function public.f() acl: expected {=X/postgres,postgres=X/postgres} got {=X/{a},{a}=X/{a}}"),
        Case("function acl", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';", "REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC",
            "function public.f() acl: expected {=X/postgres,postgres=X/postgres} got {postgres=X/postgres}"),
        Case("system function acl", "", "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text) TO {b}",
            "system function pg_ls_dir(text): unexpected (got acl={{b}=X/postgres,postgres=X/postgres})"),
        Case("type owner", "CREATE TYPE e AS ENUM ('a');", "ALTER TYPE e OWNER TO {a}",
            "type public.e owner: expected postgres got {a}", "type public.e acl: expected {=U/postgres,postgres=U/postgres} got {=U/{a},{a}=U/{a}}"),
        Case("type acl", "CREATE TYPE e AS ENUM ('a');", "REVOKE USAGE ON TYPE e FROM PUBLIC",
            "type public.e acl: expected {=U/postgres,postgres=U/postgres} got {postgres=U/postgres}"),
        Case("sequence acl", "CREATE SEQUENCE q;", "GRANT USAGE ON SEQUENCE q TO {b}",
            "relation public.q acl: expected {postgres=rwU/postgres} got {{b}=U/postgres,postgres=rwU/postgres}"),
        Case("language acl", "", "REVOKE USAGE ON LANGUAGE sql FROM PUBLIC",
            "language sql acl: expected {=U/postgres,postgres=U/postgres} got {postgres=U/postgres}"),
        Case("default privileges", "CREATE SCHEMA s;", "ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO {b}",
            "default privileges of postgres in schema s on tables: unexpected (got {{b}=r/postgres})"),
        Case("default privileges for all schemas", "", "ALTER DEFAULT PRIVILEGES FOR ROLE {a} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
            "default privileges of {a} in all schemas on functions: unexpected (got {{a}=X/{a}})"),

        // --- large objects
        Case("large object content", "SELECT lo_from_bytea(4242, 'abc');", "SELECT lo_put(4242, 1, 'X')",
            "large object 4242 sha256: expected ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad got 3f3b03b261467a830a975cd59da6f0bc0a68469c2f451e4c08e03eb6fafd6bbb"),
        Case("large object with a hole", "SELECT lo_from_bytea(4242, 'abc');", "SELECT lo_put(4242, 10000, 'Z')",
            "large object 4242 size: expected 3 got 10001",
            "large object 4242 sha256: expected ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad got 75f35865dbd4e6b25ba25b54effda1a5af578017a7d6718dd891648d25f463b9"),
        Case("large object owner", "SELECT lo_from_bytea(4242, 'abc');", "ALTER LARGE OBJECT 4242 OWNER TO {a}",
            "large object 4242 owner: expected postgres got {a}", "large object 4242 acl: expected {postgres=rw/postgres} got {{a}=rw/{a}}"),
        Case("large object acl", "SELECT lo_from_bytea(4242, 'abc');", "GRANT SELECT ON LARGE OBJECT 4242 TO {b}",
            "large object 4242 acl: expected {postgres=rw/postgres} got {{b}=r/postgres,postgres=rw/postgres}"),
        Case("large object missing", "SELECT lo_from_bytea(4242, 'abc');", "SELECT lo_unlink(4242)",
            "large object 4242: missing (expected owner=postgres acl={postgres=rw/postgres} size=3 sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad)"),

        // --- the database itself
        Case("database owner", "", "ADMIN: ALTER DATABASE {db} OWNER TO {a}",
            "database owner: expected postgres got {a}", "database acl: expected {=Tc/postgres,postgres=CTc/postgres} got {=Tc/{a},{a}=CTc/{a}}"),
        Case("database acl", "", "ADMIN: REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC",
            "database acl: expected {=Tc/postgres,postgres=CTc/postgres} got {postgres=CTc/postgres}"),
        Case("database connection limit", "", "ADMIN: ALTER DATABASE {db} CONNECTION LIMIT 7", "database connection limit: expected -1 got 7"),
        Case("database comment", "", "ADMIN: COMMENT ON DATABASE {db} IS 'the registry'", "database comment: expected (none) got the registry"),
        Case("database settings", "", "ADMIN: ALTER DATABASE {db} SET work_mem = '8MB'", "database settings: expected (none) got {work_mem=8MB}"),
        Case("role settings in the database", "", "ADMIN: ALTER ROLE {b} IN DATABASE {db} SET search_path = public",
            "role {b} settings in this database: unexpected (got {search_path=public})"),
        Case("database encoding", new PropertyCase("", "", ["database encoding: expected SQL_ASCII got LATIN1"],
            CreateA: "TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
            CreateB: "TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")),
        Case("database collate", new PropertyCase("", "", ["database collate: expected C got C.UTF-8"],
            CreateA: "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'",
            CreateB: "TEMPLATE template0 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'")),
        Case("database ctype", new PropertyCase("", "", ["database ctype: expected C got C.UTF-8"],
            CreateA: "TEMPLATE template0 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C'",
            CreateB: "TEMPLATE template0 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'")),
        Case("database locale provider", new PropertyCase("", "", ["database locale provider: expected libc got icu", "database icu locale: expected (none) got und"],
            CreateA: "TEMPLATE template0 LOCALE_PROVIDER libc",
            CreateB: "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und'")),
    ];

    // Both roles are used by every test database, so a grant to one of them changes only that grant.
    private const string RolesInUse = "CREATE TABLE roles_in_use (); ALTER TABLE roles_in_use OWNER TO {a}; GRANT SELECT ON roles_in_use TO {b};";

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public async Task Sees_the_property(PropertyCase property)
    {
        var cluster = await TestEnvironment.PostgresAsync();
        var a = await CreateDatabaseAsync(cluster, property.CreateA);
        var b = await CreateDatabaseAsync(cluster, property.CreateB);
        foreach (var database in new[] { a, b })
        {
            await ExecuteAsync(cluster.ConnectionString(database), Expand(RolesInUse + property.Setup, database));
        }

        var expected = await DatabaseSnapshot.CaptureAsync(cluster.ConnectionString(a));
        if (property.CreateA == property.CreateB)
        {
            // The baseline: built alike, the two databases are equal.
            var before = expected.Differences(await DatabaseSnapshot.CaptureAsync(cluster.ConnectionString(b)));
            CollectionAssert.AreEqual(Array.Empty<string>(), before.ToArray(), string.Join("\n", before));
        }

        // One line: one command (several statements allowed); "ADMIN: " lines run in the maintenance database.
        foreach (var statement in property.Mutation.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (statement.StartsWith("ADMIN: ", StringComparison.Ordinal))
                await ExecuteAsync(cluster.ConnectionString(), Expand(statement["ADMIN: ".Length..], b));
            else
                await ExecuteAsync(cluster.ConnectionString(b), Expand(statement, b));
        }

        var actual = await DatabaseSnapshot.CaptureAsync(cluster.ConnectionString(b));
        var differences = expected.Differences(actual).ToArray();
        var wanted = property.Expected.Select(e => Expand(e, b)).ToArray();
        if (property.Exact)
            CollectionAssert.AreEqual(wanted, differences, "got:\n" + string.Join("\n", differences));
        else
            foreach (var line in wanted) CollectionAssert.Contains(differences, line, "got:\n" + string.Join("\n", differences));
        Assert.AreEqual(wanted.Length == 0, expected.FirstDifference(actual) is null);
        await DropAsync(cluster, a, b);
    }

    [TestMethod]
    public async Task Sees_role_attributes_memberships_settings_and_passwords_of_the_roles_it_uses()
    {
        // Roles are cluster-wide, so this compares one database before and after each change.
        var cluster = await TestEnvironment.PostgresAsync();
        var role = "oracle_r_" + Guid.NewGuid().ToString("N")[..8];
        var other = "oracle_o_" + Guid.NewGuid().ToString("N")[..8];
        var database = await CreateDatabaseAsync(cluster, "");
        await AdminAsync($"CREATE ROLE {role} NOLOGIN PASSWORD 'first'; CREATE ROLE {other} NOLOGIN");
        try
        {
            var connection = cluster.ConnectionString(database);
            await ExecuteAsync(connection, $"CREATE TABLE t (a int); ALTER TABLE t OWNER TO {role}");
            var otherRole = $"role {other}: unexpected (got superuser=f inherit=t createrole=f createdb=f login=f replication=f bypassrls=f "
                + "connection limit=-1 valid until=(none) password=(none) comment=(none))";
            var steps = new (string Sql, string[] Expected)[]
            {
                ($"ALTER ROLE {role} CREATEDB", [$"role {role} createdb: expected f got t"]),
                ($"ALTER ROLE {role} CONNECTION LIMIT 3", [$"role {role} connection limit: expected -1 got 3"]),
                ($"ALTER ROLE {role} VALID UNTIL '2030-01-02 03:04:05+00'", [$"role {role} valid until: expected (none) got 2030-01-02 03:04:05+00"]),
                ($"COMMENT ON ROLE {role} IS 'owns t'", [$"role {role} comment: expected (none) got owns t"]),
                ($"GRANT {other} TO {role}", [otherRole, $"role {role} member of {other}: unexpected (got admin option=f grantor=postgres)"]),
                ($"ALTER ROLE {role} SET work_mem = '2MB'", [$"role {role} settings: unexpected (got {{work_mem=2MB}})"]),
            };
            foreach (var (sql, expected) in steps)
            {
                var before = await DatabaseSnapshot.CaptureAsync(connection);
                await AdminAsync(sql);
                var differences = before.Differences(await DatabaseSnapshot.CaptureAsync(connection)).ToArray();
                CollectionAssert.AreEqual(expected, differences, $"{sql}: got\n{string.Join("\n", differences)}");
            }

            // A new password (SCRAM verifiers are salted): a new digest, never the verifier itself.
            var withFirst = await DatabaseSnapshot.CaptureAsync(connection);
            await AdminAsync($"ALTER ROLE {role} PASSWORD 'second'");
            var withSecond = await DatabaseSnapshot.CaptureAsync(connection);
            var passwordChange = withFirst.Differences(withSecond).Single();
            StringAssert.Matches(passwordChange, new System.Text.RegularExpressions.Regex(
                $"^role {role} password: expected sha256:[0-9a-f]{{16}} got sha256:[0-9a-f]{{16}}$"));
            Assert.AreEqual("(the connecting role: not compared)", withSecond.Fact("role postgres password"));
            Assert.AreEqual("grantor", withSecond.Facts.Single(f => f.Key == $"role {role} member of {other} grantor").Key[^7..]);
        }
        finally
        {
            await DropAsync(cluster, database);
            await AdminAsync($"DROP ROLE {role}; DROP ROLE {other}");
        }
    }

    [TestMethod]
    public async Task A_database_and_its_pg_dump_create_round_trip_are_equal()
    {
        var cluster = await TestEnvironment.PostgresAsync();
        var database = await CreateDatabaseAsync(cluster, "");
        // Separate commands: a new enum value can be used only after its transaction commits.
        foreach (var part in RichDatabase.Split("-- data\n"))
            await ExecuteAsync(cluster.ConnectionString(database), Expand(part, database));
        foreach (var admin in RichDatabaseLevel.Split(";\n", StringSplitOptions.RemoveEmptyEntries))
            await ExecuteAsync(cluster.ConnectionString(), Expand(admin, database));

        var before = await DatabaseSnapshot.CaptureAsync(cluster.ConnectionString(database));
        // The rich database has every kind of fact (so "no difference" below means something).
        foreach (var key in new[]
        {
            "database owner", "database acl", "database connection limit", "database comment", "database settings",
            "role {b} settings in this database", "role {a} login", "role {a} member of {b} grantor", "role {b} settings",
            "schema part owner", "schema part acl", "extension hstore version", "relation part.events partition key",
            "relation part.events_2023 partition bound", "relation public.child inherits", "relation public.cache persistence",
            "relation public.accounts force row security", "relation part.never_filled populated", "column public.accounts.doubled generated",
            "column public.accounts.balance acl", "sequence part.ticket increment", "sequence part.ticket value", "view public.rich definition",
            "constraint balance_cap on public.accounts validated", "constraint positive on domain part.posint definition",
            "index public.accounts_owner_idx definition", "index public.accounts_pkey clustered", "index part.events_2023_pkey attached to",
            "trigger base_touch_disabled on public.base enabled", "rule child_no_delete on public.child definition",
            "policy own_rows on public.accounts using", "event trigger note_ddl enabled", "function public.touch() definition",
            "function public.touch() acl", "procedure part.archive(date) definition", "aggregate public.concat_all(text) definition",
            "system function pg_ls_dir(text) acl", "type part.mood definition", "type part.posint definition", "type part.pair acl",
            "type part.floatrange definition", "default privileges of {a} in schema part on tables", "default privileges of postgres in all schemas on functions",
            "large object 424242 owner", "large object 424242 acl", "large object 424242 sha256", "comment on table part.events",
            "comment on large object 424242", "statistics object public.accounts_stats definition",
            "collation public.german provider",
        })
        {
            var expanded = Expand(key, database);
            Assert.IsTrue(before.Facts.Any(f => f.Key == expanded),
                $"the rich database has no fact '{expanded}'");
        }

        CollectionAssert.IsSubsetOf(new[] { "part.by_mood", "part.events_2023", "public.base", "public.child", "public.cache", "part.mood_counts" },
            before.RowRelations.ToList());
        Assert.AreEqual(200, before.RowCount("part.by_mood"));
        Assert.AreEqual("{" + RoleA + "=CTc/" + RoleA + "," + RoleB + "=c/" + RoleA + "}", before.Fact("database acl"));

        using var temp = new TempDirectory("rdr-oracle-dump-");
        var dump = Path.Combine(temp.Path, "dump");
        await ToolAsync(cluster, "pg_dump", "--format=custom", "--create", "--file=" + dump, "--dbname=" + database);
        await cluster.DropDatabaseAsync(database);
        await ToolAsync(cluster, "pg_restore", "--create", "--exit-on-error", "--dbname=postgres", dump);

        var after = await DatabaseSnapshot.CaptureAsync(cluster.ConnectionString(database));
        var differences = before.Differences(after);
        CollectionAssert.AreEqual(Array.Empty<string>(), differences.ToArray(), string.Join("\n", differences));
        await DropAsync(cluster, database);
    }

    [TestMethod]
    public async Task A_large_table_is_streamed_and_its_rows_are_all_hashed()
    {
        // More rows than the oracle keeps to show: a difference past the kept rows is still seen.
        var cluster = await TestEnvironment.PostgresAsync();
        var a = await CreateDatabaseAsync(cluster, "");
        var b = await CreateDatabaseAsync(cluster, "");
        foreach (var database in new[] { a, b })
            await ExecuteAsync(cluster.ConnectionString(database), "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g");
        await ExecuteAsync(cluster.ConnectionString(b), "UPDATE big SET v = 'changed' WHERE id = 50000");
        var expected = await DatabaseSnapshot.CaptureAsync(cluster.ConnectionString(a));
        var actual = await DatabaseSnapshot.CaptureAsync(cluster.ConnectionString(b));
        Assert.AreEqual(50000, expected.RowCount("big"));
        CollectionAssert.AreEqual(new[] { "relation public.big rows: row hash differs (50000 rows in both); the first 1000 rows in row-text order are equal" },
            expected.Differences(actual).ToArray());
        await DropAsync(cluster, a, b);
    }

    private const string RichDatabase = """
        CREATE SCHEMA part AUTHORIZATION {a};
        CREATE SCHEMA ext;
        CREATE EXTENSION hstore WITH SCHEMA ext;
        CREATE TYPE part.mood AS ENUM ('sad', 'ok', 'happy');
        ALTER TYPE part.mood ADD VALUE 'meh' BEFORE 'ok';
        CREATE DOMAIN part.posint AS integer DEFAULT 1 CONSTRAINT positive CHECK (VALUE > 0);
        CREATE TYPE part.pair AS (x integer, y text COLLATE "C");
        CREATE TYPE part.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
        CREATE TABLE part.events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL, mood part.mood, payload ext.hstore,
                                  amount part.posint, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE part.events_2023 PARTITION OF part.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
        CREATE TABLE part.events_2024 PARTITION OF part.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE part.events_other PARTITION OF part.events DEFAULT;
        CREATE TABLE part.by_mood (id int, mood part.mood NOT NULL, note text) PARTITION BY HASH (mood);
        CREATE TABLE part.by_mood_0 PARTITION OF part.by_mood FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE part.by_mood_1 PARTITION OF part.by_mood FOR VALUES WITH (MODULUS 2, REMAINDER 1);
        CREATE TABLE part.by_kind (kind text, v int) PARTITION BY LIST (kind);
        CREATE TABLE part.by_kind_ab PARTITION OF part.by_kind FOR VALUES IN ('a', 'b');
        CREATE TABLE public.base (id int PRIMARY KEY, v text);
        CREATE TABLE public.child (extra text) INHERITS (public.base);
        CREATE UNLOGGED TABLE public.cache (k text PRIMARY KEY, v bytea) WITH (fillfactor = 70);
        ALTER TABLE public.cache REPLICA IDENTITY FULL;
        CREATE TABLE public.accounts (id serial PRIMARY KEY, owner name NOT NULL DEFAULT current_user, balance numeric(12,2) CHECK (balance >= 0),
                                      pair part.pair, span part.floatrange, doubled int GENERATED ALWAYS AS (id * 2) STORED);
        ALTER TABLE public.accounts ADD CONSTRAINT balance_cap CHECK (balance < 1000000) NOT VALID;
        CREATE INDEX accounts_owner_idx ON public.accounts (owner) WHERE balance > 0;
        ALTER TABLE public.accounts CLUSTER ON accounts_pkey;
        ALTER TABLE public.accounts ENABLE ROW LEVEL SECURITY;
        ALTER TABLE public.accounts FORCE ROW LEVEL SECURITY;
        CREATE POLICY own_rows ON public.accounts FOR SELECT TO {a} USING (owner = current_user);
        CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.v := upper(NEW.v); RETURN NEW; END$$;
        CREATE TRIGGER base_touch BEFORE INSERT ON public.base FOR EACH ROW EXECUTE FUNCTION public.touch();
        CREATE TRIGGER base_touch_disabled BEFORE UPDATE ON public.base FOR EACH ROW EXECUTE FUNCTION public.touch();
        ALTER TABLE public.base DISABLE TRIGGER base_touch_disabled;
        CREATE TRIGGER base_touch_always BEFORE UPDATE ON public.base FOR EACH ROW EXECUTE FUNCTION public.touch();
        ALTER TABLE public.base ENABLE ALWAYS TRIGGER base_touch_always;
        CREATE PROCEDURE part.archive(before date) LANGUAGE sql AS $$DELETE FROM part.events WHERE at < before$$;
        CREATE AGGREGATE public.concat_all(text) (SFUNC = textcat, STYPE = text, INITCOND = '');
        CREATE FUNCTION public.ddl_note() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
        CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION public.ddl_note();
        ALTER EVENT TRIGGER note_ddl DISABLE;
        CREATE VIEW public.rich AS SELECT id, balance FROM public.accounts WHERE balance > 100;
        CREATE MATERIALIZED VIEW part.mood_counts AS SELECT mood, count(*) AS n FROM part.by_mood GROUP BY mood WITH NO DATA;
        CREATE MATERIALIZED VIEW part.never_filled AS SELECT 1 AS one WITH NO DATA;
        CREATE RULE child_no_delete AS ON DELETE TO public.child DO INSTEAD NOTHING;
        CREATE SEQUENCE part.ticket AS integer START 100 INCREMENT 7 MAXVALUE 100000 CACHE 3 CYCLE;
        SELECT nextval('part.ticket'), nextval('part.ticket');
        CREATE SEQUENCE public.unused;
        CREATE STATISTICS public.accounts_stats (dependencies) ON id, balance FROM public.accounts;
        CREATE COLLATION public.german (provider = icu, locale = 'de-DE');
        ALTER TABLE public.accounts OWNER TO {a};
        GRANT SELECT (id, balance) ON public.accounts TO {b};
        GRANT SELECT, INSERT ON public.base TO {b} WITH GRANT OPTION;
        GRANT USAGE ON SCHEMA part TO {b};
        GRANT USAGE ON TYPE part.mood TO {b};
        REVOKE USAGE ON TYPE part.pair FROM PUBLIC;
        REVOKE EXECUTE ON FUNCTION public.touch() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION public.touch() TO {b};
        GRANT USAGE ON SEQUENCE part.ticket TO {b};
        ALTER DEFAULT PRIVILEGES FOR ROLE {a} IN SCHEMA part GRANT SELECT ON TABLES TO {b};
        ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text) TO {b};
        COMMENT ON SCHEMA part IS 'partitioned things';
        COMMENT ON TABLE part.events IS 'audit, by year';
        COMMENT ON COLUMN public.accounts.balance IS 'in EUR';
        COMMENT ON FUNCTION public.touch() IS 'upper-cases v';
        COMMENT ON TYPE part.mood IS 'how it went';
        COMMENT ON INDEX public.accounts_owner_idx IS 'partial';
        COMMENT ON CONSTRAINT balance_cap ON public.accounts IS 'not validated on purpose';
        SELECT lo_from_bytea(424242, '\x00010203'::bytea || convert_to(repeat('large object ', 1000), 'UTF8'));
        SELECT lo_from_bytea(424243, ''::bytea);
        ALTER LARGE OBJECT 424242 OWNER TO {a};
        GRANT SELECT ON LARGE OBJECT 424242 TO {b};
        COMMENT ON LARGE OBJECT 424242 IS 'a blob';
        -- data
        INSERT INTO part.events (at, mood, payload, amount)
            SELECT date '2023-06-01' + g * 7, (ARRAY['sad','meh','ok','happy'])[1 + g % 4]::part.mood, ext.hstore('k', g::text), 1 + g
            FROM generate_series(1, 100) g;
        INSERT INTO part.by_mood SELECT g, (ARRAY['sad','meh','ok','happy'])[1 + g % 4]::part.mood, 'note ' || g FROM generate_series(1, 200) g;
        INSERT INTO part.by_kind VALUES ('a', 1), ('b', 2);
        INSERT INTO public.base VALUES (1, 'one'), (2, 'two');
        INSERT INTO public.child VALUES (3, 'three', 'x');
        INSERT INTO public.cache VALUES ('k', '\xdeadbeef');
        INSERT INTO public.accounts (owner, balance, pair, span) VALUES ('alice', 10.5, ROW(1, 'é'), '[1.5,2.5)'), ('bob', 2000, NULL, 'empty');
        REFRESH MATERIALIZED VIEW part.mood_counts;
        """;

    private const string RichDatabaseLevel = """
        ALTER DATABASE {db} OWNER TO {a};
        REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;
        GRANT CONNECT ON DATABASE {db} TO {b};
        ALTER DATABASE {db} CONNECTION LIMIT 50;
        COMMENT ON DATABASE {db} IS 'the rich one';
        ALTER DATABASE {db} SET work_mem = '8MB';
        ALTER ROLE {b} IN DATABASE {db} SET search_path = part, public
        """;

    private static string Expand(string sql, string database) =>
        sql.Replace("{a}", RoleA, StringComparison.Ordinal).Replace("{b}", RoleB, StringComparison.Ordinal).Replace("{db}", database, StringComparison.Ordinal);

    private static async Task<string> CreateDatabaseAsync(PostgresCluster cluster, string options)
    {
        var name = "oracle_" + Guid.NewGuid().ToString("N")[..16];
        await ExecuteAsync(cluster.ConnectionString(), $"CREATE DATABASE {name} {options}");
        lock (Databases) Databases.Add(name);
        return name;
    }

    private static async Task DropAsync(PostgresCluster cluster, params string[] databases)
    {
        foreach (var database in databases)
        {
            await cluster.DropDatabaseAsync(database);
            lock (Databases) Databases.Remove(database);
        }
    }

    private static async Task AdminAsync(string sql) => await ExecuteAsync((await TestEnvironment.PostgresAsync()).ConnectionString(), sql);

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task ToolAsync(PostgresCluster cluster, string tool, params string[] arguments)
    {
        var start = new ProcessStartInfo(Path.Combine(cluster.BinDirectory, tool))
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "--host=" + cluster.Host, "--port=" + cluster.Port, "--username=" + cluster.SuperUser, "--no-password" }.Concat(arguments))
            start.ArgumentList.Add(argument);
        start.Environment["PGPASSWORD"] = cluster.SuperUserPassword; // never in argv
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        Assert.AreEqual(0, process.ExitCode, $"{tool} failed: {await stderr}{await stdout}");
    }
}
