using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Backup;

namespace RegistryDR.Monitoring;

/// <summary>
/// Hands every event to each of several sinks in turn (the metrics, the EMF log). A sink that
/// throws, despite the <see cref="IOperationEvents"/> contract, is logged and skipped: it must
/// neither fail the backup that is reporting nor keep the other sinks from hearing about it.
/// </summary>
public sealed partial class CompositeOperationEvents(IReadOnlyList<IOperationEvents> sinks, ILogger<CompositeOperationEvents>? logger = null) : IOperationEvents
{
    private readonly ILogger _logger = (ILogger?)logger ?? NullLogger.Instance;

    public IReadOnlyList<IOperationEvents> Sinks => sinks;

    public void BackupStarted(string backupId) => Each(s => s.BackupStarted(backupId));
    public void BackupSucceeded(BackupManifest manifest, TimeSpan duration) => Each(s => s.BackupSucceeded(manifest, duration));
    public void BackupFailed(string backupId, BackupFailureReason reason, TimeSpan duration) => Each(s => s.BackupFailed(backupId, reason, duration));
    public void RestoreStarted(string backupId) => Each(s => s.RestoreStarted(backupId));
    public void RestoreFinished(string backupId, bool succeeded, TimeSpan duration) => Each(s => s.RestoreFinished(backupId, succeeded, duration));
    public void ScheduleMissed() => Each(s => s.ScheduleMissed());
    public void DrillFinished(string backupId, bool succeeded, TimeSpan duration) => Each(s => s.DrillFinished(backupId, succeeded, duration));
    public void StoreRetry(string operation) => Each(s => s.StoreRetry(operation));
    public void BackupOverran(string backupId, string phase, TimeSpan running) => Each(s => s.BackupOverran(backupId, phase, running));
    public void WalArchiveObserved(Continuous.WalArchiveObservation observation) => Each(s => s.WalArchiveObserved(observation));

    private void Each(Action<IOperationEvents> report)
    {
        foreach (var sink in sinks)
        {
            try
            {
                report(sink);
            }
            catch (Exception ex)
            {
                LogSinkFailed(ex, sink.GetType().Name);
            }
        }
    }

    [LoggerMessage(6001, LogLevel.Warning, "Operation event sink {Sink} failed; the operation itself is unaffected")]
    private partial void LogSinkFailed(Exception ex, string sink);
}
