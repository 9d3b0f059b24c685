using System.Text;
using Npgsql;

namespace RegistryDR.Postgres;

/// <summary>
/// What belongs to the database itself rather than to any object in it — what <c>pg_dump
/// --create</c> writes around its CREATE DATABASE and what a dump without <c>--create</c> (and
/// <c>pg_dumpall --globals-only</c>) leaves out: settings (<c>ALTER DATABASE ... SET</c>,
/// <c>ALTER ROLE ... IN DATABASE ... SET</c>), privileges (GRANT/REVOKE ON DATABASE), connection
/// limit, comment, security labels, the template flag, the tablespace and the locale provider.
/// The owner, encoding, LC_COLLATE and LC_CTYPE are recorded beside it in the manifest.
/// </summary>
/// <remarks>
/// For a database whose encoding is not UTF8, the text here (comment, setting values, role
/// names) holds the database encoding's bytes, one character per byte (ISO-8859-1), as read and
/// written by <see cref="PostgresConnectionFactory.OpenInDatabaseEncodingAsync"/>: such text may
/// have no UTF8 form at all.
/// </remarks>
public sealed record DatabaseProperties
{
    /// <summary>datconnlimit: -1 for no limit.</summary>
    public int ConnectionLimit { get; init; } = -1;

    /// <summary>datistemplate.</summary>
    public bool IsTemplate { get; init; }

    /// <summary>COMMENT ON DATABASE; null for none.</summary>
    public string? Comment { get; init; }

    /// <summary>The database's default tablespace; null for pg_default.</summary>
    public string? Tablespace { get; init; }

    /// <summary>"libc", "icu" or "builtin" (datlocprovider, PostgreSQL 15+); null on older servers (libc).</summary>
    public string? LocaleProvider { get; init; }

    /// <summary>The ICU (or builtin) locale: daticulocale (15, 16) or datlocale (17+); null for libc.</summary>
    public string? ProviderLocale { get; init; }

    /// <summary>daticurules (16+); null for none.</summary>
    public string? IcuRules { get; init; }

    /// <summary>datacl in its order, one entry per aclitem; null for the default privileges (datacl NULL).</summary>
    public IReadOnlyList<AclItem>? Acl { get; init; }

    /// <summary>pg_db_role_setting rows of this database: for all roles (Role null) and per role.</summary>
    public IReadOnlyList<RoleSettings> Settings { get; init; } = [];

    /// <summary>pg_shseclabel rows of this database.</summary>
    public IReadOnlyList<SecurityLabel> SecurityLabels { get; init; } = [];

    /// <param name="Grantee">The role granted to; null for PUBLIC.</param>
    /// <param name="Grantor">The role that granted.</param>
    /// <param name="Privileges">CONNECT, CREATE, TEMPORARY, as aclexplode names them.</param>
    /// <param name="Grantable">Those of <paramref name="Privileges"/> held WITH GRANT OPTION.</param>
    public sealed record AclItem(string? Grantee, string Grantor, IReadOnlyList<string> Privileges, IReadOnlyList<string> Grantable);

    /// <param name="Role">The role the settings apply to in this database; null for every role (ALTER DATABASE ... SET).</param>
    /// <param name="Settings">"name=value" as pg_db_role_setting stores them, in its order.</param>
    public sealed record RoleSettings(string? Role, IReadOnlyList<string> Settings);

    public sealed record SecurityLabel(string Provider, string Label);

    /// <summary>Every role these properties name (grantees, grantors, per-role settings).</summary>
    public IEnumerable<string> Roles =>
        (Acl ?? []).SelectMany(a => a.Grantee is null ? [a.Grantor] : new[] { a.Grantee, a.Grantor })
        .Concat(Settings.Where(s => s.Role is not null).Select(s => s.Role!))
        .Distinct(StringComparer.Ordinal);

    private const string ReadSql = """
        SELECT j ->> 'datlocprovider', coalesce(j ->> 'daticulocale', j ->> 'datlocale'), j ->> 'daticurules',
               d.datconnlimit, d.datistemplate, shobj_description(d.oid, 'pg_database'),
               CASE WHEN t.spcname <> 'pg_default' THEN t.spcname::text END, d.datacl IS NULL
        FROM pg_database d
        JOIN pg_tablespace t ON t.oid = d.dattablespace
        CROSS JOIN LATERAL to_jsonb(d) j
        WHERE d.datname = current_database()
        """;

    private const string AclSql = """
        SELECT a.n, CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee)::text END, pg_get_userbyid(x.grantor)::text,
               x.privilege_type, x.is_grantable
        FROM pg_database d
        CROSS JOIN LATERAL unnest(d.datacl) WITH ORDINALITY a (item, n)
        CROSS JOIN LATERAL aclexplode(ARRAY[a.item]) x
        WHERE d.datname = current_database()
        ORDER BY a.n, x.privilege_type
        """;

    private const string SettingsSql = """
        SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole)::text END, s.setconfig
        FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
        WHERE d.datname = current_database()
        ORDER BY s.setrole <> 0, 1
        """;

    private const string LabelsSql = """
        SELECT l.provider, l.label FROM pg_shseclabel l JOIN pg_database d ON d.oid = l.objoid
        WHERE l.classoid = 'pg_database'::regclass AND d.datname = current_database()
        ORDER BY 1
        """;

    /// <summary>Reads the properties of the database <paramref name="connection"/> is connected to.</summary>
    public static async Task<DatabaseProperties> ReadAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        DatabaseProperties properties;
        bool defaultAcl;
        await using (var command = new NpgsqlCommand(ReadSql, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            if (!await reader.ReadAsync(cancellationToken)) throw new InvalidOperationException("current_database() is not in pg_database.");
            string? Text(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
            properties = new DatabaseProperties
            {
                LocaleProvider = Text(0) switch { null => null, "c" => "libc", "i" => "icu", "b" => "builtin", var other => other },
                ProviderLocale = Text(1),
                IcuRules = Text(2),
                ConnectionLimit = reader.GetInt32(3),
                IsTemplate = reader.GetBoolean(4),
                Comment = Text(5),
                Tablespace = Text(6),
            };
            defaultAcl = reader.GetBoolean(7);
        }
        var acl = new List<AclItem>();
        if (!defaultAcl)
        {
            await using var command = new NpgsqlCommand(AclSql, connection);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var rows = new List<(long N, string? Grantee, string Grantor, string Privilege, bool Grantable)>();
            while (await reader.ReadAsync(cancellationToken))
                rows.Add((reader.GetInt64(0), reader.IsDBNull(1) ? null : reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetBoolean(4)));
            foreach (var item in rows.GroupBy(r => r.N).OrderBy(g => g.Key))
            {
                var first = item.First();
                acl.Add(new AclItem(first.Grantee, first.Grantor, item.Select(r => r.Privilege).ToList(), item.Where(r => r.Grantable).Select(r => r.Privilege).ToList()));
            }
        }
        var settings = new List<RoleSettings>();
        await using (var command = new NpgsqlCommand(SettingsSql, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            while (await reader.ReadAsync(cancellationToken))
                settings.Add(new RoleSettings(reader.IsDBNull(0) ? null : reader.GetString(0), reader.GetFieldValue<string[]>(1)));
        var labels = new List<SecurityLabel>();
        await using (var command = new NpgsqlCommand(LabelsSql, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            while (await reader.ReadAsync(cancellationToken))
                labels.Add(new SecurityLabel(reader.GetString(0), reader.GetString(1)));
        return properties with { Acl = defaultAcl ? null : acl, Settings = settings, SecurityLabels = labels };
    }

    /// <summary>
    /// The clauses of CREATE DATABASE that cannot be changed afterwards: the locale provider (and
    /// its locale and rules) and the tablespace (which cannot be changed while connected to the
    /// database). <paramref name="tablespace"/> false leaves the tablespace out.
    /// </summary>
    public string CreateClauses(bool tablespace)
    {
        var sql = new StringBuilder();
        switch (LocaleProvider)
        {
            case "libc":
                sql.Append(" LOCALE_PROVIDER = libc");
                break;
            case "icu":
                sql.Append(" LOCALE_PROVIDER = icu ICU_LOCALE = ").Append(Literal(ProviderLocale ?? ""));
                if (IcuRules is not null) sql.Append(" ICU_RULES = ").Append(Literal(IcuRules));
                break;
            case "builtin":
                sql.Append(" LOCALE_PROVIDER = builtin BUILTIN_LOCALE = ").Append(Literal(ProviderLocale ?? ""));
                break;
        }
        if (tablespace && Tablespace is not null) sql.Append(" TABLESPACE = ").Append(Quote(Tablespace));
        return sql.ToString();
    }

    /// <summary>
    /// The statements that give <paramref name="database"/> (owned by <paramref name="owner"/>,
    /// freshly created with <see cref="CreateClauses"/>) these properties, in the order pg_dump
    /// --create applies them; the template flag last. Run them in one transaction, connected to
    /// that database.
    /// </summary>
    public IReadOnlyList<string> ApplyStatements(string database, string owner)
    {
        var db = Quote(database);
        var statements = new List<string>();
        if (Comment is not null) statements.Add($"COMMENT ON DATABASE {db} IS {Literal(Comment)}");
        foreach (var label in SecurityLabels) statements.Add($"SECURITY LABEL FOR {Quote(label.Provider)} ON DATABASE {db} IS {Literal(label.Label)}");
        if (ConnectionLimit != -1) statements.Add($"ALTER DATABASE {db} CONNECTION LIMIT = {ConnectionLimit}");
        foreach (var group in Settings)
        {
            var target = group.Role is null ? $"ALTER DATABASE {db}" : $"ALTER ROLE {Quote(group.Role)} IN DATABASE {db}";
            foreach (var setting in group.Settings)
            {
                var (name, value) = SplitSetting(setting);
                statements.Add($"{target} SET {Quote(name)} TO {SettingValue(name, value)}");
            }
        }
        if (Acl is not null)
        {
            // From nothing, then every aclitem in its order: the same datacl, item for item.
            statements.Add($"REVOKE ALL ON DATABASE {db} FROM PUBLIC");
            statements.Add($"REVOKE ALL ON DATABASE {db} FROM {Quote(owner)}");
            foreach (var item in Acl)
            {
                // A superuser's GRANT is recorded as the owner's; any other grantor grants as itself.
                var asGrantor = item.Grantor != owner;
                if (asGrantor) statements.Add($"SET LOCAL ROLE {Quote(item.Grantor)}");
                var grantee = item.Grantee is null ? "PUBLIC" : Quote(item.Grantee);
                var plain = item.Privileges.Except(item.Grantable, StringComparer.Ordinal).ToList();
                if (plain.Count > 0) statements.Add($"GRANT {string.Join(", ", plain)} ON DATABASE {db} TO {grantee}");
                if (item.Grantable.Count > 0) statements.Add($"GRANT {string.Join(", ", item.Grantable)} ON DATABASE {db} TO {grantee} WITH GRANT OPTION");
                if (asGrantor) statements.Add("RESET ROLE");
            }
        }
        if (IsTemplate) statements.Add($"ALTER DATABASE {db} IS_TEMPLATE = true");
        return statements;
    }

    /// <summary>
    /// Applies <see cref="ApplyStatements"/> in one transaction on <paramref name="connection"/>
    /// (connected to <paramref name="database"/>, whose owner it reads there, so that the name is
    /// in the same form as the properties' role names).
    /// </summary>
    public async Task ApplyAsync(NpgsqlConnection connection, string database, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        string owner;
        await using (var read = new NpgsqlCommand("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()", connection, transaction))
            owner = (string)(await read.ExecuteScalarAsync(cancellationToken))!;
        foreach (var statement in ApplyStatements(database, owner))
        {
            await using var command = new NpgsqlCommand(statement, connection, transaction);
            try
            {
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            catch (PostgresException ex)
            {
                // The statement up to its value: a setting's value is the server's to quote (it may be
                // something an operator would rather not see in a log).
                var to = statement.IndexOf(" TO ", StringComparison.Ordinal);
                var what = statement.StartsWith("ALTER ", StringComparison.Ordinal) && statement.Contains(" SET \"", StringComparison.Ordinal) && to > 0 ? statement[..to] : statement;
                throw new DatabasePropertiesException($"could not give the database a property the backup recorded ({what}): {ex.MessageText}", ex);
            }
        }
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>One line per property, in a fixed order, for comparing and for messages.</summary>
    public IReadOnlyList<string> Describe()
    {
        var lines = new List<string>
        {
            $"connection limit {ConnectionLimit}",
            $"template {(IsTemplate ? "true" : "false")}",
            $"comment {Comment ?? "(none)"}",
            $"tablespace {Tablespace ?? "pg_default"}",
            $"locale provider {LocaleProvider ?? "(server default)"} {ProviderLocale ?? ""} {IcuRules ?? ""}".TrimEnd(),
            Acl is null ? "privileges (default)" : "privileges " + string.Join(", ", Acl.Select(a =>
                $"{a.Grantee ?? "PUBLIC"}={string.Join("+", a.Privileges.Select(p => a.Grantable.Contains(p) ? p + "*" : p))}/{a.Grantor}")),
        };
        lines.AddRange(Settings.Select(s => $"settings for {s.Role ?? "(all roles)"}: {string.Join(", ", s.Settings)}"));
        lines.AddRange(SecurityLabels.Select(l => $"security label {l.Provider}: {l.Label}"));
        return lines;
    }

    /// <summary>Null when <paramref name="actual"/> has the same properties; otherwise the first that differs.</summary>
    public string? FirstDifference(DatabaseProperties actual)
    {
        var expected = Describe();
        var got = actual.Describe();
        for (var i = 0; i < Math.Max(expected.Count, got.Count); i++)
        {
            var e = i < expected.Count ? expected[i] : "(nothing)";
            var a = i < got.Count ? got[i] : "(nothing)";
            if (e != a) return $"expected {e}, found {a}";
        }
        return null;
    }

    /// <summary>
    /// These properties without what names a role <paramref name="exists"/> says is missing (a
    /// drill on a server without the backup's roles), and the list of what was left out.
    /// </summary>
    public (DatabaseProperties Kept, IReadOnlyList<string> LeftOut) WithoutMissingRoles(Func<string, bool> exists)
    {
        var leftOut = new List<string>();
        IReadOnlyList<AclItem>? acl = Acl;
        if (Acl is not null && Acl.Any(a => !exists(a.Grantor) || (a.Grantee is not null && !exists(a.Grantee))))
        {
            // Partial privileges would prove nothing; leave them all out and say so.
            leftOut.Add("privileges (they name roles this server does not have: " + string.Join(", ", Roles.Where(r => !exists(r))) + ")");
            acl = null;
        }
        var settings = new List<RoleSettings>();
        foreach (var s in Settings)
        {
            if (s.Role is null || exists(s.Role)) settings.Add(s);
            else leftOut.Add($"settings for role {s.Role} (no such role on this server)");
        }
        return (this with { Acl = acl, Settings = settings }, leftOut);
    }

    /// <summary>Null when the properties are well-formed (as read from a manifest); otherwise what is wrong.</summary>
    public string? Problem()
    {
        if (ConnectionLimit < -1) return $"connection limit {ConnectionLimit} is below -1";
        if (LocaleProvider is not (null or "libc" or "icu" or "builtin")) return $"locale provider '{LocaleProvider}' is not libc, icu or builtin";
        if (Settings is null || SecurityLabels is null) return "settings or security labels are null";
        foreach (var s in Settings)
        {
            if (s is null || s.Settings is null || (s.Role is not null && !IsName(s.Role))) return "a settings entry has no settings or an invalid role";
            foreach (var setting in s.Settings)
            {
                if (setting is null || setting.IndexOf('=', StringComparison.Ordinal) <= 0 || !IsName(setting[..setting.IndexOf('=', StringComparison.Ordinal)]))
                    return $"setting '{setting}' is not name=value";
                try { _ = SettingValue(SplitSetting(setting).Name, SplitSetting(setting).Value); }
                catch (FormatException ex) { return $"setting '{setting}' cannot be given back: {ex.Message}"; }
            }
        }
        foreach (var a in Acl ?? [])
        {
            if (a is null || !IsName(a.Grantor) || (a.Grantee is not null && !IsName(a.Grantee)) || a.Privileges is null || a.Grantable is null || a.Privileges.Count == 0)
                return "a privilege entry has no grantor, an invalid grantee or no privileges";
            if (a.Privileges.Concat(a.Grantable).Any(p => p is not ("CONNECT" or "CREATE" or "TEMPORARY")) || a.Grantable.Except(a.Privileges).Any())
                return "a privilege entry names a privilege other than CONNECT, CREATE or TEMPORARY";
        }
        foreach (var l in SecurityLabels)
            if (l is null || !IsName(l.Provider) || l.Label is null) return "a security label has no provider or no label";
        if ((Tablespace is not null && !IsName(Tablespace)) || Comment?.Contains('\0') == true) return "the tablespace or the comment is invalid";
        return null;
    }

    private static bool IsName(string? name) => !string.IsNullOrEmpty(name) && !name.Contains('\0');

    // The settings whose value is a list of names (pg_dump's variable_is_guc_list_quote): stored
    // as a list with each element quoted as needed, given back as one literal per element.
    private static readonly HashSet<string> ListSettings = new(StringComparer.OrdinalIgnoreCase)
    {
        "local_preload_libraries", "search_path", "session_preload_libraries", "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories",
    };

    internal static (string Name, string Value) SplitSetting(string setting)
    {
        var at = setting.IndexOf('=', StringComparison.Ordinal);
        return at <= 0 ? throw new FormatException($"'{setting}' is not name=value") : (setting[..at], setting[(at + 1)..]);
    }

    internal static string SettingValue(string name, string value) =>
        ListSettings.Contains(name) ? string.Join(", ", SplitList(value).Select(Literal)) : Literal(value);

    /// <summary>A GUC list as PostgreSQL writes it: names separated by commas, each double-quoted where needed ("" inside quotes).</summary>
    internal static IReadOnlyList<string> SplitList(string value)
    {
        var items = new List<string>();
        var i = 0;
        while (true)
        {
            while (i < value.Length && char.IsWhiteSpace(value[i])) i++;
            var item = new StringBuilder();
            if (i < value.Length && value[i] == '"')
            {
                i++;
                while (i < value.Length)
                {
                    if (value[i] == '"')
                    {
                        if (i + 1 < value.Length && value[i + 1] == '"') { item.Append('"'); i += 2; continue; }
                        i++;
                        break;
                    }
                    item.Append(value[i++]);
                }
            }
            else
            {
                while (i < value.Length && value[i] != ',' && !char.IsWhiteSpace(value[i])) item.Append(value[i++]);
            }
            items.Add(item.ToString());
            while (i < value.Length && char.IsWhiteSpace(value[i])) i++;
            if (i >= value.Length) return items;
            if (value[i] != ',') throw new FormatException($"'{value}' is not a list of names");
            i++;
        }
    }

    internal static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
    internal static string Literal(string value) => "'" + value.Replace("'", "''", StringComparison.Ordinal) + "'";
}

/// <summary>A recorded database property could not be applied; the message names it.</summary>
public sealed class DatabasePropertiesException(string message, Exception? inner = null) : Exception(message, inner);
