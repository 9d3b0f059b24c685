using System.Text.Json;
using RegistryDR.Continuous;
using RegistryDR.Monitoring;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Monitoring;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// The WAL archive's metrics (continuous mode): archive lag, failed attempts, pending bytes, in the
/// Prometheus text (checked by promtool) and the EMF log the CloudWatch alarm can use.
/// </summary>
[TestClass]
public sealed class WalArchiveMetricsTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 2, 15, 0, TimeSpan.Zero);

    [TestMethod]
    public async Task ArchiveLagAndFailures_AreExposed_AndPassPromtool()
    {
        var clock = new ManualTimeProvider(Now);
        var metrics = new OperationMetrics(clock);
        var before = MonitoringTestSupport.Samples(PrometheusExposition.Render(metrics.Read(), clock.GetUtcNow(), "0.1.0"));
        Assert.IsFalse(before.Keys.Any(k => k.StartsWith("registrydr_wal_", StringComparison.Ordinal)), "logical mode: no WAL families");

        // Caught up: nothing written since the last archived segment.
        IOperationEvents events = metrics;
        events.WalArchiveObserved(new WalArchiveObservation(Now, 120, 0, "00000001000000000000002A", Now.AddSeconds(-40), null, null, 0));
        clock.Advance(TimeSpan.FromSeconds(5));
        var idle = MonitoringTestSupport.Samples(PrometheusExposition.Render(metrics.Read(), clock.GetUtcNow(), "0.1.0"));
        Assert.AreEqual(0, idle["registrydr_wal_archive_lag_seconds"]);
        Assert.AreEqual(120, idle["registrydr_wal_archived_total"]);
        Assert.AreEqual(0, idle["registrydr_wal_archive_failing"]);

        // Failing (a fenced node: every attempt refused) while 3 MiB wait.
        events.WalArchiveObserved(new WalArchiveObservation(clock.GetUtcNow(), 120, 7, "00000001000000000000002A", Now.AddSeconds(-40), "00000001000000000000002B", Now, 3 << 20));
        clock.Advance(TimeSpan.FromSeconds(15));
        var text = PrometheusExposition.Render(metrics.Read(), clock.GetUtcNow(), "0.1.0");
        var failing = MonitoringTestSupport.Samples(text);
        Assert.AreEqual(60, failing["registrydr_wal_archive_lag_seconds"], "now minus the last archived file's time");
        Assert.AreEqual(7, failing["registrydr_wal_archive_failures_total"]);
        Assert.AreEqual(3 << 20, failing["registrydr_wal_archive_pending_bytes"]);
        Assert.AreEqual(1, failing["registrydr_wal_archive_failing"]);
        Assert.AreEqual(Now.AddSeconds(-40).ToUnixTimeSeconds(), failing["registrydr_wal_last_archived_timestamp_seconds"]);
        var check = await MonitoringTestSupport.PromtoolCheckAsync(text);
        Assert.AreEqual(0, check.ExitCode, check.ToString());
        Assert.AreEqual("", check.Output, "promtool has lint complaints: " + check.Output);

        // Never archived anything: +Inf, so an alert on the lag fires.
        events.WalArchiveObserved(new WalArchiveObservation(clock.GetUtcNow(), 0, 3, null, null, "000000010000000000000001", Now, null));
        Assert.AreEqual(double.PositiveInfinity, MonitoringTestSupport.Samples(PrometheusExposition.Render(metrics.Read(), clock.GetUtcNow(), "0.1.0"))["registrydr_wal_archive_lag_seconds"]);
    }

    [TestMethod]
    public void TheEmfLog_GetsAWalLineAMinuteAtMost()
    {
        using var dir = new TempDirectory("rdr-emf-");
        var path = Path.Combine(dir.Path, "metrics.emf.log");
        var emf = new EmfWriter(new MonitoringOptions { EmfLogPath = path }, "node-a", "registry-prod", new ManualTimeProvider(Now), TestNode.Logger<EmfWriter>());
        emf.WalArchiveObserved(new WalArchiveObservation(Now, 10, 2, "00000001000000000000002A", Now.AddSeconds(-90), "00000001000000000000002B", Now, 100));
        emf.WalArchiveObserved(new WalArchiveObservation(Now.AddSeconds(15), 10, 3, "00000001000000000000002A", Now.AddSeconds(-90), "00000001000000000000002B", Now.AddSeconds(15), 100));
        emf.WalArchiveObserved(new WalArchiveObservation(Now.AddSeconds(60), 11, 3, "00000001000000000000002B", Now.AddSeconds(59), null, Now.AddSeconds(15), 0));
        var lines = File.ReadAllLines(path);
        Assert.AreEqual(2, lines.Length, "the second observation came 15 s after the first");
        using var first = JsonDocument.Parse(lines[0]);
        Assert.AreEqual(90, first.RootElement.GetProperty("WalArchiveLagSeconds").GetDouble());
        Assert.AreEqual(1, first.RootElement.GetProperty("WalArchiveFailing").GetInt32());
        Assert.AreEqual("registry-prod", first.RootElement.GetProperty("Stack").GetString());
        Assert.AreEqual("WalArchiveLagSeconds", first.RootElement.GetProperty("_aws").GetProperty("CloudWatchMetrics")[0].GetProperty("Metrics")[0].GetProperty("Name").GetString());
        using var second = JsonDocument.Parse(lines[1]);
        Assert.AreEqual(0, second.RootElement.GetProperty("WalArchiveLagSeconds").GetDouble());
        Assert.AreEqual(0, second.RootElement.GetProperty("WalArchiveFailing").GetInt32());
    }
}
