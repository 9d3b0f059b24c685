using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Backup;
using RegistryDR.Monitoring;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Monitoring;

/// <summary>The EMF log: one valid embedded-metric-format line per finished backup, appended to a file the CloudWatch agent tails.</summary>
[TestClass]
public sealed class EmfWriterTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 2, 15, 42, 123, TimeSpan.Zero);

    private static BackupManifest Manifest(long database) => new()
    {
        FormatVersion = BackupManifest.CurrentFormatVersion,
        BackupId = "20261122T021500Z-3fa9c1",
        StartedAt = Now.AddMinutes(-1),
        CompletedAt = Now,
        Host = "node-a",
        RegistryDrVersion = "0.1.0",
        Postgres = new BackupManifest.PostgresInfo
        {
            ServerVersion = "15.8", PgDumpVersion = "15.8", Database = "dtr", Owner = "dtr",
            Encoding = "UTF8", Collate = "C.UTF-8", Ctype = "C.UTF-8", DumpFormat = "custom",
        },
        ConfigDirectories = [],
        Artifacts =
        [
            new BackupManifest.Artifact { Name = BackupLayout.DatabaseArtifact, Key = "k/database.dump", Size = database, Sha256 = new string('b', 64) },
            new BackupManifest.Artifact { Name = BackupLayout.ConfigArtifact, Key = "k/config.tar.gz", Size = 7, Sha256 = new string('c', 64) },
        ],
    };

    private static string TempDir() => Directory.CreateTempSubdirectory("rdr-emf-").FullName;

    [TestMethod]
    public void ASuccessAndAFailure_AreOneSpecValidLineEach_InANewDirectory()
    {
        var root = TempDir();
        try
        {
            var path = Path.Combine(root, "var", "log", "registry-dr", "metrics.emf.log");
            var writer = new EmfWriter(new MonitoringOptions { EmfLogPath = path }, "ip-10-0-1-23", "registry-prod", new ManualTimeProvider(Now), NullLogger.Instance);

            writer.BackupSucceeded(Manifest(database: 5000), TimeSpan.FromSeconds(61.5));
            writer.BackupFailed("20261122T023000Z-aaaaaa", BackupFailureReason.Database, TimeSpan.FromSeconds(0.25));

            var lines = File.ReadAllLines(path);
            Assert.HasCount(2, lines);
            Assert.IsTrue(File.ReadAllText(path).EndsWith('\n'), "every line ends, so the agent ships it at once");

            var success = EmfAssert.Valid(lines[0], Now, Now);
            Assert.AreEqual(Now.ToUnixTimeMilliseconds(), success.GetProperty("_aws").GetProperty("Timestamp").GetInt64());
            Assert.AreEqual("RegistryDR", success.GetProperty("_aws").GetProperty("CloudWatchMetrics")[0].GetProperty("Namespace").GetString());
            CollectionAssert.AreEqual(new[] { "BackupSucceeded", "BackupFailed", "BackupDurationSeconds", "BackupSizeBytes" }, EmfAssert.MetricNames(success).ToList());
            var sets = EmfAssert.DimensionSets(success);
            Assert.HasCount(2, sets);
            CollectionAssert.AreEqual(new[] { "Host" }, sets[0].ToList());
            CollectionAssert.AreEqual(new[] { "Stack" }, sets[1].ToList());
            Assert.AreEqual("ip-10-0-1-23", success.GetProperty("Host").GetString());
            Assert.AreEqual("registry-prod", success.GetProperty("Stack").GetString());
            Assert.AreEqual("20261122T021500Z-3fa9c1", success.GetProperty("BackupId").GetString());
            Assert.AreEqual(1, success.GetProperty("BackupSucceeded").GetInt32());
            Assert.AreEqual(0, success.GetProperty("BackupFailed").GetInt32());
            Assert.AreEqual(61.5, success.GetProperty("BackupDurationSeconds").GetDouble());
            Assert.AreEqual(5007, success.GetProperty("BackupSizeBytes").GetInt64());
            Assert.IsFalse(success.TryGetProperty("Reason", out _));

            var failure = EmfAssert.Valid(lines[1], Now, Now);
            CollectionAssert.AreEqual(new[] { "BackupSucceeded", "BackupFailed", "BackupDurationSeconds" }, EmfAssert.MetricNames(failure).ToList(),
                "a failure stored nothing: no size metric, rather than a 0 that drags size statistics down");
            Assert.AreEqual(0, failure.GetProperty("BackupSucceeded").GetInt32());
            Assert.AreEqual(1, failure.GetProperty("BackupFailed").GetInt32());
            Assert.AreEqual("database", failure.GetProperty("Reason").GetString());
            Assert.IsFalse(failure.TryGetProperty("BackupSizeBytes", out _));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [TestMethod]
    public void WithoutAStack_TheOnlyDimensionIsHost_AndTheNamespaceIsConfigurable()
    {
        var writer = new EmfWriter(new MonitoringOptions { EmfNamespace = "Acme/Registry" }, "node-a", null, new ManualTimeProvider(Now), NullLogger.Instance);
        var line = MonitoringTestSupport.Utf8(writer.FormatLine("id", true, TimeSpan.FromSeconds(1), 10, null));
        var root = EmfAssert.Valid(line, Now, Now);
        Assert.HasCount(1, EmfAssert.DimensionSets(root));
        Assert.IsFalse(root.TryGetProperty("Stack", out _));
        Assert.AreEqual("Acme/Registry", root.GetProperty("_aws").GetProperty("CloudWatchMetrics")[0].GetProperty("Namespace").GetString());
    }

    [TestMethod]
    public void LinesAreAppended_NeverOverwritten()
    {
        var root = TempDir();
        try
        {
            var path = Path.Combine(root, "metrics.emf.log");
            File.WriteAllText(path, "{\"earlier\":1}\n");
            var writer = new EmfWriter(new MonitoringOptions { EmfLogPath = path }, "node-a", null, new ManualTimeProvider(Now), NullLogger.Instance);
            writer.BackupFailed("a", BackupFailureReason.Store, TimeSpan.Zero);
            writer.BackupFailed("b", BackupFailureReason.Store, TimeSpan.Zero);
            var lines = File.ReadAllLines(path);
            Assert.HasCount(3, lines);
            Assert.AreEqual("{\"earlier\":1}", lines[0]);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [TestMethod]
    public void AnEmptyPath_WritesNothing_AndAnUnwritablePath_DoesNotThrow()
    {
        var disabled = new EmfWriter(new MonitoringOptions { EmfLogPath = "" }, "node-a", null, TimeProvider.System, NullLogger.Instance);
        Assert.IsNull(disabled.Path);
        disabled.BackupFailed("a", BackupFailureReason.Store, TimeSpan.Zero);

        var root = TempDir();
        try
        {
            // The path is a directory: the append fails, and the backup that reports must not.
            var writer = new EmfWriter(new MonitoringOptions { EmfLogPath = root }, "node-a", null, TimeProvider.System, NullLogger.Instance);
            writer.BackupFailed("a", BackupFailureReason.Store, TimeSpan.Zero);
            writer.BackupSucceeded(Manifest(1), TimeSpan.Zero);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
