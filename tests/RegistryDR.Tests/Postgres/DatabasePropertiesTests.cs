using RegistryDR.Postgres;

namespace RegistryDR.Tests.Postgres;

/// <summary>The statements that give a restored database its recorded properties (applied to a server in Fidelity/DatabaseLevelPropertiesTests).</summary>
[TestClass]
public sealed class DatabasePropertiesTests
{
    private static readonly DatabaseProperties Sample = new()
    {
        ConnectionLimit = 50,
        IsTemplate = true,
        Comment = "it's ours",
        Tablespace = "fast disk",
        LocaleProvider = "icu",
        ProviderLocale = "de-DE",
        Acl =
        [
            new("registry", "registry", ["CONNECT", "CREATE", "TEMPORARY"], []),
            new("ops team", "registry", ["CONNECT"], ["CONNECT"]),
            new("reader", "ops team", ["CONNECT"], []),
            new(null, "registry", ["TEMPORARY"], []),
        ],
        Settings =
        [
            new(null, ["search_path=registry, public, \"$user\", \"My Schema\"", "statement_timeout=30s", "app.note=it's; here"]),
            new("ops team", ["work_mem=8MB"]),
        ],
    };

    [TestMethod]
    public void ApplyStatements_RebuildTheAclItemByItem_AndQuoteEverything()
    {
        CollectionAssert.AreEqual(new[]
        {
            "COMMENT ON DATABASE \"dtr_rdr_restore\" IS 'it''s ours'",
            "ALTER DATABASE \"dtr_rdr_restore\" CONNECTION LIMIT = 50",
            "ALTER DATABASE \"dtr_rdr_restore\" SET \"search_path\" TO 'registry', 'public', '$user', 'My Schema'",
            "ALTER DATABASE \"dtr_rdr_restore\" SET \"statement_timeout\" TO '30s'",
            "ALTER DATABASE \"dtr_rdr_restore\" SET \"app.note\" TO 'it''s; here'",
            "ALTER ROLE \"ops team\" IN DATABASE \"dtr_rdr_restore\" SET \"work_mem\" TO '8MB'",
            "REVOKE ALL ON DATABASE \"dtr_rdr_restore\" FROM PUBLIC",
            "REVOKE ALL ON DATABASE \"dtr_rdr_restore\" FROM \"registry\"",
            "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE \"dtr_rdr_restore\" TO \"registry\"",
            "GRANT CONNECT ON DATABASE \"dtr_rdr_restore\" TO \"ops team\" WITH GRANT OPTION",
            "SET LOCAL ROLE \"ops team\"",
            "GRANT CONNECT ON DATABASE \"dtr_rdr_restore\" TO \"reader\"",
            "RESET ROLE",
            "GRANT TEMPORARY ON DATABASE \"dtr_rdr_restore\" TO PUBLIC",
            "ALTER DATABASE \"dtr_rdr_restore\" IS_TEMPLATE = true",
        }, Sample.ApplyStatements("dtr_rdr_restore", "registry").ToArray());
        Assert.AreEqual(" LOCALE_PROVIDER = icu ICU_LOCALE = 'de-DE' TABLESPACE = \"fast disk\"", Sample.CreateClauses(tablespace: true));
        Assert.AreEqual(" LOCALE_PROVIDER = icu ICU_LOCALE = 'de-DE'", Sample.CreateClauses(tablespace: false));
    }

    [TestMethod]
    public void DefaultPrivileges_AreLeftAlone_AndAnEmptyAclRevokesEverything()
    {
        Assert.IsFalse(new DatabaseProperties().ApplyStatements("d", "o").Any(s => s.Contains("GRANT", StringComparison.Ordinal)));
        CollectionAssert.AreEqual(new[] { "REVOKE ALL ON DATABASE \"d\" FROM PUBLIC", "REVOKE ALL ON DATABASE \"d\" FROM \"o\"" },
            new DatabaseProperties { Acl = [] }.ApplyStatements("d", "o").ToArray());
    }

    [TestMethod]
    [DataRow("registry, public", new[] { "registry", "public" })]
    [DataRow("\"$user\", public", new[] { "$user", "public" })]
    [DataRow("\"a \"\"b\"\", c\",d", new[] { "a \"b\", c", "d" })]
    [DataRow("\"\"", new[] { "" })]
    public void GucLists_AreSplitAsPostgresWritesThem(string value, string[] expected) =>
        CollectionAssert.AreEqual(expected, DatabaseProperties.SplitList(value).ToArray());

    [TestMethod]
    public void ADrillWithoutTheRoles_LeavesOutWhatNamesThem_AndSaysSo()
    {
        var (kept, leftOut) = Sample.WithoutMissingRoles(role => role == "registry");
        Assert.IsNull(kept.Acl);
        CollectionAssert.AreEqual(new[] { "privileges (they name roles this server does not have: ops team, reader)", "settings for role ops team (no such role on this server)" }, leftOut.ToArray());
        Assert.HasCount(1, kept.Settings);
    }

    [TestMethod]
    [DataRow("statement_timeout")]
    [DataRow("=30s")]
    [DataRow("search_path=\"a\"b")]
    public void MalformedSettings_AreAProblem(string setting) =>
        Assert.IsNotNull(new DatabaseProperties { Settings = [new(null, [setting])] }.Problem());

    [TestMethod]
    public void FirstDifference_NamesTheProperty()
    {
        Assert.IsNull(Sample.FirstDifference(Sample with { }));
        Assert.AreEqual("expected connection limit 50, found connection limit -1", Sample.FirstDifference(Sample with { ConnectionLimit = -1 }));
        StringAssert.StartsWith(Sample.FirstDifference(Sample with { Acl = null }), "expected privileges registry=CONNECT+CREATE+TEMPORARY/registry, ops team=CONNECT*/registry");
    }
}
