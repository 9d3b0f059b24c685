using System.Text;
using System.Text.Json.Nodes;
using RegistryDR.Backup;

namespace RegistryDR.Tests.Fuzz;

/// <summary>
/// One test per bug the manifest fuzz test found in <see cref="BackupManifest.Parse"/>. Each of
/// these manifests used to be accepted and then crash a restore (or crash Parse itself) with an
/// exception other than <see cref="InvalidManifestException"/>.
/// </summary>
[TestClass]
public sealed class ManifestFuzzRegressionTests
{
    private const string BackupId = ManifestFuzzTests.BackupId;

    [TestMethod]
    public void NullArtifactElementIsRefusedNotNullReference()
    {
        var error = AssertRefused(m => ((JsonArray)m["artifacts"]!).Add(null));
        Assert.Contains("artifact list contains null", error.Message);
    }

    [TestMethod]
    public void NullConfigDirectoryElementIsRefusedNotNullReference()
    {
        var error = AssertRefused(m => ((JsonArray)m["configDirectories"]!).Insert(0, null));
        Assert.Contains("config directory", error.Message);
    }

    [TestMethod]
    public void ArtifactSizesWhoseSumOverflowsAreRefused()
    {
        var error = AssertRefused(m =>
        {
            foreach (var artifact in (JsonArray)m["artifacts"]!)
            {
                artifact!["size"] = long.MaxValue / 2;
            }
        });
        Assert.Contains("add up to more than", error.Message);
    }

    [TestMethod]
    [DataRow("backups/" + BackupId + "//config.tar.gz")]
    [DataRow("backups/" + BackupId + "/./config.tar.gz")]
    [DataRow("backups/" + BackupId + "/config/")]
    [DataRow("backups/" + BackupId + "/sub\\config.tar.gz")]
    [DataRow("backups/" + BackupId + "/config\0.tar.gz")]
    public void ArtifactKeysNoStoreAcceptsAreRefused(string key)
    {
        var error = AssertRefused(m => Artifact(m, "config")["key"] = key);
        Assert.Contains("has key", error.Message);
    }

    [TestMethod]
    [DataRow("/", "")]
    [DataRow("//var/local/dtr", "var/local/dtr")]
    [DataRow("/var/./local/dtr", "var/./local/dtr")]
    [DataRow("/var/local/dtr/", "var/local/dtr/")]
    [DataRow("/var/local\0/dtr", "var/local\0/dtr")]
    [DataRow("/var/local/dtr", "var//local/dtr")]
    [DataRow("/usr/local/etc/dtr/inner", "usr/local/etc/dtr/inner")]
    public void ConfigDirectoriesRestoreCannotUseAreRefused(string path, string entryPrefix)
    {
        // The first directory is replaced; the second one (/usr/local/etc/dtr) stays, so the last
        // row is two directories nested in each other.
        var error = AssertRefused(m => ((JsonArray)m["configDirectories"]!)[0] = new JsonObject { ["path"] = path, ["entryPrefix"] = entryPrefix });
        Assert.Contains("config director", error.Message);
    }

    [TestMethod]
    public void AnEmptyConfigDirectoryListIsRefused()
    {
        var error = AssertRefused(m => ((JsonArray)m["configDirectories"]!).Clear());
        Assert.Contains("config directories cannot be restored", error.Message);
    }

    [TestMethod]
    public void FingerprintRowCountsWhoseSumOverflowsAreRefused()
    {
        var error = AssertRefused(m => m["fingerprint"] = new JsonObject { ["rowCounts"] = new JsonObject { ["public.a"] = long.MaxValue, ["public.b"] = 1 } });
        Assert.Contains("row counts add up", error.Message);
    }

    [TestMethod]
    public void TheValidManifestStillParses()
    {
        var manifest = BackupManifest.Parse(Encoding.UTF8.GetBytes(ManifestFuzzTests.ValidManifest), BackupId);
        Assert.AreEqual(2, manifest.ConfigDirectories.Count);
        Assert.AreEqual(123456 + 789 + 4242 + 1000 + 2000, manifest.TotalSize);
        Assert.AreEqual(123456 + 1000 + 2000, manifest.DatabaseSize);
        Assert.AreEqual("events", manifest.SplitTables.Single().Name);
    }

    [TestMethod]
    public void AFormatOneManifestWithoutSplitTablesStillParses()
    {
        var json = (JsonObject)JsonNode.Parse(ManifestFuzzTests.ValidManifest)!;
        json["formatVersion"] = 1;
        json.Remove("splitTables");
        var artifacts = (JsonArray)json["artifacts"]!;
        foreach (var range in artifacts.OfType<JsonObject>().Where(a => ((string)a["name"]!).StartsWith("data-", StringComparison.Ordinal)).ToList())
            artifacts.Remove(range);
        var manifest = BackupManifest.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()), BackupId);
        Assert.IsEmpty(manifest.SplitTables);
    }

    [TestMethod]
    [DataRow("formatVersion", "1", "formatVersion is 1")]
    [DataRow("range", "data-0000-00009", "not one of its set's unused table-data artifacts")]
    [DataRow("range", "config", "not one of its set's unused table-data artifacts")]
    [DataRow("range", "data-0000-00000", "not one of its set's unused table-data artifacts")]
    [DataRow("unusedRange", "", "no split table uses")]
    [DataRow("column", "", "invalid column name")]
    [DataRow("column", "a\u0000b", "invalid column name")]
    [DataRow("name", "", "invalid schema or name")]
    [DataRow("noRanges", "", "has no ranges")]
    public void SplitTablesThatCannotBeLoadedAreRefused(string what, string value, string expected)
    {
        var error = AssertRefused(m =>
        {
            var table = (JsonObject)((JsonArray)m["splitTables"]!)[0]!;
            switch (what)
            {
                case "formatVersion": m["formatVersion"] = 1; break;
                case "range": ((JsonArray)table["ranges"]!)[1] = System.Text.RegularExpressions.Regex.Unescape(value); break;
                case "unusedRange": ((JsonArray)table["ranges"]!).RemoveAt(1); break;
                case "column": ((JsonArray)table["columns"]!)[0] = System.Text.RegularExpressions.Regex.Unescape(value); break;
                case "name": table["name"] = value; break;
                case "noRanges": ((JsonArray)table["ranges"]!).Clear(); break;
            }
        });
        Assert.Contains(expected, error.Message);
    }

    private static JsonObject Artifact(JsonObject manifest, string name) =>
        ((JsonArray)manifest["artifacts"]!).OfType<JsonObject>().Single(a => (string?)a["name"] == name);

    private static InvalidManifestException AssertRefused(Action<JsonObject> mutate)
    {
        var manifest = (JsonObject)JsonNode.Parse(ManifestFuzzTests.ValidManifest)!;
        mutate(manifest);
        var json = Encoding.UTF8.GetBytes(manifest.ToJsonString());
        var error = Assert.ThrowsExactly<InvalidManifestException>(() => BackupManifest.Parse(json, BackupId));
        Assert.StartsWith($"The manifest of backup {BackupId} is refused: ", error.Message);
        return error;
    }
}
