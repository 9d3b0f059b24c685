using RegistryDR.Backup;
using RegistryDR.Monitoring;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Monitoring;

/// <summary>The Prometheus text: what it says before and after events, on a clock the test controls.</summary>
[TestClass]
public sealed class PrometheusExpositionTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 22, 2, 15, 0, TimeSpan.Zero);

    public TestContext TestContext { get; set; } = null!;

    private static BackupManifest Manifest(DateTimeOffset startedAt, TimeSpan took, long database = 1000, long globals = 10, long config = 300) => new()
    {
        FormatVersion = BackupManifest.CurrentFormatVersion,
        BackupId = BackupLayout.NewBackupId(startedAt),
        StartedAt = startedAt,
        CompletedAt = startedAt + took,
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
            new BackupManifest.Artifact { Name = BackupLayout.GlobalsArtifact, Key = "k/globals.sql", Size = globals, Sha256 = new string('a', 64) },
            new BackupManifest.Artifact { Name = BackupLayout.DatabaseArtifact, Key = "k/database.dump", Size = database, Sha256 = new string('b', 64) },
            new BackupManifest.Artifact { Name = BackupLayout.ConfigArtifact, Key = "k/config.tar.gz", Size = config, Sha256 = new string('c', 64) },
        ],
    };

    private static IReadOnlyDictionary<string, double> Scrape(OperationMetrics metrics, TimeProvider time) =>
        MonitoringTestSupport.Samples(PrometheusExposition.Render(metrics.Read(), time.GetUtcNow(), "0.1.0"));

    [TestMethod]
    public void BackupAge_IsComputedAtScrapeTime_FromTheClock()
    {
        var clock = new ManualTimeProvider(Start);
        var metrics = new OperationMetrics(clock);
        metrics.BackupSucceeded(Manifest(Start, TimeSpan.FromSeconds(42)), TimeSpan.FromSeconds(42.5));

        clock.Advance(TimeSpan.FromSeconds(90));
        var first = Scrape(metrics, clock);
        Assert.AreEqual(90, first["registrydr_backup_age_seconds"]);
        Assert.AreEqual(Start.ToUnixTimeSeconds(), first["registrydr_backup_last_success_timestamp_seconds"]);
        Assert.AreEqual(42.5, first["registrydr_backup_last_duration_seconds"]);

        // Nothing happened, only time passed: the age grows with the clock, the timestamp stays.
        clock.Advance(TimeSpan.FromMinutes(30));
        var later = Scrape(metrics, clock);
        Assert.AreEqual(90 + 1800, later["registrydr_backup_age_seconds"]);
        Assert.AreEqual(first["registrydr_backup_last_success_timestamp_seconds"], later["registrydr_backup_last_success_timestamp_seconds"]);

        // A newer backup resets it.
        metrics.BackupSucceeded(Manifest(clock.GetUtcNow(), TimeSpan.FromSeconds(10)), TimeSpan.FromSeconds(10));
        clock.Advance(TimeSpan.FromSeconds(5));
        Assert.AreEqual(5, Scrape(metrics, clock)["registrydr_backup_age_seconds"]);
    }

    [TestMethod]
    public void NeverBackedUp_AgeIsInfinite_AndTheTimestampIsZero()
    {
        var clock = new ManualTimeProvider(Start);
        var samples = Scrape(new OperationMetrics(clock), clock);
        Assert.AreEqual(double.PositiveInfinity, samples["registrydr_backup_age_seconds"], "an age alert must fire for a node that never backed up");
        Assert.AreEqual(0, samples["registrydr_backup_last_success_timestamp_seconds"]);
        Assert.IsFalse(samples.ContainsKey("registrydr_backup_last_duration_seconds"), "no duration is known yet");
        Assert.IsFalse(samples.Keys.Any(k => k.StartsWith("registrydr_backup_last_size_bytes", StringComparison.Ordinal)));
        Assert.IsFalse(samples.ContainsKey("registrydr_restore_last_duration_seconds"));
        // Every failure reason is there from the start, at zero, so rate() and increase() work from the first failure.
        foreach (var reason in Enum.GetValues<BackupFailureReason>())
            Assert.AreEqual(0, samples[$"registrydr_backup_failures_total{{reason=\"{reason.ToString().ToLowerInvariant()}\"}}"]);
        Assert.AreEqual(0, samples["registrydr_restores_total{result=\"success\"}"]);
        Assert.AreEqual(0, samples["registrydr_restores_total{result=\"failure\"}"]);
        Assert.AreEqual(1, samples["registrydr_build_info{version=\"0.1.0\"}"]);
    }

    [TestMethod]
    public void AClockBehindTheBackupTime_ReadsAgeZero_NotNegative()
    {
        var clock = new ManualTimeProvider(Start);
        var metrics = new OperationMetrics(clock);
        metrics.BackupSucceeded(Manifest(Start.AddMinutes(2), TimeSpan.FromSeconds(1)), TimeSpan.FromSeconds(1));
        Assert.AreEqual(0, Scrape(metrics, clock)["registrydr_backup_age_seconds"]);
    }

    [TestMethod]
    public async Task EveryMetricAfterEveryKindOfEvent_PassesPromtool()
    {
        var clock = new ManualTimeProvider(Start);
        var metrics = new OperationMetrics(clock);
        metrics.BackupSucceeded(Manifest(Start, TimeSpan.FromSeconds(3)), TimeSpan.FromSeconds(3.25));
        metrics.BackupFailed("x", BackupFailureReason.Store, TimeSpan.FromSeconds(1));
        metrics.BackupFailed("y", BackupFailureReason.Store, TimeSpan.FromSeconds(1));
        metrics.BackupFailed("z", BackupFailureReason.Cancelled, TimeSpan.FromSeconds(1));
        metrics.RestoreStarted("a");
        metrics.RestoreFinished("a", true, TimeSpan.FromMinutes(3));
        metrics.RestoreStarted("b");
        metrics.ScheduleMissed();
        metrics.StoreRetry("put");
        metrics.StoreRetry("put");
        metrics.StoreRetry("weird \"op\"\\\nname");
        clock.Advance(TimeSpan.FromSeconds(60));

        var text = PrometheusExposition.Render(metrics.Read(), clock.GetUtcNow(), "0.1.0", TimeSpan.FromMinutes(15));
        var check = await MonitoringTestSupport.PromtoolCheckAsync(text, TestContext.CancellationToken);
        Assert.AreEqual(0, check.ExitCode, check + Environment.NewLine + text);
        Assert.AreEqual("", check.Output, "promtool has lint complaints:" + Environment.NewLine + check.Output);

        var samples = MonitoringTestSupport.Samples(text);
        Assert.AreEqual(1, samples["registrydr_backups_total"]);
        Assert.AreEqual(900, samples["registrydr_backup_schedule_interval_seconds"]);
        Assert.AreEqual(2, samples["registrydr_backup_failures_total{reason=\"store\"}"]);
        Assert.AreEqual(1, samples["registrydr_backup_failures_total{reason=\"cancelled\"}"]);
        Assert.AreEqual(0, samples["registrydr_backup_failures_total{reason=\"database\"}"]);
        Assert.AreEqual(1000, samples["registrydr_backup_last_size_bytes{artifact=\"database\"}"]);
        Assert.AreEqual(10, samples["registrydr_backup_last_size_bytes{artifact=\"globals\"}"]);
        Assert.AreEqual(300, samples["registrydr_backup_last_size_bytes{artifact=\"config\"}"]);
        Assert.AreEqual(1, samples["registrydr_restore_in_progress"], "restore b has not finished");
        Assert.AreEqual(180, samples["registrydr_restore_last_duration_seconds"]);
        Assert.AreEqual(1, samples["registrydr_restores_total{result=\"success\"}"]);
        Assert.AreEqual(1, samples["registrydr_schedule_missed_total"]);
        Assert.AreEqual(2, samples["registrydr_store_retries_total{operation=\"put\"}"]);
        StringAssert.Contains(text, "registrydr_store_retries_total{operation=\"weird \\\"op\\\"\\\\\\nname\"} 1\n", "label values are escaped");
        foreach (var line in text.Split('\n').Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal) && l.EndsWith(" counter", StringComparison.Ordinal)))
            StringAssert.EndsWith(line.Split(' ')[2], "_total");
    }

    [TestMethod]
    public void StoreRetryOperations_AreCapped_SoACallerCannotExplodeTheSeriesCount()
    {
        var metrics = new OperationMetrics(TimeProvider.System);
        for (var i = 0; i < OperationMetrics.MaxOperations + 10; i++) metrics.StoreRetry("op" + i);
        var retries = metrics.Read().StoreRetries;
        Assert.HasCount(OperationMetrics.MaxOperations + 1, retries);
        Assert.AreEqual(10, retries[OperationMetrics.OtherOperation]);
    }

    [TestMethod]
    public void ARestoreFinishedTwice_DoesNotHideTheNextOne()
    {
        var metrics = new OperationMetrics(TimeProvider.System);
        metrics.RestoreStarted("a");
        metrics.RestoreFinished("a", false, TimeSpan.FromSeconds(1));
        metrics.RestoreFinished("a", false, TimeSpan.FromSeconds(1));
        Assert.IsFalse(metrics.RestoreInProgress);
        metrics.RestoreStarted("b");
        Assert.IsTrue(metrics.RestoreInProgress);
    }

    [TestMethod]
    [DataRow(double.PositiveInfinity, "+Inf")]
    [DataRow(double.NegativeInfinity, "-Inf")]
    [DataRow(double.NaN, "NaN")]
    [DataRow(1.5, "1.5")]
    [DataRow(1764987654.321, "1764987654.321")]
    public void Values_UseTheSpellingsPrometheusParses(double value, string expected) =>
        Assert.AreEqual(expected, PrometheusExposition.FormatValue(value));
}
