using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Backup;
using RegistryDR.Monitoring;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Worker;

namespace RegistryDR.Tests.Monitoring;

/// <summary>
/// /metrics and the EMF log driven by real backups (a seeded PostgreSQL database, real pg_dump,
/// a file store): what a scrape shows before, after a success and after a failure, checked by
/// promtool each time; and what a freshly started worker reports before it has backed up.
/// </summary>
[TestClass]
public sealed class BackupMetricsTests
{
    public TestContext TestContext { get; set; } = null!;

    private static string TempDir(string prefix) => Directory.CreateTempSubdirectory(prefix).FullName;

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private async Task<IReadOnlyDictionary<string, double>> ScrapeCheckedAsync(MonitoringServer server)
    {
        var answer = await MonitoringTestSupport.GetAsync(server, "/metrics", TestContext.CancellationToken);
        Assert.AreEqual(HttpStatusCode.OK, answer.Status, answer.ToString());
        Assert.AreEqual("text/plain; version=0.0.4; charset=utf-8", answer.ContentType);
        var check = await MonitoringTestSupport.PromtoolCheckAsync(answer.Body, TestContext.CancellationToken);
        Assert.AreEqual(0, check.ExitCode, check + Environment.NewLine + answer.Body);
        Assert.AreEqual("", check.Output, "promtool has lint complaints:" + Environment.NewLine + check.Output);
        return MonitoringTestSupport.Samples(answer.Body);
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task ASuccessThenAFailure_MoveTheScrapedMetrics_AndEachWritesOneEmfLine()
    {
        var storeDir = TempDir("rdr-store-");
        var emfDir = TempDir("rdr-emf-");
        try
        {
            await using var node = await TestNode.CreateAsync("file://" + storeDir);
            var metrics = new OperationMetrics(TimeProvider.System);
            var emfPath = Path.Combine(emfDir, "registry-dr", "metrics.emf.log");
            var emf = new EmfWriter(new MonitoringOptions { EmfLogPath = emfPath }, "test-node", "test-stack", TimeProvider.System, NullLogger.Instance);
            var events = new CompositeOperationEvents([metrics, emf]);
            await using var server = await MonitoringTestSupport.StartServerAsync(node.Options, metrics);
            var store = node.CreateStore();

            var before = await ScrapeCheckedAsync(server);
            Assert.AreEqual(0, before["registrydr_backups_total"]);
            Assert.AreEqual(double.PositiveInfinity, before["registrydr_backup_age_seconds"]);
            Assert.AreEqual(900, before["registrydr_backup_schedule_interval_seconds"], "Schedule:Cron every 15 minutes");

            // 1. A real backup succeeds.
            var started = DateTimeOffset.UtcNow;
            var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System, events)
                .RunAsync(cancellationToken: TestContext.CancellationToken);
            var finished = DateTimeOffset.UtcNow;
            var success = await ScrapeCheckedAsync(server);
            Assert.AreEqual(1, success["registrydr_backups_total"]);
            Assert.AreEqual(manifest.StartedAt.ToUnixTimeMilliseconds() / 1000.0, success["registrydr_backup_last_success_timestamp_seconds"]);
            Assert.IsTrue(success["registrydr_backup_age_seconds"] is >= 0 and < 600, $"age {success["registrydr_backup_age_seconds"]}");
            Assert.IsTrue(success["registrydr_backup_last_duration_seconds"] > 0 && success["registrydr_backup_last_duration_seconds"] <= (finished - started).TotalSeconds);
            foreach (var artifact in manifest.Artifacts)
                Assert.AreEqual(artifact.Size, success[$"registrydr_backup_last_size_bytes{{artifact=\"{artifact.Name}\"}}"], artifact.Name);
            Assert.IsTrue(success.Where(kv => kv.Key.StartsWith("registrydr_backup_failures_total", StringComparison.Ordinal)).All(kv => kv.Value == 0));

            // 2. The same node with its database unreachable: a failure, reason "database".
            node.Options.Database.Port = ClosedPort();
            await Assert.ThrowsExactlyAsync<BackupFailedException>(() =>
                new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System, events).RunAsync(cancellationToken: TestContext.CancellationToken));
            var failure = await ScrapeCheckedAsync(server);
            Assert.AreEqual(1, failure["registrydr_backup_failures_total{reason=\"database\"}"]);
            Assert.AreEqual(1, failure.Where(kv => kv.Key.StartsWith("registrydr_backup_failures_total", StringComparison.Ordinal)).Sum(kv => kv.Value));
            Assert.AreEqual(1, failure["registrydr_backups_total"], "a failure is not a backup");
            Assert.AreEqual(success["registrydr_backup_last_success_timestamp_seconds"], failure["registrydr_backup_last_success_timestamp_seconds"],
                "a failure does not make the newest backup any newer");
            Assert.IsTrue(failure["registrydr_backup_age_seconds"] >= success["registrydr_backup_age_seconds"]);
            Assert.AreEqual(success["registrydr_backup_last_size_bytes{artifact=\"database\"}"], failure["registrydr_backup_last_size_bytes{artifact=\"database\"}"]);

            // 3. The EMF log has exactly one line per backup, each valid per the specification.
            var lines = File.ReadAllLines(emfPath);
            Assert.HasCount(2, lines);
            var emfSuccess = EmfAssert.Valid(lines[0], started, DateTimeOffset.UtcNow);
            Assert.AreEqual(manifest.BackupId, emfSuccess.GetProperty("BackupId").GetString());
            Assert.AreEqual(1, emfSuccess.GetProperty("BackupSucceeded").GetInt32());
            Assert.AreEqual(manifest.TotalSize, emfSuccess.GetProperty("BackupSizeBytes").GetInt64());
            var emfFailure = EmfAssert.Valid(lines[1], started, DateTimeOffset.UtcNow);
            Assert.AreEqual(1, emfFailure.GetProperty("BackupFailed").GetInt32());
            Assert.AreEqual("database", emfFailure.GetProperty("Reason").GetString());
            Assert.AreNotEqual(manifest.BackupId, emfFailure.GetProperty("BackupId").GetString());
        }
        finally
        {
            Directory.Delete(storeDir, recursive: true);
            Directory.Delete(emfDir, recursive: true);
        }
    }

    /// <summary>The worker's host with monitoring, on this test's own port and EMF file rather than the node defaults.</summary>
    private static IHost BuildWorker(TestNode node, IBackupStore store, string emfPath, Action<MonitoringServer> started)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddRegistryDrWorker(node.Options, store);
        builder.Services.AddRegistryDrMonitoring(node.Options);
        // Later registrations win: the same types, pointed at an ephemeral port and a temp file.
        builder.Services.AddSingleton(sp => new EmfWriter(new MonitoringOptions { EmfLogPath = emfPath }, "test-node", null, TimeProvider.System, NullLogger.Instance));
        builder.Services.AddSingleton(sp =>
        {
            var server = new MonitoringServer(node.Options, MonitoringTestSupport.EphemeralPort(), sp.GetRequiredService<OperationMetrics>(),
                sp.GetRequiredService<ILoggerFactory>(), TimeProvider.System);
            started(server);
            return server;
        });
        return builder.Build();
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task TheWorkersHost_ReportsItsBackups_AndARestartedWorkerReportsTheStoresBackupAge()
    {
        var storeDir = TempDir("rdr-store-");
        var emfDir = TempDir("rdr-emf-");
        try
        {
            await using var node = await TestNode.CreateAsync("file://" + storeDir);
            node.Options.Schedule.Cron = "0 0 0 1 1 ? *"; // yearly: only the catch-up backup at start runs
            node.Options.Schedule.CatchUpOnStart = true;
            var store = node.CreateStore();
            var emfPath = Path.Combine(emfDir, "metrics.emf.log");

            // 1. An empty store: the worker's catch-up backup runs, through BackupService from the container.
            MonitoringServer? server = null;
            using (var host = BuildWorker(node, store, emfPath, s => server = s))
            {
                var events = host.Services.GetRequiredService<IOperationEvents>();
                Assert.IsInstanceOfType<CompositeOperationEvents>(events);
                CollectionAssert.AreEqual(
                    new object[] { host.Services.GetRequiredService<OperationMetrics>(), host.Services.GetRequiredService<EmfWriter>() },
                    ((CompositeOperationEvents)events).Sinks.ToArray());
                await host.StartAsync(TestContext.CancellationToken);
                Assert.IsNotNull(server);
                var healthz = await MonitoringTestSupport.GetAsync(server, "/healthz", TestContext.CancellationToken);
                Assert.AreEqual(HttpStatusCode.OK, healthz.Status);
                Assert.AreEqual("{\"status\":\"ok\"}", healthz.Body);

                var scraped = await MonitoringTestSupport.GetUntilAsync(server, "/metrics",
                    a => MonitoringTestSupport.Samples(a.Body)["registrydr_backups_total"] >= 1, TestContext.CancellationToken);
                Assert.AreEqual(1, MonitoringTestSupport.Samples(scraped.Body)["registrydr_backups_total"], scraped.Body);
                Assert.HasCount(1, File.ReadAllLines(emfPath));
                await host.StopAsync(TestContext.CancellationToken);
            }
            var newest = (await new BackupCatalog(store).ListAsync(TestContext.CancellationToken)).First(s => s.IsComplete);

            // 2. A restarted worker (new process state) has taken no backup, yet reports the real age.
            server = null;
            using (var host = BuildWorker(node, store, emfPath, s => server = s))
            {
                await host.StartAsync(TestContext.CancellationToken);
                var scraped = await MonitoringTestSupport.GetUntilAsync(server!, "/metrics",
                    a => MonitoringTestSupport.Samples(a.Body)["registrydr_backup_last_success_timestamp_seconds"] > 0, TestContext.CancellationToken);
                var samples = MonitoringTestSupport.Samples(scraped.Body);
                Assert.AreEqual(newest.Time.ToUnixTimeMilliseconds() / 1000.0, samples["registrydr_backup_last_success_timestamp_seconds"]);
                Assert.IsTrue(samples["registrydr_backup_age_seconds"] is >= 0 and < 600, scraped.Body);
                Assert.AreEqual(0, samples["registrydr_backups_total"], "the restarted worker took no backup (the newest is fresh)");
                await host.StopAsync(TestContext.CancellationToken);
            }
        }
        finally
        {
            Directory.Delete(storeDir, recursive: true);
            Directory.Delete(emfDir, recursive: true);
        }
    }

    [TestMethod]
    public async Task InitializeFromStore_TakesTheNewestCompleteSet_AndKeepsANewerLocalBackup()
    {
        var storeDir = TempDir("rdr-store-");
        try
        {
            var store = new FileSystemStore(storeDir);
            var older = new DateTimeOffset(2026, 11, 22, 1, 0, 0, TimeSpan.Zero);
            var newer = older.AddMinutes(15);
            var newest = older.AddMinutes(30);
            await WriteSetAsync(store, BackupLayout.NewBackupId(older), complete: true);
            await WriteSetAsync(store, BackupLayout.NewBackupId(newer), complete: true);
            await WriteSetAsync(store, BackupLayout.NewBackupId(newest), complete: false); // no manifest: never restorable

            var metrics = new OperationMetrics(TimeProvider.System);
            await metrics.InitializeFromStoreAsync(store, TestContext.CancellationToken);
            Assert.AreEqual(newer, metrics.Read().LastSuccess, "the newest complete set, not the incomplete one");

            var local = new OperationMetrics(TimeProvider.System);
            var manifestTime = newer.AddHours(1);
            local.BackupSucceeded(new BackupManifest
            {
                FormatVersion = 1, BackupId = BackupLayout.NewBackupId(manifestTime), StartedAt = manifestTime, CompletedAt = manifestTime,
                Host = "h", RegistryDrVersion = "0.1.0",
                Postgres = new BackupManifest.PostgresInfo { ServerVersion = "15", PgDumpVersion = "15", Database = "d", Owner = "o", Encoding = "UTF8", Collate = "C", Ctype = "C", DumpFormat = "custom" },
                ConfigDirectories = [], Artifacts = [],
            }, TimeSpan.FromSeconds(1));
            await local.InitializeFromStoreAsync(store, TestContext.CancellationToken);
            Assert.AreEqual(manifestTime, local.Read().LastSuccess, "seeding never moves the newest backup back in time");
        }
        finally
        {
            Directory.Delete(storeDir, recursive: true);
        }
    }

    [TestMethod]
    public void SplitTablesBlockRanges_CountAsTheDatabase()
    {
        var metrics = new OperationMetrics(TimeProvider.System);
        var id = BackupLayout.NewBackupId(DateTimeOffset.UtcNow);
        BackupManifest.Artifact Artifact(string name, long size) => new() { Name = name, Key = BackupLayout.ArtifactKey(id, name), Size = size, Sha256 = new string('a', 64) };
        metrics.BackupSucceeded(new BackupManifest
        {
            FormatVersion = 2, BackupId = id, StartedAt = DateTimeOffset.UtcNow, CompletedAt = DateTimeOffset.UtcNow,
            Host = "h", RegistryDrVersion = "0.1.0",
            Postgres = new BackupManifest.PostgresInfo { ServerVersion = "15", PgDumpVersion = "15", Database = "d", Owner = "o", Encoding = "UTF8", Collate = "C", Ctype = "C", DumpFormat = "custom" },
            ConfigDirectories = [],
            Artifacts = [Artifact("database", 100), Artifact("globals", 5), Artifact(BackupLayout.TableDataArtifact(0, 0), 1000), Artifact(BackupLayout.TableDataArtifact(0, 1), 2000), Artifact("config", 7)],
        }, TimeSpan.FromSeconds(1));
        var sizes = metrics.Read().LastSizes;
        Assert.AreEqual(3100, sizes["database"]);
        Assert.AreEqual(5, sizes["globals"]);
        Assert.AreEqual(7, sizes["config"]);
        Assert.HasCount(3, sizes);
    }

    private static async Task WriteSetAsync(IBackupStore store, string backupId, bool complete)
    {
        await store.PutAsync(BackupLayout.ArtifactKey(backupId, BackupLayout.DatabaseArtifact), new MemoryStream("PGDMP"u8.ToArray()), CancellationToken.None);
        if (complete) await store.PutAsync(BackupLayout.ManifestKey(backupId), new MemoryStream("{}"u8.ToArray()), CancellationToken.None);
    }
}
