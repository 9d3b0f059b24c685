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
    [DataRow("Database:PasswordFile", "/nonexistent/pw", "Database:PasswordFile '/nonexistent/pw' does not exist")]
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
    [DataRow("Databse:Host", "typo", "Databse")]
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
            StringAssert.Contains(Assert.ThrowsExactly<ConfigurationException>(() => RegistryDrConfiguration.Load(file)).Message, "not valid JSON");
        }
        finally
        {
            File.Delete(file);
        }
    }
}
