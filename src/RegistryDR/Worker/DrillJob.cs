using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Quartz;
using RegistryDR.Backup;
using RegistryDR.Restore;

namespace RegistryDR.Worker;

/// <summary>
/// The scheduled restore drill. Never concurrent with itself; a drill that finds no backup is
/// logged and reported (DrillService), and the next one tries again.
/// </summary>
[DisallowConcurrentExecution]
public sealed partial class DrillJob(DrillService drills, IHostApplicationLifetime lifetime, ILogger<DrillJob> logger) : IJob
{
    public static readonly JobKey Key = new("drill", "registry-dr");

    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, context.CancellationToken, lifetime.ApplicationStopping);
        try
        {
            var report = await drills.RunAsync("latest", cancellationToken: linked.Token);
            context.Result = report.Succeeded;
        }
        catch (BackupNotFoundException ex)
        {
            LogNothingToDrill(ex.Message);
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            LogDrillError(ex, ex.Message);
        }
    }

    [LoggerMessage(3200, LogLevel.Warning, "Scheduled drill found nothing to rehearse: {Reason}")]
    private partial void LogNothingToDrill(string reason);

    [LoggerMessage(3201, LogLevel.Error, "Scheduled drill could not run: {Reason}")]
    private partial void LogDrillError(Exception ex, string reason);
}
