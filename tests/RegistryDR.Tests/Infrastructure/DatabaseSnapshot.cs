using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// The test oracle for one PostgreSQL database: everything a restore must reproduce, read from
/// the catalogs in one REPEATABLE READ READ ONLY transaction and rendered as <c>key: value</c>
/// facts, plus an ordered SHA-256 of every relation's rows. It sees: the database's owner,
/// encoding, locale, connection limit, ACL, comment and settings (its own and each role's in it);
/// the roles the database uses (attributes, memberships, role-level settings; the connecting
/// role's password is not compared); every non-system schema with its owner and ACL; every
/// relation's kind, persistence, owner, ACL, partition key and bound, inheritance parents,
/// options, RLS flags, columns (type, default, identity, generated, collation, column ACL) and
/// rows; sequences' parameters and positions; views; functions, procedures and aggregates
/// (<c>pg_get_functiondef</c>, owner, ACL); triggers (<c>tgenabled</c> included); event
/// triggers; policies; rules; extensions; constraints (<c>convalidated</c> included); indexes
/// (<c>indisvalid</c> included); types (enum labels in order, domains, composites, ranges); default
/// privileges; large objects (owner, ACL, content hash); comments and security labels; changed
/// ACLs on system functions and relations; and owners of the remaining schema objects.
/// </summary>
/// <remarks>
/// Written for the tests only and on purpose independent of src/: it must not share a bug with
/// what it judges. Needs a superuser connection (it reads pg_authid). Rows are streamed (text of
/// every column, ordered by that text in byte order), so a large table costs a server-side sort,
/// not client memory; the first rows of each relation are kept to show a difference readably.
/// Hash partitions on an enum key are compared through their partitioned parent, as pg_dump
/// (15.3+) loads them: the enum's hash depends on OIDs, so rows legitimately change partition.
/// </remarks>
internal sealed class DatabaseSnapshot
{
    // Fixed session settings, so the text rendering depends on neither the server's defaults nor
    // the database's or role's ALTER ... SET (time zone, output styles, float digits, search path:
    // empty, so every name the catalog functions print is schema-qualified).
    private const string SessionSettings = """
        SET TimeZone = 'UTC';
        SET DateStyle = 'ISO, YMD';
        SET IntervalStyle = 'postgres';
        SET extra_float_digits = 1;
        SET bytea_output = 'hex';
        SET lc_monetary = 'C';
        SET search_path = '';
        SET statement_timeout = 0;
        SET lock_timeout = 0;
        SET idle_in_transaction_session_timeout = 0;
        SET row_security = on;
        """;

    /// <summary>Rows kept per relation for readable differences (the hash covers all of them).</summary>
    private const int SampleRows = 1000;

    private const int SampleBytes = 256 * 1024;

    // Schemas a restore creates itself: never user data.
    private const string UserSchemas =
        "(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND nspname !~ '^pg_(toast_)?temp_')";

    private const string OpenBrace = "'{'", CloseBrace = "'}'";

    private const string ThisDatabase = "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())";

    /// <summary>An ACL as sorted aclitem text; NULL (the default) is expanded, since pg_dump drops
    /// an ACL equal to the default and the restored object then has NULL.</summary>
    private static string Acl(string acl, string defaultAcl) =>
        $"(SELECT '{{' || coalesce(string_agg(a::text, ',' ORDER BY a::text COLLATE \"C\"), '') || '}}' FROM unnest(coalesce({acl}, {defaultAcl})) a)";

    private static string SortedArray(string array) =>
        $"(SELECT '{{' || coalesce(string_agg(x::text, ', ' ORDER BY x::text COLLATE \"C\"), '') || '}}' FROM unnest({array}) x)";

    // Every role the database refers to, and (transitively) the roles those are members of.
    private const string UsedRolesQuery = $"""
        WITH RECURSIVE used(oid) AS (
            SELECT datdba FROM pg_database WHERE oid = {ThisDatabase}
            UNION SELECT (aclexplode(datacl)).grantee FROM pg_database WHERE oid = {ThisDatabase}
            UNION SELECT (aclexplode(datacl)).grantor FROM pg_database WHERE oid = {ThisDatabase}
            UNION SELECT setrole FROM pg_db_role_setting WHERE setdatabase = {ThisDatabase}
            UNION SELECT nspowner FROM pg_namespace WHERE oid IN {UserSchemas}
            UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE oid IN {UserSchemas}
            UNION SELECT (aclexplode(nspacl)).grantor FROM pg_namespace WHERE oid IN {UserSchemas}
            UNION SELECT relowner FROM pg_class WHERE relnamespace IN {UserSchemas}
            UNION SELECT (aclexplode(relacl)).grantee FROM pg_class WHERE relacl IS NOT NULL
            UNION SELECT (aclexplode(relacl)).grantor FROM pg_class WHERE relacl IS NOT NULL
            UNION SELECT (aclexplode(attacl)).grantee FROM pg_attribute WHERE attacl IS NOT NULL
            UNION SELECT (aclexplode(attacl)).grantor FROM pg_attribute WHERE attacl IS NOT NULL
            UNION SELECT proowner FROM pg_proc WHERE pronamespace IN {UserSchemas}
            UNION SELECT (aclexplode(proacl)).grantee FROM pg_proc WHERE proacl IS NOT NULL
            UNION SELECT (aclexplode(proacl)).grantor FROM pg_proc WHERE proacl IS NOT NULL
            UNION SELECT typowner FROM pg_type WHERE typnamespace IN {UserSchemas}
            UNION SELECT (aclexplode(typacl)).grantee FROM pg_type WHERE typacl IS NOT NULL
            UNION SELECT (aclexplode(typacl)).grantor FROM pg_type WHERE typacl IS NOT NULL
            UNION SELECT lanowner FROM pg_language
            UNION SELECT (aclexplode(lanacl)).grantee FROM pg_language WHERE lanacl IS NOT NULL
            UNION SELECT lomowner FROM pg_largeobject_metadata
            UNION SELECT (aclexplode(lomacl)).grantee FROM pg_largeobject_metadata WHERE lomacl IS NOT NULL
            UNION SELECT (aclexplode(lomacl)).grantor FROM pg_largeobject_metadata WHERE lomacl IS NOT NULL
            UNION SELECT defaclrole FROM pg_default_acl
            UNION SELECT (aclexplode(defaclacl)).grantee FROM pg_default_acl
            UNION SELECT unnest(polroles) FROM pg_policy
            UNION SELECT evtowner FROM pg_event_trigger
            UNION SELECT fdwowner FROM pg_foreign_data_wrapper
            UNION SELECT (aclexplode(fdwacl)).grantee FROM pg_foreign_data_wrapper WHERE fdwacl IS NOT NULL
            UNION SELECT srvowner FROM pg_foreign_server
            UNION SELECT (aclexplode(srvacl)).grantee FROM pg_foreign_server WHERE srvacl IS NOT NULL
            UNION SELECT umuser FROM pg_user_mapping
            UNION SELECT pubowner FROM pg_publication
            UNION SELECT collowner FROM pg_collation WHERE collnamespace IN {UserSchemas}
            UNION SELECT conowner FROM pg_conversion WHERE connamespace IN {UserSchemas}
            UNION SELECT oprowner FROM pg_operator WHERE oprnamespace IN {UserSchemas}
            UNION SELECT opcowner FROM pg_opclass WHERE opcnamespace IN {UserSchemas}
            UNION SELECT opfowner FROM pg_opfamily WHERE opfnamespace IN {UserSchemas}
            UNION SELECT cfgowner FROM pg_ts_config WHERE cfgnamespace IN {UserSchemas}
            UNION SELECT dictowner FROM pg_ts_dict WHERE dictnamespace IN {UserSchemas}
            UNION SELECT stxowner FROM pg_statistic_ext WHERE stxnamespace IN {UserSchemas}
        ), closure(oid) AS (
            SELECT oid FROM used WHERE oid <> 0
            UNION SELECT m.roleid FROM pg_auth_members m JOIN closure c ON m.member = c.oid
        )
        SELECT oid FROM closure
        """;

    /// <summary>
    /// Each query yields (object, attribute, value) rows, attribute '' when the object has one value;
    /// the order here is the order of the report. A fact's key is "object attribute".
    /// </summary>
    private static readonly string[] FactQueries =
    [
        // --- the database itself
        $"""
        SELECT 'database', k, v FROM pg_database d, LATERAL (VALUES
            ('owner', pg_get_userbyid(d.datdba)::text),
            ('encoding', pg_encoding_to_char(d.encoding)::text),
            ('locale provider', CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' ELSE d.datlocprovider::text END),
            ('collate', d.datcollate::text),
            ('ctype', d.datctype::text),
            ('icu locale', coalesce(d.daticulocale, '(none)')),
            ('connection limit', d.datconnlimit::text),
            ('is template', format('%s', d.datistemplate)),
            ('allows connections', format('%s', d.datallowconn)),
            ('tablespace', (SELECT spcname::text FROM pg_tablespace WHERE oid = d.dattablespace)),
            ('acl', {Acl("d.datacl", "acldefault('d', d.datdba)")}),
            ('comment', coalesce(shobj_description(d.oid, 'pg_database'), '(none)')),
            ('settings', coalesce((SELECT {SortedArray("s.setconfig")} FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0), '(none)'))
        ) f(k, v)
        WHERE d.oid = {ThisDatabase}
        """,
        $"""
        SELECT format('role %s settings in this database', quote_ident(pg_get_userbyid(s.setrole))), '', {SortedArray("s.setconfig")}
        FROM pg_db_role_setting s WHERE s.setdatabase = {ThisDatabase} AND s.setrole <> 0
        """,
        $"""
        SELECT format('database security label (%s)', provider), '', label
        FROM pg_shseclabel WHERE classoid = 'pg_database'::regclass AND objoid = {ThisDatabase}
        """,

        // --- roles the database uses (@used_roles: see UsedRolesQuery)
        """
        SELECT format('role %s', quote_ident(a.rolname)), k, v FROM pg_authid a, LATERAL (VALUES
            ('superuser', format('%s', a.rolsuper)), ('inherit', format('%s', a.rolinherit)), ('createrole', format('%s', a.rolcreaterole)),
            ('createdb', format('%s', a.rolcreatedb)), ('login', format('%s', a.rolcanlogin)), ('replication', format('%s', a.rolreplication)),
            ('bypassrls', format('%s', a.rolbypassrls)), ('connection limit', a.rolconnlimit::text),
            ('valid until', coalesce(a.rolvaliduntil::text, '(none)')),
            ('password', CASE WHEN a.rolname = current_user THEN '(the connecting role: not compared)'
                              WHEN a.rolpassword IS NULL THEN '(none)'
                              -- a digest, never the verifier itself
                              ELSE 'sha256:' || left(encode(sha256(convert_to(a.rolpassword, 'UTF8')), 'hex'), 16) END),
            ('comment', coalesce(shobj_description(a.oid, 'pg_authid'), '(none)'))
        ) f(k, v)
        WHERE a.oid = ANY (@used_roles)
        """,
        """
        SELECT format('role %s member of %s', quote_ident(pg_get_userbyid(m.member)), quote_ident(pg_get_userbyid(m.roleid))), k, v
        FROM pg_auth_members m, LATERAL (VALUES ('admin option', format('%s', m.admin_option)), ('grantor', pg_get_userbyid(m.grantor)::text)) f(k, v)
        WHERE m.member = ANY (@used_roles)
        """,
        $"""
        SELECT format('role %s settings', quote_ident(pg_get_userbyid(s.setrole))), '', {SortedArray("s.setconfig")}
        FROM pg_db_role_setting s WHERE s.setdatabase = 0 AND s.setrole = ANY (@used_roles)
        """,
        """
        SELECT format('role %s security label (%s)', quote_ident(pg_get_userbyid(objoid)), provider), '', label
        FROM pg_shseclabel WHERE classoid = 'pg_authid'::regclass AND objoid = ANY (@used_roles)
        """,

        // --- schemas, extensions, languages
        $"""
        SELECT format('schema %s', quote_ident(nspname)), k, v FROM pg_namespace,
               LATERAL (VALUES ('owner', pg_get_userbyid(nspowner)::text), ('acl', {Acl("nspacl", "acldefault('n', nspowner)")})) f(k, v)
        WHERE oid IN {UserSchemas}
        """,
        """
        SELECT format('extension %s', quote_ident(e.extname)), k, v FROM pg_extension e, LATERAL (VALUES
            ('version', e.extversion::text), ('schema', quote_ident(e.extnamespace::regnamespace::text)), ('relocatable', format('%s', e.extrelocatable)),
            ('configuration tables', coalesce(e.extconfig::regclass[]::text, '{}')), ('conditions', coalesce(e.extcondition::text, '{}'))
        ) f(k, v)
        """,
        $"""
        SELECT format('language %s', quote_ident(lanname)), k, v FROM pg_language, LATERAL (VALUES
            ('owner', pg_get_userbyid(lanowner)::text), ('trusted', format('%s', lanpltrusted)), ('handler', lanplcallfoid::regprocedure::text),
            ('inline', laninline::regprocedure::text), ('validator', lanvalidator::regprocedure::text), ('acl', {Acl("lanacl", "acldefault('l', lanowner)")})
        ) f(k, v)
        """,

        // --- relations and their parts
        $"""
        SELECT format('relation %s', c.oid::regclass), k, v FROM pg_class c, LATERAL (VALUES
            ('kind', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                                    WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE c.relkind::text END),
            ('persistence', CASE c.relpersistence WHEN 'p' THEN 'permanent' WHEN 'u' THEN 'unlogged' WHEN 't' THEN 'temporary' END),
            ('owner', pg_get_userbyid(c.relowner)::text),
            ('acl', {Acl("c.relacl", "acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner)")}),
            ('access method', coalesce((SELECT amname::text FROM pg_am WHERE oid = c.relam), '-')),
            ('tablespace', coalesce((SELECT spcname::text FROM pg_tablespace WHERE oid = c.reltablespace), 'default')),
            ('options', {SortedArray("c.reloptions")}),
            ('replica identity', c.relreplident::text),
            ('row security', format('%s', c.relrowsecurity)),
            ('force row security', format('%s', c.relforcerowsecurity)),
            ('populated', format('%s', c.relispopulated)),
            ('partition key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) ELSE '-' END),
            ('partition bound', CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) ELSE '-' END),
            ('inherits', (SELECT '[' || coalesce(string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno), '') || ']'
                          FROM pg_inherits i WHERE i.inhrelid = c.oid))
        ) f(k, v)
        WHERE c.relnamespace IN {UserSchemas} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        """,
        $"""
        SELECT format('column %s.%s', c.oid::regclass, quote_ident(a.attname)), k, v
        FROM (SELECT a.*, row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS position
              FROM pg_attribute a WHERE a.attnum > 0 AND NOT a.attisdropped) a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum,
        LATERAL (VALUES
            ('position', a.position::text), ('type', format_type(a.atttypid, a.atttypmod)), ('not null', format('%s', a.attnotnull)),
            ('default', coalesce(pg_get_expr(d.adbin, d.adrelid), '(none)')), ('identity', a.attidentity::text), ('generated', a.attgenerated::text),
            ('collation', a.attcollation::regcollation::text), ('storage', a.attstorage::text), ('compression', a.attcompression::text),
            ('statistics', a.attstattarget::text), ('options', {SortedArray("a.attoptions")}), ('fdw options', {SortedArray("a.attfdwoptions")}),
            ('local', format('%s', a.attislocal)), ('inherited', a.attinhcount::text), ('acl', {Acl("a.attacl", "NULL::aclitem[]")})
        ) f(k, v)
        WHERE c.relnamespace IN {UserSchemas} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        """,
        $"""
        SELECT format('sequence %s', s.seqrelid::regclass), k, v FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid, LATERAL (VALUES
            ('type', s.seqtypid::regtype::text), ('start', s.seqstart::text), ('increment', s.seqincrement::text), ('min', s.seqmin::text),
            ('max', s.seqmax::text), ('cache', s.seqcache::text), ('cycle', format('%s', s.seqcycle)),
            ('owned by', coalesce((SELECT format('%s.%s', d.refobjid::regclass, quote_ident(a.attname))
                                   FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                   WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                                     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '(none)'))
        ) f(k, v)
        WHERE c.relnamespace IN {UserSchemas}
        """,
        $"""
        SELECT format('view %s', c.oid::regclass), 'definition', pg_get_viewdef(c.oid)
        FROM pg_class c WHERE c.relnamespace IN {UserSchemas} AND c.relkind IN ('v', 'm')
        """,
        $"""
        -- A constraint PostgreSQL derives from a partitioned table's constraint (conparentid) gets a
        -- name the server makes up; pg_dump cannot carry it, and any dump and restore, plain
        -- pg_dump | pg_restore included, may name it differently. It is known by its parent's name
        -- and what it joins instead (its definition is still compared).
        SELECT CASE WHEN con.conparentid <> 0 THEN format('constraint derived from %s on %s referencing %s',
                         (SELECT quote_ident(p.conname) FROM pg_constraint p WHERE p.oid = con.conparentid),
                         con.conrelid::regclass, coalesce(nullif(con.confrelid, 0)::regclass::text, '-'))
                    WHEN con.conrelid <> 0 THEN format('constraint %s on %s', quote_ident(con.conname), con.conrelid::regclass)
                    ELSE format('constraint %s on domain %s', quote_ident(con.conname), con.contypid::regtype) END, k, v
        FROM pg_constraint con, LATERAL (VALUES
            ('definition', pg_get_constraintdef(con.oid)), ('validated', format('%s', con.convalidated)),
            ('local', format('%s', con.conislocal)), ('inherited', con.coninhcount::text)
        ) f(k, v)
        WHERE con.connamespace IN {UserSchemas}
        """,
        $"""
        SELECT format('index %s', i.indexrelid::regclass), k, v FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid, LATERAL (VALUES
            ('definition', pg_get_indexdef(i.indexrelid)), ('valid', format('%s', i.indisvalid)), ('clustered', format('%s', i.indisclustered)),
            ('replica identity', format('%s', i.indisreplident)),
            ('tablespace', coalesce((SELECT spcname::text FROM pg_tablespace WHERE oid = c.reltablespace), 'default')),
            ('attached to', coalesce((SELECT string_agg(h.inhparent::regclass::text, ', ') FROM pg_inherits h WHERE h.inhrelid = c.oid), '(none)'))
        ) f(k, v)
        WHERE c.relnamespace IN {UserSchemas}
        """,
        $"""
        SELECT format('trigger %s on %s', quote_ident(t.tgname), t.tgrelid::regclass), k, v
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid,
             LATERAL (VALUES ('definition', pg_get_triggerdef(t.oid)), ('enabled', t.tgenabled::text)) f(k, v)
        WHERE NOT t.tgisinternal AND c.relnamespace IN {UserSchemas}
        """,
        $"""
        SELECT format('rule %s on %s', quote_ident(r.rulename), r.ev_class::regclass), k, v
        FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class,
             LATERAL (VALUES ('definition', pg_get_ruledef(r.oid)), ('enabled', r.ev_enabled::text)) f(k, v)
        WHERE c.relnamespace IN {UserSchemas} AND NOT (r.rulename = '_RETURN' AND c.relkind IN ('v', 'm'))
        """,
        $"""
        SELECT format('policy %s on %s', quote_ident(p.polname), p.polrelid::regclass), k, v
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid, LATERAL (VALUES
            ('command', p.polcmd::text), ('permissive', format('%s', p.polpermissive)),
            ('roles', (SELECT {OpenBrace} || string_agg(r, ',' ORDER BY r COLLATE "C") || {CloseBrace}
                       FROM (SELECT CASE WHEN x = 0 THEN 'public' ELSE quote_ident(pg_get_userbyid(x)) END AS r FROM unnest(p.polroles) x) roles)),
            ('using', coalesce(pg_get_expr(p.polqual, p.polrelid), '(none)')),
            ('with check', coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '(none)'))
        ) f(k, v)
        WHERE c.relnamespace IN {UserSchemas}
        """,
        $"""
        SELECT format('event trigger %s', quote_ident(evtname)), k, v FROM pg_event_trigger, LATERAL (VALUES
            ('event', evtevent::text), ('function', evtfoid::regprocedure::text), ('enabled', evtenabled::text),
            ('tags', {SortedArray("evttags")}), ('owner', pg_get_userbyid(evtowner)::text)
        ) f(k, v)
        """,

        // --- functions, types and the rest of the schema
        $"""
        SELECT format('%s %s', CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' WHEN 'w' THEN 'window function' WHEN 'a' THEN 'aggregate' END,
                      p.oid::regprocedure), k, v
        FROM pg_proc p, LATERAL (VALUES
            ('owner', pg_get_userbyid(p.proowner)::text),
            ('acl', {Acl("p.proacl", "acldefault('f', p.proowner)")}),
            ('definition', CASE WHEN p.prokind = 'a' THEN
                (SELECT format('transition=%s state=%s final=%s combine=%s serial=%s deserial=%s initial=%s sort operator=%s kind=%s',
                               a.aggtransfn::regprocedure, a.aggtranstype::regtype, a.aggfinalfn, a.aggcombinefn, a.aggserialfn,
                               a.aggdeserialfn, coalesce(a.agginitval, '(none)'), a.aggsortop::regoperator, a.aggkind)
                 FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
                ELSE pg_get_functiondef(p.oid) END)
        ) f(k, v)
        WHERE p.pronamespace IN {UserSchemas}
        """,
        // GRANT/REVOKE on a pg_catalog function or relation is dumped too (pg_init_privs holds the
        // initial ACL; pg_dump leaves information_schema alone).
        $"""
        SELECT format('system function %s', p.oid::regprocedure), 'acl', {Acl("p.proacl", "acldefault('f', p.proowner)")}
        FROM pg_proc p LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_proc'::regclass AND ip.objoid = p.oid AND ip.objsubid = 0
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proacl IS DISTINCT FROM ip.initprivs
        """,
        $"""
        SELECT format('system relation %s', c.oid::regclass), 'acl', {Acl("c.relacl", "acldefault('r', c.relowner)")}
        FROM pg_class c LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_class'::regclass AND ip.objoid = c.oid AND ip.objsubid = 0
        WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relacl IS DISTINCT FROM ip.initprivs
        """,
        $"""
        SELECT format('type %s', t.oid::regtype), k, v FROM pg_type t, LATERAL (VALUES
            ('owner', pg_get_userbyid(t.typowner)::text),
            ('acl', {Acl("t.typacl", "acldefault('T', t.typowner)")}),
            ('definition', CASE t.typtype
                WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                    FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
                WHEN 'd' THEN format('domain over %s not null=%s default=%s collation=%s', format_type(t.typbasetype, t.typtypmod),
                                     t.typnotnull, coalesce(t.typdefault, '(none)'), t.typcollation::regcollation)
                WHEN 'c' THEN 'composite (' || coalesce((SELECT string_agg(format('%s %s collation=%s', quote_ident(a.attname),
                                                                          format_type(a.atttypid, a.atttypmod), a.attcollation::regcollation), ', ' ORDER BY a.attnum)
                                                        FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')'
                WHEN 'r' THEN (SELECT format('range over %s collation=%s operator class=%s canonical=%s subtype diff=%s multirange=%s',
                                             r.rngsubtype::regtype, r.rngcollation::regcollation,
                                             pg_describe_object('pg_opclass'::regclass, r.rngsubopc, 0), r.rngcanonical, r.rngsubdiff,
                                             r.rngmultitypid::regtype)
                               FROM pg_range r WHERE r.rngtypid = t.oid)
                WHEN 'b' THEN format('base input=%s output=%s receive=%s send=%s length=%s by value=%s alignment=%s storage=%s category=%s',
                                     t.typinput, t.typoutput, t.typreceive, t.typsend, t.typlen, t.typbyval, t.typalign, t.typstorage, t.typcategory)
                ELSE t.typtype::text END)
        ) f(k, v)
        WHERE t.typnamespace IN {UserSchemas}
          AND t.typtype <> 'm'                                                                          -- made with its range
          AND NOT (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) <> 'c')    -- a relation's row type
          AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)                             -- made with its element
        """,
        $"""
        SELECT format('default privileges of %s in %s on %s', quote_ident(pg_get_userbyid(d.defaclrole)),
                      CASE WHEN d.defaclnamespace = 0 THEN 'all schemas' ELSE 'schema ' || d.defaclnamespace::regnamespace END,
                      CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
                                           WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' ELSE d.defaclobjtype::text END),
               '', {Acl("d.defaclacl", "NULL::aclitem[]")}
        FROM pg_default_acl d
        """,
        $"""
        SELECT pg_describe_object('pg_statistic_ext'::regclass, s.oid, 0), k, v FROM pg_statistic_ext s,
               LATERAL (VALUES ('owner', pg_get_userbyid(s.stxowner)::text), ('definition', pg_get_statisticsobjdef(s.oid))) f(k, v)
        WHERE s.stxnamespace IN {UserSchemas}
        """,
        $"""
        SELECT pg_describe_object('pg_collation'::regclass, c.oid, 0), k, v FROM pg_collation c, LATERAL (VALUES
            ('owner', pg_get_userbyid(c.collowner)::text), ('provider', c.collprovider::text), ('collate', coalesce(c.collcollate, '(none)')),
            ('ctype', coalesce(c.collctype, '(none)')), ('icu locale', coalesce(c.colliculocale, '(none)')), ('deterministic', format('%s', c.collisdeterministic))
        ) f(k, v)
        WHERE c.collnamespace IN {UserSchemas}
        """,
        $"""
        SELECT pg_describe_object(o.catalog, o.oid, 0), 'owner', pg_get_userbyid(o.owner)::text
        FROM (SELECT 'pg_conversion'::regclass, oid, conowner, connamespace FROM pg_conversion
              UNION ALL SELECT 'pg_operator'::regclass, oid, oprowner, oprnamespace FROM pg_operator
              UNION ALL SELECT 'pg_opclass'::regclass, oid, opcowner, opcnamespace FROM pg_opclass
              UNION ALL SELECT 'pg_opfamily'::regclass, oid, opfowner, opfnamespace FROM pg_opfamily
              UNION ALL SELECT 'pg_ts_config'::regclass, oid, cfgowner, cfgnamespace FROM pg_ts_config
              UNION ALL SELECT 'pg_ts_dict'::regclass, oid, dictowner, dictnamespace FROM pg_ts_dict) o(catalog, oid, owner, namespace)
        WHERE o.namespace IN {UserSchemas}
        """,
        """
        SELECT format('cast (%s AS %s)', castsource::regtype, casttarget::regtype), '',
               format('function=%s context=%s method=%s', castfunc::regprocedure, castcontext, castmethod)
        FROM pg_cast WHERE oid >= 16384
        """,
        $"""
        SELECT format('foreign-data wrapper %s', quote_ident(fdwname)), k, v FROM pg_foreign_data_wrapper, LATERAL (VALUES
            ('owner', pg_get_userbyid(fdwowner)::text), ('handler', fdwhandler::regproc::text), ('validator', fdwvalidator::regproc::text),
            ('options', {SortedArray("fdwoptions")}), ('acl', {Acl("fdwacl", "acldefault('F', fdwowner)")})
        ) f(k, v)
        """,
        $"""
        SELECT format('foreign server %s', quote_ident(s.srvname)), k, v FROM pg_foreign_server s, LATERAL (VALUES
            ('owner', pg_get_userbyid(s.srvowner)::text), ('wrapper', (SELECT quote_ident(fdwname) FROM pg_foreign_data_wrapper WHERE oid = s.srvfdw)),
            ('type', coalesce(s.srvtype, '(none)')), ('version', coalesce(s.srvversion, '(none)')),
            ('options', {SortedArray("s.srvoptions")}), ('acl', {Acl("s.srvacl", "acldefault('S', s.srvowner)")})
        ) f(k, v)
        """,
        // Option values may be passwords: a digest only.
        $"""
        SELECT format('user mapping for %s on server %s', CASE WHEN u.umuser = 0 THEN 'public' ELSE quote_ident(pg_get_userbyid(u.umuser)) END,
                      quote_ident(s.srvname)), 'options', 'sha256:' || left(encode(sha256(convert_to({SortedArray("u.umoptions")}, 'UTF8')), 'hex'), 16)
        FROM pg_user_mapping u JOIN pg_foreign_server s ON s.oid = u.umserver
        """,
        """
        SELECT format('publication %s', quote_ident(p.pubname)), k, v FROM pg_publication p, LATERAL (VALUES
            ('owner', pg_get_userbyid(p.pubowner)::text), ('all tables', format('%s', p.puballtables)),
            ('actions', format('insert=%s update=%s delete=%s truncate=%s', p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate)),
            ('via root', format('%s', p.pubviaroot)),
            ('tables', (SELECT '{' || coalesce(string_agg(r.prrelid::regclass::text, ', ' ORDER BY r.prrelid::regclass::text COLLATE "C"), '') || '}'
                        FROM pg_publication_rel r WHERE r.prpubid = p.oid))
        ) f(k, v)
        """,

        // --- comments and security labels on everything made after initdb (OIDs from 16384)
        """
        SELECT format('comment on %s', pg_describe_object(d.classoid, d.objoid, d.objsubid)), '', d.description
        FROM pg_description d WHERE d.objoid >= 16384
        """,
        """
        SELECT format('security label (%s) on %s', s.provider, pg_describe_object(s.classoid, s.objoid, s.objsubid)), '', s.label
        FROM pg_seclabel s
        """,
    ];

    // Relations whose rows are hashed one by one, and the partitioned tables compared as a whole
    // (hash partitioning with pg_catalog's enum_ops: pg_dump's own test for loading via the root).
    private const string RowRelationsQuery = $"""
        WITH enum_hash_roots AS (
            SELECT pt.partrelid AS oid FROM pg_partitioned_table pt
            WHERE pt.partstrat = 'h'
              AND (SELECT c.oid FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod
                   WHERE c.opcname = 'enum_ops' AND c.opcnamespace = 'pg_catalog'::regnamespace AND a.amname = 'hash') = ANY (pt.partclass)
        ), top_roots AS (
            SELECT r.oid FROM enum_hash_roots r
            WHERE NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(r.oid) a WHERE a.relid <> r.oid AND a.relid IN (SELECT oid FROM enum_hash_roots))
        ), under_roots AS (
            SELECT t.relid FROM top_roots r, pg_partition_tree(r.oid) t WHERE t.relid <> r.oid
        )
        SELECT c.oid::regclass::text, c.relkind = 'p' AS whole_tree, c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AS public_table,
               quote_ident(c.relname)
        FROM pg_class c
        WHERE c.relnamespace IN {UserSchemas}
          AND ((c.relkind IN ('r', 'm') AND c.relispopulated AND c.oid NOT IN (SELECT relid FROM under_roots))
               OR c.oid IN (SELECT oid FROM top_roots))
        ORDER BY 1
        """;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly List<CatalogFact> _facts;
    private readonly Dictionary<string, CatalogFact> _factIndex;
    private readonly Dictionary<string, List<CatalogFact>> _objects;
    private readonly Dictionary<string, RowDigest> _rows;
    private readonly List<string> _publicTables;

    private DatabaseSnapshot(List<CatalogFact> facts, Dictionary<string, RowDigest> rows, List<string> publicTables)
    {
        _facts = facts;
        _factIndex = facts.ToDictionary(f => f.Key, StringComparer.Ordinal);
        _objects = facts.GroupBy(f => f.Object, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        _rows = rows;
        _publicTables = publicTables;
    }

    /// <summary>Every fact but rows, in report order: "database acl" → "{=Tc/postgres,...}".</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Facts => _facts.Select(f => new KeyValuePair<string, string>(f.Key, f.Value)).ToList();

    /// <summary>The value of one fact (e.g. <c>"database acl"</c>, <c>"relation public.tags owner"</c>); throws when absent.</summary>
    public string Fact(string key) =>
        _factIndex.TryGetValue(key, out var fact) ? fact.Value : throw new KeyNotFoundException($"No fact '{key}' in the snapshot.");

    /// <summary>Tables (plain and partitioned) of the <c>public</c> schema, unqualified, in name order.</summary>
    public IReadOnlyList<string> TableNames => _publicTables;

    /// <summary>Relations whose rows are compared, schema-qualified as regclass prints them.</summary>
    public IReadOnlyCollection<string> RowRelations => _rows.Keys;

    public long TotalRows => _rows.Values.Sum(r => r.Count);

    /// <summary>Rows of a relation: <c>"tags"</c> (schema public) or <c>"part.x"</c> (as regclass prints it).</summary>
    public long RowCount(string table) => Digest(table).Count;

    /// <summary>"last_value=N is_called=t|f" of a sequence (<c>"users_id_seq"</c> for public, or qualified).</summary>
    public string Sequence(string sequence) => Fact($"sequence {Qualify(sequence)} value");

    /// <summary>
    /// Every difference between this (expected) snapshot and <paramref name="actual"/>, one readable line
    /// each, in report order: <c>database acl: expected {…} got {…}</c>, <c>relation part.x rows: …</c>,
    /// <c>function public.f(integer): missing (expected …)</c>.
    /// </summary>
    public IReadOnlyList<string> Differences(DatabaseSnapshot actual)
    {
        ArgumentNullException.ThrowIfNull(actual);
        var differences = new List<string>();
        var objects = _facts.Concat(actual._facts)
            .Select(f => (f.Group, f.Object)).Distinct()
            .OrderBy(o => o.Group).ThenBy(o => o.Object, StringComparer.Ordinal)
            .Select(o => o.Object).Distinct(StringComparer.Ordinal);
        foreach (var name in objects)
        {
            var expected = _objects.GetValueOrDefault(name);
            var got = actual._objects.GetValueOrDefault(name);
            if (got is null)
            {
                differences.Add($"{name}: missing (expected {Show(Describe(expected!))})");
                continue;
            }

            if (expected is null)
            {
                differences.Add($"{name}: unexpected (got {Show(Describe(got))})");
                continue;
            }

            foreach (var attribute in expected.Select(f => f.Attribute).Concat(got.Select(f => f.Attribute)).Distinct(StringComparer.Ordinal))
            {
                var e = expected.Find(f => f.Attribute == attribute);
                var a = got.Find(f => f.Attribute == attribute);
                var key = (e ?? a)!.Key;
                if (a is null) differences.Add($"{key}: missing (expected {Show(e!.Value)})");
                else if (e is null) differences.Add($"{key}: unexpected (got {Show(a.Value)})");
                else if (!string.Equals(e.Value, a.Value, StringComparison.Ordinal)) differences.Add($"{key}: {Compare(e.Value, a.Value)}");
            }
        }

        foreach (var relation in _rows.Keys.Union(actual._rows.Keys).Order(StringComparer.Ordinal))
        {
            var expected = _rows.GetValueOrDefault(relation);
            var got = actual._rows.GetValueOrDefault(relation);
            if (got is null)
                differences.Add($"relation {relation} rows: missing (expected {expected!.Count} rows)");
            else if (expected is null)
                differences.Add($"relation {relation} rows: unexpected ({got.Count} rows)");
            else if (expected.DescribeDifference(got) is { } difference)
                differences.Add($"relation {relation} rows: {difference}");
        }

        return differences;
    }

    /// <summary>
    /// The first difference between this (expected) snapshot and <paramref name="actual"/>, followed by
    /// the next few and a count of the rest; null when the databases are equal.
    /// </summary>
    public string? FirstDifference(DatabaseSnapshot actual)
    {
        var differences = Differences(actual);
        if (differences.Count == 0)
        {
            return null;
        }

        const int shown = 10;
        var text = string.Join("\n", differences.Take(shown));
        return differences.Count > shown ? $"{text}\n(and {differences.Count - shown} more differences)" : text;
    }

    /// <summary>The snapshot as text lines (facts, then row digests), for files a script diffs.</summary>
    public IEnumerable<string> ToLines() =>
        _facts.Select(f => $"{f.Key}: {Escape(f.Value)}")
            .Concat(_rows.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => $"relation {r.Key} rows: {r.Value}"));

    public override string ToString() =>
        $"{_rows.Count} relations with rows, {TotalRows} rows, {_facts.Count} facts";

    /// <summary>Reads a snapshot of the database <paramref name="connectionString"/> points at (a superuser connection).</summary>
    internal static async Task<DatabaseSnapshot> CaptureAsync(string connectionString)
    {
        // Only built-in types are read (text, bytea, oid, bool), so skip loading the database's types.
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        builder.ConfigureTypeLoading(types => types.EnableTypeLoading(false));
        await using var dataSource = builder.Build();
        await using var connection = await dataSource.OpenConnectionAsync().ConfigureAwait(false);
        await ExecuteAsync(connection, SessionSettings).ConfigureAwait(false);
        await using (var check = new NpgsqlCommand("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user", connection))
        {
            if (await check.ExecuteScalarAsync().ConfigureAwait(false) is not true)
            {
                throw new InvalidOperationException(
                    $"DatabaseSnapshot needs a superuser connection (it reads pg_authid and every relation); '{connection.UserName}' is not one.");
            }
        }

        // One snapshot for everything: all relations are read as of the same moment.
        await ExecuteAsync(connection, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").ConfigureAwait(false);

        var usedRoles = new List<uint>();
        await using (var command = new NpgsqlCommand(UsedRolesQuery, connection))
        await using (var reader = await command.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                usedRoles.Add(reader.GetFieldValue<uint>(0));
            }
        }

        var facts = new List<CatalogFact>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var group = 0; group < FactQueries.Length; group++)
        {
            var section = new List<CatalogFact>();
            await foreach (var (name, attribute, value) in TriplesAsync(connection, FactQueries[group], usedRoles).ConfigureAwait(false))
            {
                // Two objects never describe alike, but keep both if a catalog ever says otherwise.
                var fact = new CatalogFact(group, name, attribute, value);
                for (var n = 2; !seen.Add(fact.Key); n++)
                {
                    fact = fact with { Object = $"{name} #{n}" };
                }

                section.Add(fact);
            }

            // Objects in name order; an object's attributes in the query's order.
            facts.AddRange(section.Select((f, i) => (f, i)).OrderBy(x => x.f.Object, StringComparer.Ordinal).ThenBy(x => x.i).Select(x => x.f));
        }

        facts.AddRange(await SequenceValuesAsync(connection, FactQueries.Length).ConfigureAwait(false));
        facts.AddRange(await LargeObjectsAsync(connection, FactQueries.Length + 1).ConfigureAwait(false));

        var relations = new List<(string Relation, bool WholeTree)>();
        await using (var command = new NpgsqlCommand(RowRelationsQuery, connection))
        await using (var reader = await command.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                relations.Add((reader.GetString(0), reader.GetBoolean(1)));
            }
        }

        var publicTables = new List<string>();
        await using (var command = new NpgsqlCommand(
            "SELECT relname FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY relname COLLATE \"C\"", connection))
        await using (var reader = await command.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                publicTables.Add(reader.GetString(0));
            }
        }

        var rows = new Dictionary<string, RowDigest>(StringComparer.Ordinal);
        foreach (var (relation, wholeTree) in relations)
        {
            // ONLY: a parent's own rows, not its children's (each child is hashed itself), except
            // for the enum-hash partition trees, read through their root. convert_to(…, 'SQL_ASCII')
            // returns the text's bytes in the database's encoding unchanged (textsend would convert
            // them to the client's), so any encoding is hashed exactly.
            var only = wholeTree ? "" : "ONLY ";
            rows[relation] = await RowDigest.ReadAsync(connection,
                $"SELECT convert_to(t::text, 'SQL_ASCII') FROM {only}{relation} t ORDER BY t::text COLLATE \"C\"", wholeTree).ConfigureAwait(false);
        }

        await ExecuteAsync(connection, "COMMIT").ConfigureAwait(false);
        return new DatabaseSnapshot(facts, rows, publicTables);
    }

    private static async Task<List<CatalogFact>> SequenceValuesAsync(NpgsqlConnection connection, int group)
    {
        var sequences = new List<string>();
        await using (var command = new NpgsqlCommand(
            $"SELECT c.oid::regclass::text FROM pg_catalog.pg_class c WHERE c.relkind = 'S' AND c.relnamespace IN {UserSchemas} ORDER BY 1", connection))
        await using (var reader = await command.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                sequences.Add(reader.GetString(0));
            }
        }

        var values = new List<CatalogFact>();
        foreach (var chunk in sequences.Chunk(200))
        {
            var sql = string.Join("\nUNION ALL ", chunk.Select(s =>
                $"SELECT {Literal($"sequence {s}")}, 'value', format('last_value=%s is_called=%s', last_value, is_called) FROM {s}"));
            await foreach (var (name, attribute, value) in TriplesAsync(connection, sql, []).ConfigureAwait(false))
            {
                values.Add(new CatalogFact(group, name, attribute, value));
            }
        }

        return values;
    }

    private static async Task<List<CatalogFact>> LargeObjectsAsync(NpgsqlConnection connection, int group)
    {
        var objects = new List<(uint Oid, string Owner, string Acl)>();
        await using (var command = new NpgsqlCommand(
            $"SELECT oid, pg_get_userbyid(lomowner)::text, {Acl("lomacl", "acldefault('L', lomowner)")} FROM pg_catalog.pg_largeobject_metadata ORDER BY oid",
            connection))
        await using (var reader = await command.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                objects.Add((reader.GetFieldValue<uint>(0), reader.GetString(1), reader.GetString(2)));
            }
        }

        var facts = new List<CatalogFact>();
        foreach (var (oid, owner, acl) in objects)
        {
            // lo_get in bounded chunks: holes read as zeros, as lo_read (and pg_dump) sees them.
            const int chunk = 1 << 20;
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long size = 0;
            await using var command = new NpgsqlCommand("SELECT pg_catalog.lo_get(@oid, @offset, @length)", connection);
            command.Parameters.AddWithValue("oid", NpgsqlTypes.NpgsqlDbType.Oid, oid);
            var offset = command.Parameters.AddWithValue("offset", size);
            command.Parameters.AddWithValue("length", chunk);
            while (true)
            {
                offset.Value = size;
                var bytes = (byte[])(await command.ExecuteScalarAsync().ConfigureAwait(false))!;
                hash.AppendData(bytes);
                size += bytes.Length;
                if (bytes.Length < chunk)
                {
                    break;
                }
            }

            var name = $"large object {oid.ToString(CultureInfo.InvariantCulture)}";
            facts.Add(new CatalogFact(group, name, "owner", owner));
            facts.Add(new CatalogFact(group, name, "acl", acl));
            facts.Add(new CatalogFact(group, name, "size", size.ToString(CultureInfo.InvariantCulture)));
            facts.Add(new CatalogFact(group, name, "sha256", Convert.ToHexStringLower(hash.GetHashAndReset())));
        }

        return facts;
    }

    /// <summary>Runs an (object, attribute, value) query; text travels as the database's own bytes
    /// (see <see cref="CaptureAsync"/>), so text that is not UTF-8 (SQL_ASCII holding Latin-1) is read
    /// exactly, and shown escaped.</summary>
    private static async IAsyncEnumerable<(string Object, string Attribute, string Value)> TriplesAsync(
        NpgsqlConnection connection, string sql, List<uint> usedRoles)
    {
        await using var command = new NpgsqlCommand(
            $"SELECT convert_to(o::text, 'SQL_ASCII'), a::text, convert_to(v::text, 'SQL_ASCII') FROM ({sql}\n) q(o, a, v)", connection);
        if (sql.Contains("@used_roles", StringComparison.Ordinal))
        {
            command.Parameters.AddWithValue("used_roles", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Oid, usedRoles.ToArray());
        }

        NpgsqlDataReader reader;
        try
        {
            reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
        }
        catch (PostgresException e)
        {
            throw new InvalidOperationException($"DatabaseSnapshot's query failed ({e.MessageText}): {command.CommandText}", e);
        }

        await using var _ = reader;
        while (await reader.ReadAsync().ConfigureAwait(false))
        {
            var name = reader.IsDBNull(0) ? "(null)" : Decode(reader.GetFieldValue<byte[]>(0));
            var attribute = reader.IsDBNull(1) ? "" : reader.GetString(1);
            var value = reader.IsDBNull(2) ? "(null)" : Decode(reader.GetFieldValue<byte[]>(2));
            yield return (name, attribute, value);
        }
    }

    private static string Describe(List<CatalogFact> facts) =>
        facts is [{ Attribute: "" } single] ? single.Value : string.Join(" ", facts.Select(f => $"{f.Attribute}={f.Value}"));

    /// <summary>One fact: (object, attribute, value); <see cref="Group"/> is its query's place in the report.</summary>
    private sealed record CatalogFact(int Group, string Object, string Attribute, string Value)
    {
        public string Key => Attribute.Length == 0 ? Object : $"{Object} {Attribute}";
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync().ConfigureAwait(false);
    }

    private RowDigest Digest(string table)
    {
        var key = Qualify(table);
        return _rows.TryGetValue(key, out var digest)
            ? digest
            : throw new KeyNotFoundException($"No rows of '{key}' in the snapshot (relations: {string.Join(", ", _rows.Keys.Take(20))}).");
    }

    private static string Qualify(string name) => name.Contains('.', StringComparison.Ordinal) ? name : "public." + name;

    private static string Literal(string value) => "'" + value.Replace("'", "''", StringComparison.Ordinal) + "'";

    /// <summary>Valid UTF-8 as it is; otherwise marked "(not UTF-8)", with every byte that is not part
    /// of a UTF-8 sequence as \xNN (and backslashes doubled), so distinct bytes never look alike.</summary>
    internal static string Decode(byte[] bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return EscapeBytes(bytes);
        }
    }

    private static string EscapeBytes(byte[] bytes)
    {
        var builder = new StringBuilder("(not UTF-8) ");
        var i = 0;
        while (i < bytes.Length)
        {
            var length = Utf8SequenceLength(bytes, i);
            if (length > 0)
            {
                builder.Append(Encoding.UTF8.GetString(bytes, i, length).Replace("\\", "\\\\", StringComparison.Ordinal));
                i += length;
            }
            else
            {
                builder.Append(CultureInfo.InvariantCulture, $"\\x{bytes[i]:x2}");
                i++;
            }
        }

        return builder.ToString();
    }

    /// <summary>Length of the valid UTF-8 sequence starting at <paramref name="i"/>, or 0.</summary>
    internal static int Utf8SequenceLength(ReadOnlySpan<byte> bytes, int i)
    {
        var b = bytes[i];
        var length = b < 0x80 ? 1 : b is >= 0xC2 and <= 0xDF ? 2 : b is >= 0xE0 and <= 0xEF ? 3 : b is >= 0xF0 and <= 0xF4 ? 4 : 0;
        if (length == 0 || i + length > bytes.Length)
        {
            return 0;
        }

        try
        {
            StrictUtf8.GetString(bytes.Slice(i, length));
            return length;
        }
        catch (DecoderFallbackException)
        {
            return 0;
        }
    }

    // For display only (comparisons use the values themselves): one line per difference.
    private static string Escape(string value) =>
        value.Replace("\n", "\\n", StringComparison.Ordinal).Replace("\r", "\\r", StringComparison.Ordinal);

    private static string Show(string value)
    {
        const int max = 300;
        var escaped = Escape(value);
        return escaped.Length <= max ? escaped : escaped[..max] + $"… ({value.Length} chars)";
    }

    /// <summary>"expected X got Y"; long values are cut around their first difference.</summary>
    internal static string Compare(string expected, string actual)
    {
        var e = Escape(expected);
        var a = Escape(actual);
        if (e.Length <= 200 && a.Length <= 200)
        {
            return $"expected {e} got {a}";
        }

        var common = 0;
        while (common < e.Length && common < a.Length && e[common] == a[common])
        {
            common++;
        }

        var from = Math.Max(0, common - 60);
        string Cut(string s) => (from > 0 ? "…" : "") + s[from..Math.Min(s.Length, common + 120)] + (common + 120 < s.Length ? "…" : "");
        return $"expected {Cut(e)} got {Cut(a)} (first difference at character {common + 1})";
    }

    /// <summary>An ordered hash of a relation's rows, with the first rows kept to show a difference.</summary>
    private sealed class RowDigest
    {
        public long Count { get; private init; }

        public required string Sha256 { get; init; }

        public required List<string> Sample { get; init; }

        /// <summary>True when <see cref="Sample"/> holds every row.</summary>
        public bool SampleIsComplete => Sample.Count == Count;

        public bool WholeTree { get; private init; }

        public static async Task<RowDigest> ReadAsync(NpgsqlConnection connection, string sql, bool wholeTree)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var sample = new List<string>();
            var sampleBytes = 0;
            var sampling = true;
            long count = 0;
            var length = new byte[4];
            await using var command = new NpgsqlCommand(sql, connection);
            await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                var row = reader.GetFieldValue<byte[]>(0);
                // Length-prefixed, so rows can never run into each other.
                System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(length, row.Length);
                hash.AppendData(length);
                hash.AppendData(row);
                count++;
                if (sampling && sample.Count < SampleRows && sampleBytes + row.Length <= SampleBytes)
                {
                    sample.Add(Decode(row));
                    sampleBytes += row.Length;
                }
                else
                {
                    sampling = false;
                }
            }

            return new RowDigest { Count = count, Sha256 = Convert.ToHexStringLower(hash.GetHashAndReset()), Sample = sample, WholeTree = wholeTree };
        }

        public string? DescribeDifference(RowDigest actual)
        {
            if (Count == actual.Count && Sha256 == actual.Sha256)
            {
                return null;
            }

            var counts = Count == actual.Count ? $"{Count} rows in both" : $"expected {Count} rows got {actual.Count}";
            var common = Math.Min(Sample.Count, actual.Sample.Count);
            for (var i = 0; i < common; i++)
            {
                if (!string.Equals(Sample[i], actual.Sample[i], StringComparison.Ordinal))
                {
                    return $"row hash differs ({counts}); row {i + 1} in row-text order: expected {Show(Sample[i])} got {Show(actual.Sample[i])}";
                }
            }

            if (SampleIsComplete && actual.SampleIsComplete)
            {
                return Count > actual.Count
                    ? $"row hash differs ({counts}); first missing row: {Show(Sample[common])}"
                    : $"row hash differs ({counts}); first extra row: {Show(actual.Sample[common])}";
            }

            return $"row hash differs ({counts}); the first {common} rows in row-text order are equal";
        }

        public override string ToString() => $"{Count} rows sha256={Sha256}{(WholeTree ? " (read through the partitioned table)" : "")}";
    }
}
