using Npgsql;
using RegistryDR.Continuous;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// The recovery point of continuous mode, measured: a node is killed in the middle of a write
/// load (kill -9 of PostgreSQL with its archiver and of the worker, then its data directory
/// deleted), a fresh node restores to "latest", and every push whose commit was acknowledged
/// before (kill time − archive_timeout − slack) is there, in order, intact. A restore to a moment
/// recorded during the load equals a snapshot taken at that moment. Against the file store and
/// the Ceph S3 server.
/// </summary>
[TestClass]
public sealed class KilledNodeTests
{
    /// <summary>
    /// What the archive may lag beyond archive_timeout: one wal-push of the segment that was being
    /// switched out (a .NET process start plus a store write; under 2 s on an idle machine, several
    /// on this shared, overloaded one), plus the archiver's own retry wake-up.
    /// </summary>
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(20);

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow(false, DisplayName = "file store")]
    [DataRow(true, DisplayName = "Ceph S3")]
    public async Task NodeKilledMidLoad_LatestHasEveryPushBeforeTheCutoff_AndARecordedMomentRestoresExactly(bool s3)
    {
        await using var site = await ContinuousSite.CreateAsync(s3);
        var a = await site.StartNodeAsync("a");
        var store = site.CreateStore();
        var catalog = new ContinuousCatalog(store);
        // No base backup yet: the worker's catch-up takes one at once; its schedule (hourly here)
        // stays out of the load's way, as a 15-minute one mostly would.
        using var worker = a.StartWorker();
        var load = new PushLoad();
        using var stopLoad = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        Task<string>? running = null;
        Task? sampling = null;
        var lags = new List<(DateTimeOffset At, double LagSeconds)>();
        DatabaseSnapshot snapshot;
        DateTimeOffset moment, killedAt;
        try
        {
            await WaitUntilAsync(async () => (await catalog.ListBaseBackupsAsync(default)).Any(s => s.IsComplete), TimeSpan.FromMinutes(5), "the worker's first base backup");
            var segmentsBefore = await SegmentCountAsync(catalog);
            running = load.RunAsync(a.ConnectionString(), "a", stopLoad.Token);
            sampling = SampleArchiverAsync(a, lags, stopLoad.Token);

            // A moment in the middle of the load, with the database as it was then.
            await WaitUntilAsync(() => Task.FromResult(load.Acked.Count >= 60), TimeSpan.FromMinutes(3), "60 pushes");
            await load.PauseAsync();
            snapshot = await DatabaseSnapshot.CaptureAsync(a.ConnectionString());
            moment = new DateTimeOffset(await a.ScalarAsync<DateTime>("SELECT clock_timestamp()"), TimeSpan.Zero);
            load.Resume();

            // Kill once the load has filled several archive_timeout periods.
            await WaitUntilAsync(async () => await SegmentCountAsync(catalog) >= segmentsBefore + 8, TimeSpan.FromMinutes(5), "8 archived segments during the load");
            await a.Cluster.KillAsync();
            killedAt = DateTimeOffset.UtcNow;
            worker.Kill(entireProcessTree: true);
            StringAssert.StartsWith(await running.WaitAsync(TimeSpan.FromMinutes(1)), "server gone");
        }
        finally
        {
            if (!worker.HasExited) worker.Kill(entireProcessTree: true);
            await stopLoad.CancelAsync();
            if (sampling is not null) await sampling;
        }
        var archiveLag = lags.Count == 0 ? "none sampled" : $"archive lag during the load: median {Median(lags.Select(l => l.LagSeconds)):F1} s, max {lags.Max(l => l.LagSeconds):F1} s ({lags.Count} samples)";
        Directory.Delete(a.Cluster.DataDirectory, recursive: true);

        // A fresh node (its own initdb'd, empty cluster) restores to latest.
        var b = await site.StartNodeAsync("b", empty: true);
        var result = await new ContinuousRestoreService(b.Options, b.CreateStore(), TestNode.Logger<ContinuousRestoreService>(), TimeProvider.System)
            .RestoreAsync(new PointInTimeRequest(RecoveryTarget.Latest));
        Assert.AreEqual(1, result.Generation!.Number);
        Assert.AreEqual(2u, result.Recovered!.Timeline, "a restore continues on a new timeline");

        var rows = await ReadPushesAsync(b);
        var acked = load.Acked;
        var cutoff = killedAt - ContinuousSite.ArchiveTimeout - Slack;
        var mustHave = acked.Where(x => x.AckedAt < cutoff).Select(x => x.Id).ToList();
        Assert.IsTrue(mustHave.Count >= 100, $"the load ran long enough to make the assertion meaningful: {mustHave.Count} pushes acknowledged before the cutoff");
        // One writer, one row per transaction: what survives is exactly pushes 1..k, each intact.
        CollectionAssert.AreEqual(Enumerable.Range(1, rows.Count).Select(i => (long)i).ToList(), rows.Select(r => r.Id).ToList(), "pushes 1..k with no gap");
        Assert.IsTrue(rows.Count >= mustHave.Max(), $"every push acknowledged before {cutoff:O} is restored: the last one is {mustHave.Max()}, the restore has {rows.Count} " +
            $"(newest restored commit {rows[^1].CommittedAt:O}, killed {killedAt:O}; {archiveLag}; plan ended at {result.Plan.LastSegment?.File.Name} archived {result.Plan.LastSegment?.ArchivedAt:O})");
        Assert.IsTrue(rows.Count <= load.Attempted, $"nothing that was never written: {rows.Count} restored, {load.Attempted} attempted");
        foreach (var row in rows) Assert.AreEqual(PushLoad.Payload(row.Id), row.Payload, $"push {row.Id} intact");
        var lostWindow = killedAt - rows[^1].CommittedAt;
        TestContext.WriteLine($"Recovery point ({(s3 ? "Ceph S3" : "file store")}): {rows.Count} of {acked.Count} acknowledged pushes restored; " +
                              $"the newest restored commit was {lostWindow.TotalSeconds:F1} s before the kill (archive_timeout {ContinuousSite.ArchiveTimeout.TotalSeconds} s); " +
                              $"{mustHave.Count} were required (acknowledged before kill − {(ContinuousSite.ArchiveTimeout + Slack).TotalSeconds} s); {archiveLag}.");

        // Another fresh node restores to the recorded moment (through the executable, as an operator would).
        var c = await site.StartNodeAsync("c", empty: true);
        var pitr = await c.RunCliAsync("restore", "--to", moment.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", System.Globalization.CultureInfo.InvariantCulture), "--json");
        Assert.AreEqual(0, pitr.ExitCode, pitr.Stderr);
        var restored = await DatabaseSnapshot.CaptureAsync(c.ConnectionString());
        Assert.IsNull(snapshot.FirstDifference(restored), "the database restored to the recorded moment equals the snapshot taken at it");
    }

    /// <summary>
    /// Once a second during the load, the server's own view of its archive lag (as registry-dr's
    /// metric computes it): 0 when everything written is archived, else the time since the last
    /// archived file. For the report, not for the assertions.
    /// </summary>
    private static async Task SampleArchiverAsync(ContinuousNode node, List<(DateTimeOffset, double)> lags, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = new NpgsqlConnection(node.ConnectionString("postgres"));
            await connection.OpenAsync(cancellationToken);
            while (!cancellationToken.IsCancellationRequested)
            {
                await using (var cmd = new NpgsqlCommand(
                    "SELECT CASE WHEN pg_walfile_name(pg_current_wal_lsn()) <= coalesce(last_archived_wal, '') THEN 0 " +
                    "ELSE extract(epoch FROM clock_timestamp() - coalesce(last_archived_time, clock_timestamp())) END::float8 FROM pg_stat_archiver", connection))
                    lags.Add((DateTimeOffset.UtcNow, (double)(await cmd.ExecuteScalarAsync(cancellationToken))!));
                await Task.Delay(1000, cancellationToken);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or NpgsqlException or IOException)
        {
            // The server was killed, or the load is over.
        }
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? 0 : sorted[sorted.Count / 2];
    }

    private static async Task<int> SegmentCountAsync(ContinuousCatalog catalog) =>
        (await catalog.ListWalAsync(default)).Count(w => w.File.Kind == WalFileKind.Segment);

    internal static async Task<List<(long Id, string Payload, DateTimeOffset CommittedAt)>> ReadPushesAsync(ContinuousNode node, string? where = null)
    {
        var rows = new List<(long, string, DateTimeOffset)>();
        await using var connection = new NpgsqlConnection(node.ConnectionString());
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand($"SELECT id, payload, committed_at FROM pushes {where} ORDER BY id", connection);
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add((reader.GetInt64(0), reader.GetString(1), new DateTimeOffset(reader.GetDateTime(2), TimeSpan.Zero)));
        return rows;
    }

    /// <summary>Polls a condition (an event the test waits for) every 500 ms, up to a generous bound.</summary>
    internal static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan bound, string what)
    {
        using var cts = new CancellationTokenSource(bound);
        while (!await condition())
        {
            try { await Task.Delay(500, cts.Token); }
            catch (OperationCanceledException) { Assert.Fail($"Timed out after {bound} waiting for {what}."); }
        }
    }
}
