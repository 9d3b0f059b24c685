using RegistryDR.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using RegistryDR.Configuration;

namespace RegistryDR.Tests.Configuration;

/// <summary>Bad configuration fails at start-up, before anything is touched, naming the key and the problem.</summary>
[TestClass]
public sealed class ConfigurationTests
{
    private static RegistryDrOptions Bind(Dictionary<string, string?> values) =>
        RegistryDrConfiguration.Bind(new ConfigurationBuilder().AddInMemoryCollection(values).Build());

    private static string Fails(Dictionary<string, string?> values) =>
        Assert.ThrowsExactly<ConfigurationException>(() => Bind(values)).Message;

    [TestMethod]
    public void Defaults_AreValid_AndProtectDtrsDirectories_ToALocalStore()
    {
        var options = Bind([]);
        CollectionAssert.AreEqual(new[] { "/var/local/dtr", "/usr/local/etc/dtr" }, options.Config.EffectiveDirectories.ToArray());
        Assert.AreEqual("file:///var/backups/registry-dr", options.Store.Url);
        Assert.AreEqual("0 0/15 * * * ?", options.Schedule.Cron);
    }

    [TestMethod]
    [DataRow("Database:Port", "70000", "Database:Port is 70000; it must be between 1 and 65535")]
    [DataRow("Database:Port", "five", "Database:Port")]
    [DataRow("Database:CompressionLevel", "12", "Database:CompressionLevel is 12")]
    [DataRow("Database:Name", "", "Database:Name is required")]
    [DataRow("Database:PasswordFile", "relative/pw", "Database:PasswordFile 'relative/pw' must be an absolute path")]
    [DataRow("Store:Url", "ftp://x/y", "Store:Url 'ftp://x/y' is not supported")]
    [DataRow("Store:Url", "s3://A_Bucket/x", "not a valid S3 bucket name")]
    [DataRow("Store:Url", "file://relative/path", "must be file:// followed by an absolute path")]
    [DataRow("Store:PartSizeMiB", "2", "Store:PartSizeMiB is 2")]
    [DataRow("Store:ServiceUrl", "not a url", "Store:ServiceUrl 'not a url'")]
    [DataRow("Store:KmsKeyId", "abc", "Store:KmsKeyId is set but Store:ServerSideEncryption is not 'Kms'")]
    [DataRow("Schedule:Cron", "every 15 minutes", "Schedule:Cron 'every 15 minutes' is not a valid Quartz cron expression")]
    [DataRow("Config:Directories:0", "relative/dir", "Config:Directories:0 'relative/dir' must be an absolute path")]
    [DataRow("Registry:HealthUrl", "ftp://x", "Registry:HealthUrl 'ftp://x'")]
    [DataRow("Restore:StagingDirectory", "tmp", "Restore:StagingDirectory 'tmp' must be an absolute path")]
    [DataRow("Databse:Host", "typo", "Databse is not a section; did you mean Database?")]
    [DataRow("Restore:Jobs", "0", "Restore:Jobs is 0; it must be between 1 and 64")]
    [DataRow("Retention:KeepLast", "0", "Retention:KeepLast is 0")]
    [DataRow("Monitoring:Urls:0", "not-a-url", "Monitoring:Urls:0 'not-a-url'")]
    public void InvalidValue_NamesTheKey(string key, string value, string expected)
    {
        var message = Fails(new() { [key] = value });
        StringAssert.Contains(message, expected);
    }

    [TestMethod]
    public void NestedDirectories_AreRefused()
    {
        var message = Fails(new() { ["Config:Directories:0"] = "/var/local/dtr", ["Config:Directories:1"] = "/var/local/dtr/sub" });
        StringAssert.Contains(message, "lies inside");
    }

    [TestMethod]
    public void EveryProblem_IsReportedAtOnce()
    {
        var message = Fails(new() { ["Database:Port"] = "0", ["Schedule:Cron"] = "nope", ["Store:Url"] = "x" });
        StringAssert.Contains(message, "Database:Port");
        StringAssert.Contains(message, "Schedule:Cron");
        StringAssert.Contains(message, "Store:Url");
    }

    [TestMethod]
    public void JsonFile_IsLayeredUnderEnvironmentVariables()
    {
        using var dirScope = new TempDirectory("rdr-config-");
        var dir = dirScope.Path;
        var file = Path.Combine(dir, "registry-dr.json");
        File.WriteAllText(file, """{ "Database": { "Name": "from_file", "Port": 5433 }, "Store": { "Url": "s3://backups-bucket/dtr" } }""");
        var env = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Database:Port"] = "6543" }).Build();
        var options = RegistryDrConfiguration.Load(file, env);
        Assert.AreEqual("from_file", options.Database.Name);
        Assert.AreEqual(6543, options.Database.Port);
        Assert.AreEqual("s3://backups-bucket/dtr", options.Store.Url);
    }

    [TestMethod]
    public void MissingExplicitFile_AndBrokenJson_AreClearErrors()
    {
        StringAssert.Contains(Assert.ThrowsExactly<ConfigurationException>(() => RegistryDrConfiguration.Load("/nonexistent/registry-dr.json")).Message, "does not exist");
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "{ \"Database\": ");
            StringAssert.Contains(Assert.ThrowsExactly<ConfigurationException>(() => RegistryDrConfiguration.Load(file)).Message, $"{file} is not valid JSON at line 1, column 15");
        }
        finally
        {
            File.Delete(file);
        }
    }

    [TestMethod]
    public void MisspelledKey_IsNamed_WithTheSettingItProbablyMeant()
    {
        var message = Fails(new() { ["Database:PaswordFile"] = "/etc/registry-dr/db-password" });
        Assert.AreEqual("Invalid configuration:" + Environment.NewLine +
            "  Database:PaswordFile is not a setting; did you mean Database:PasswordFile?", message);
    }

    [TestMethod]
    public void UnknownKey_FarFromEverySetting_ListsTheSectionsSettings()
    {
        var message = Fails(new() { ["Retention:Forever"] = "true" });
        Assert.AreEqual("Invalid configuration:" + Environment.NewLine +
            "  Retention:Forever is not a setting; Retention's settings are KeepLast, KeepDailyDays, KeepWeeklyWeeks, IncompleteGrace, PruneAfterBackup.", message);
    }

    [TestMethod]
    [DataRow("Database:Port", "five", "Database:Port is 'five'; expected a number between 1 and 65535.")]
    [DataRow("Config:Directories", "/var/local/dtr", "Config:Directories is '/var/local/dtr'; expected a list of strings, e.g. [\"/var/local/dtr\"].")]
    [DataRow("Registry:HealthTimeout", "soon", "Registry:HealthTimeout is 'soon'; expected a duration hh:mm:ss (d.hh:mm:ss for days), e.g. \"00:05:00\".")]
    [DataRow("Store:ServerSideEncryption", "Aes", "Store:ServerSideEncryption is 'Aes'; expected one of None, S3, Kms.")]
    [DataRow("Store:ForcePathStyle", "yes", "Store:ForcePathStyle is 'yes'; expected true or false.")]
    [DataRow("Database:SplitTablesFromMiB", "lots", "Database:SplitTablesFromMiB is 'lots'; expected a number between 0 and 1048576.")]
    public void ValueOfTheWrongForm_SaysTheFormExpected_NeverATypeName(string key, string value, string expected)
    {
        var message = Fails(new() { [key] = value });
        Assert.AreEqual("Invalid configuration:" + Environment.NewLine + "  " + expected, message);
        Assert.DoesNotContain("System.", message);
    }

    [TestMethod]
    public void ASectionWhereAValueBelongs_AndTheReverse_AreNamed()
    {
        var message = Fails(new() { ["Database:Host:Name"] = "x", ["Store"] = "s3://bucket/x" });
        StringAssert.Contains(message, "Database:Host is a section (with Name); expected a string.");
        StringAssert.Contains(message, "Store is 's3://bucket/x'; expected a section of settings (Url, Region,");
    }

    [TestMethod]
    public void ReadingAndValidationProblems_AreAllReportedTogether()
    {
        var message = Fails(new()
        {
            ["Databse:Host"] = "x",
            ["Database:Port"] = "five",
            ["Store:PartSizeMiB"] = "2",
            ["Schedule:Cron"] = "often",
        });
        var lines = message.Split(Environment.NewLine);
        CollectionAssert.AreEqual(new[]
        {
            "Invalid configuration:",
            "  Database:Port is 'five'; expected a number between 1 and 65535.",
            "  Databse is not a section; did you mean Database?",
            "  Store:PartSizeMiB is 2; it must be between 5 and 512.",
            "  Schedule:Cron 'often' is not a valid Quartz cron expression (six or seven fields, seconds first; e.g. \"0 0/15 * * * ?\" for every 15 minutes).",
        }, lines, message);
    }

    [TestMethod]
    public void ProblemsInTheFile_NameTheFileLineAndColumn()
    {
        using var dir = new TempDirectory("rdr-config-");
        var file = Path.Combine(dir.Path, "registry-dr.json");
        File.WriteAllText(file, """
            {
              // comments and trailing commas are allowed, as the JSON provider allows them
              "Database": { "PaswordFile": "/etc/registry-dr/db-password", "Port": 70000, },
              "Config": { "Directories": ["/var/local/dtr", "relative"] }
            }
            """);
        var message = Assert.ThrowsExactly<ConfigurationException>(() => RegistryDrConfiguration.Load(file)).Message;
        CollectionAssert.AreEqual(new[]
        {
            "Invalid configuration:",
            $"  Database:PaswordFile is not a setting; did you mean Database:PasswordFile? ({file} line 3, column 17)",
            $"  Database:Port is 70000; it must be between 1 and 65535 ({file} line 3, column 64).",
            $"  Config:Directories:1 'relative' must be an absolute path ({file} line 4, column 49).",
        }, message.Split(Environment.NewLine), message);
    }

    [TestMethod]
    [DataRow("{\n  \"Database\": { \"Port\": 5432\n  \"Store\": {}\n}\n", "is not valid JSON at line 3, column 3: '\"' is invalid after a value. Expected either ',', '}', or ']'.")]
    [DataRow("[1, 2]", "line 1, column 1: the file must hold one JSON object")]
    [DataRow("{ \"Store\": { \"Url\": \"file:///a\", \"url\": \"file:///b\" } }", "line 1, column 34: 'Store:url' is written twice in the same object")]
    [DataRow("", "is empty: it must hold one JSON object")]
    public void AFileThatIsNotAConfiguration_NamesFileLineAndColumn(string text, string expected)
    {
        using var dir = new TempDirectory("rdr-config-");
        var file = Path.Combine(dir.Path, "registry-dr.json");
        File.WriteAllText(file, text);
        var message = Assert.ThrowsExactly<ConfigurationException>(() => RegistryDrConfiguration.Load(file)).Message;
        StringAssert.StartsWith(message, "Invalid configuration:" + Environment.NewLine + "  " + file);
        StringAssert.Contains(message, expected);
    }

    [TestMethod]
    public void AMissingPasswordFile_IsNotAConfigurationError_ForWhatNeverConnects()
    {
        // list, verify and prune never connect: only what does checks the file (PasswordProblem).
        var options = Bind(new() { ["Database:PasswordFile"] = "/nonexistent/db-password" });
        Assert.AreEqual("/nonexistent/db-password", options.Database.PasswordFile);
        Assert.AreEqual("Database:PasswordFile '/nonexistent/db-password' does not exist: create it with the database password on its first line (install -m 600), or correct the path.",
            RegistryDR.Postgres.PostgresConnectionFactory.PasswordProblem(options.Database));
    }

    [TestMethod]
    public void AnEmptyPasswordFile_IsNamedAsEmpty_NotBlamedOnHostAndPort()
    {
        using var dir = new TempDirectory("rdr-config-");
        var path = Path.Combine(dir.Path, "db-password");
        File.WriteAllText(path, "");
        var options = Bind(new() { ["Database:PasswordFile"] = path });
        Assert.AreEqual($"Database:PasswordFile '{path}' is empty: put the database password on its first line.",
            RegistryDR.Postgres.PostgresConnectionFactory.PasswordProblem(options.Database));
        File.WriteAllText(path, "secret\n");
        Assert.IsNull(RegistryDR.Postgres.PostgresConnectionFactory.PasswordProblem(options.Database));
    }

    [TestMethod]
    public void EverySetting_HasAFormInWords()
    {
        // A new option of a type the reader cannot read fails here, not on an operator's node.
        var forms = new List<string>();
        foreach (var section in RegistryDR.Configuration.Internal.OptionsReader.Settable(typeof(RegistryDrOptions)))
            foreach (var setting in RegistryDR.Configuration.Internal.OptionsReader.Settable(section.PropertyType))
                forms.Add(RegistryDR.Configuration.Internal.OptionsReader.Form(setting));
        Assert.IsGreaterThan(60, forms.Count);
        Assert.IsFalse(forms.Any(f => f.Contains("System.") || f.Contains('`')), string.Join("; ", forms));
    }
}
