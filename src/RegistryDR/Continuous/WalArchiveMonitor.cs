using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RegistryDR.Configuration;
using RegistryDR.Continuous.Internal;
using RegistryDR.Monitoring;
using RegistryDR.Postgres;

namespace RegistryDR.Continuous;

/// <summary>
/// One reading of the server's WAL archiver (<c>pg_stat_archiver</c>, whose counters PostgreSQL
/// keeps until its statistics are reset) and how much WAL is not archived yet.
/// </summary>
public sealed record WalArchiveObservation(
    DateTimeOffset ObservedAt,
    long ArchivedCount,
    long FailedCount,
    string? LastArchivedWal,
    DateTimeOffset? LastArchivedTime,
    string? LastFailedWal,
    DateTimeOffset? LastFailedTime,
    long? PendingBytes)
{
    public bool Failing => LastFailedTime is { } failed && (LastArchivedTime is not { } ok || failed > ok);

    /// <summary>
    /// The archive lag, in seconds at <paramref name="now"/>: 0 while nothing written is waiting to be
    /// archived; otherwise the time since the newest file was archived, which bounds how old the
    /// oldest unarchived WAL is (what a node lost now would lose); +Inf when nothing was ever archived.
    /// </summary>
    public double LagSeconds(DateTimeOffset now) => PendingBytes is 0 ? 0
        : LastArchivedTime is { } at ? Math.Max(0, (now - at).TotalSeconds) : double.PositiveInfinity;

    internal static WalArchiveObservation From(ArchiverStats s, DateTimeOffset now) =>
        new(now, s.ArchivedCount, s.FailedCount, s.LastArchivedWal, s.LastArchivedTime, s.LastFailedWal, s.LastFailedTime, s.PendingBytes);

    /// <summary>The Prometheus families of continuous mode (names in base units, counters ending in _total).</summary>
    internal static void Render(WalArchiveObservation o, DateTimeOffset now, Action<string, string, string> family, Action<string, double> sample)
    {
        family("registrydr_wal_archived_total", "counter", "WAL files the server archived (pg_stat_archiver.archived_count; resets with the server's statistics).");
        sample("registrydr_wal_archived_total", o.ArchivedCount);
        family("registrydr_wal_archive_failures_total", "counter", "Failed archive attempts, refusals by registry-dr wal-push included (pg_stat_archiver.failed_count).");
        sample("registrydr_wal_archive_failures_total", o.FailedCount);
        family("registrydr_wal_last_archived_timestamp_seconds", "gauge", "When the server last archived a WAL file, Unix seconds; 0 when never.");
        sample("registrydr_wal_last_archived_timestamp_seconds", o.LastArchivedTime is { } t ? t.ToUnixTimeMilliseconds() / 1000.0 : 0);
        family("registrydr_wal_archive_lag_seconds", "gauge", "0 while all written WAL is archived; otherwise seconds since the last archived file (bounds the age of WAL a lost node would lose); +Inf when nothing was ever archived.");
        sample("registrydr_wal_archive_lag_seconds", o.LagSeconds(now));
        family("registrydr_wal_archive_pending_bytes", "gauge", "Bytes of WAL written after the newest archived segment.");
        if (o.PendingBytes is { } pending) sample("registrydr_wal_archive_pending_bytes", pending);
        family("registrydr_wal_archive_failing", "gauge", "1 when the archiver's newest attempt failed, else 0.");
        sample("registrydr_wal_archive_failing", o.Failing ? 1 : 0);
        family("registrydr_wal_observed_timestamp_seconds", "gauge", "When registry-dr last read pg_stat_archiver, Unix seconds.");
        sample("registrydr_wal_observed_timestamp_seconds", o.ObservedAt.ToUnixTimeMilliseconds() / 1000.0);
    }
}

/// <summary>
/// In the worker (continuous mode): reads <c>pg_stat_archiver</c> every <see cref="Every"/> and
/// reports it (<see cref="IOperationEvents.WalArchiveObserved"/>) for <c>/metrics</c> and the EMF log.
/// A failed read is logged once per failure streak and retried at the next tick.
/// </summary>
internal sealed partial class WalArchiveMonitor(RegistryDrOptions options, IOperationEvents events, TimeProvider time, ILogger<WalArchiveMonitor> logger) : BackgroundService
{
    internal static readonly TimeSpan Every = TimeSpan.FromSeconds(15);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var postgres = new PostgresConnectionFactory(options.Database, logger);
        var failing = false;
        using var timer = new PeriodicTimer(Every, time);
        do
        {
            try
            {
                await using var connection = await postgres.OpenAsync(options.Database.MaintenanceDatabase, stoppingToken);
                var stats = await ArchiverStats.ReadAsync(connection, stoppingToken);
                events.WalArchiveObserved(WalArchiveObservation.From(stats, time.GetUtcNow()));
                failing = false;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                if (!failing) LogReadFailed(ex.Message);
                failing = true;
            }
        }
        while (await WaitAsync(timer, stoppingToken));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken token)
    {
        try { return await timer.WaitForNextTickAsync(token); }
        catch (OperationCanceledException) { return false; }
    }

    [LoggerMessage(9170, LogLevel.Warning, "Could not read pg_stat_archiver for the WAL archive metrics ({Reason}); retrying")]
    private partial void LogReadFailed(string reason);
}

public static class ContinuousServiceCollectionExtensions
{
    /// <summary>What the worker adds in continuous mode: the WAL archive monitor. Nothing in logical mode.</summary>
    public static IServiceCollection AddContinuousProtection(this IServiceCollection services, RegistryDrOptions options)
    {
        if (options.Database.Mode == DatabaseMode.Continuous) services.AddHostedService<WalArchiveMonitor>();
        return services;
    }
}
