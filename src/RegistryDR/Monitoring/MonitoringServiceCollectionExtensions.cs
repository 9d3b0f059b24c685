using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RegistryDR.Configuration;
using RegistryDR.Stores;

namespace RegistryDR.Monitoring;

public static class MonitoringServiceCollectionExtensions
{
    /// <summary>
    /// Registers monitoring in a Generic Host: <see cref="OperationMetrics"/> and <see cref="EmfWriter"/>
    /// (singletons), a <see cref="CompositeOperationEvents"/> of the two as <see cref="IOperationEvents"/>
    /// (which BackupService and RestoreService take from the container), the <see cref="MonitoringServer"/>
    /// as a hosted service, and a background read of the store's newest complete set so the backup age
    /// is right from the first scrape (when an <see cref="IBackupStore"/> is registered, as
    /// <c>AddRegistryDrWorker</c> does). <paramref name="options"/> must already be validated.
    /// </summary>
    public static IServiceCollection AddRegistryDrMonitoring(this IServiceCollection services, RegistryDrOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(options);
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<OperationMetrics>();
        services.TryAddSingleton<EmfWriter>();
        services.AddSingleton<IOperationEvents>(sp => new CompositeOperationEvents(
            [sp.GetRequiredService<OperationMetrics>(), sp.GetRequiredService<EmfWriter>()],
            sp.GetService<ILogger<CompositeOperationEvents>>()));
        services.TryAddSingleton<MonitoringServer>();
        services.AddHostedService(sp => sp.GetRequiredService<MonitoringServer>());
        services.AddHostedService(sp => new BackupAgeSeeding(
            sp.GetRequiredService<OperationMetrics>(), sp.GetService<IBackupStore>(),
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<BackupAgeSeeding>>()));
        return services;
    }
}

/// <summary>
/// Reads the newest complete set's time from the store once at start, in the background (start-up
/// does not wait on the store). A store that is briefly unreachable is retried a few times; until
/// then, or until this process completes a backup, the age reads +Inf ("none known").
/// </summary>
internal sealed partial class BackupAgeSeeding(OperationMetrics metrics, IBackupStore? store, TimeProvider time, ILogger<BackupAgeSeeding> logger) : BackgroundService
{
    internal static readonly TimeSpan RetryEvery = TimeSpan.FromSeconds(30);
    internal const int Attempts = 10;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (store is null) return;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await metrics.InitializeFromStoreAsync(store, stoppingToken);
                LogSeeded(store.Description, metrics.Read().LastSuccess);
                return;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                if (attempt >= Attempts)
                {
                    LogGaveUp(ex, store.Description, attempt);
                    return;
                }
                LogWillRetry(store.Description, ex.Message, RetryEvery);
            }
            try
            {
                await Task.Delay(RetryEvery, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    [LoggerMessage(6020, LogLevel.Debug, "Backup age seeded from {Store}: newest complete set taken at {Time:u}")]
    private partial void LogSeeded(string store, DateTimeOffset? time);

    [LoggerMessage(6021, LogLevel.Warning, "Could not read the newest backup from {Store} for the backup-age metric ({Error}); retrying in {Delay}")]
    private partial void LogWillRetry(string store, string error, TimeSpan delay);

    [LoggerMessage(6022, LogLevel.Warning, "Gave up reading the newest backup from {Store} for the backup-age metric after {Attempts} attempts; it reads +Inf until this process completes a backup")]
    private partial void LogGaveUp(Exception ex, string store, int attempts);
}
