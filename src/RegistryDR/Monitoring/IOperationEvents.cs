using RegistryDR.Backup;

namespace RegistryDR.Monitoring;

/// <summary>Why a backup failed, as a small fixed set (a metric label must not carry free text).</summary>
public enum BackupFailureReason
{
    /// <summary>The database refused or could not be reached.</summary>
    Database,
    /// <summary>The store refused or could not be reached.</summary>
    Store,
    /// <summary>pg_dump / pg_dumpall failed, is missing, or produced unusable output.</summary>
    Dump,
    /// <summary>The config directories could not be archived.</summary>
    Config,
    /// <summary>The node is not allowed to write backups (it did not restore, or it lost its generation).</summary>
    Refused,
    /// <summary>Cancelled by shutdown.</summary>
    Cancelled,
    Other,
}

/// <summary>
/// What the services report as they work, for metrics, health endpoints and alarms. The backup
/// and restore services call it; monitoring implements it. Calls must be cheap and must not throw.
/// </summary>
public interface IOperationEvents
{
    void BackupStarted(string backupId);
    void BackupSucceeded(BackupManifest manifest, TimeSpan duration);
    void BackupFailed(string backupId, BackupFailureReason reason, TimeSpan duration);
    void RestoreStarted(string backupId);
    void RestoreFinished(string backupId, bool succeeded, TimeSpan duration);
    /// <summary>A scheduled fire was missed (the previous run was still going, or the process was down) and collapsed into a catch-up.</summary>
    void ScheduleMissed();
    /// <summary>A store request failed and is being retried.</summary>
    void StoreRetry(string operation);

    /// <summary>A restore drill finished (scratch database and directory, checked, cleaned up).</summary>
    void DrillFinished(string backupId, bool succeeded, TimeSpan duration) { }

    /// <summary>A backup fire came due while an earlier backup was still running (<paramref name="running"/> so far, in <paramref name="phase"/>).</summary>
    void BackupOverran(string backupId, string phase, TimeSpan running) { }

    /// <summary>Continuous mode: the server's WAL archiver, as last read (<c>pg_stat_archiver</c>).</summary>
    void WalArchiveObserved(Continuous.WalArchiveObservation observation) { }
}

public sealed class NullOperationEvents : IOperationEvents
{
    public static readonly NullOperationEvents Instance = new();
    public void BackupStarted(string backupId) { }
    public void BackupSucceeded(BackupManifest manifest, TimeSpan duration) { }
    public void BackupFailed(string backupId, BackupFailureReason reason, TimeSpan duration) { }
    public void RestoreStarted(string backupId) { }
    public void RestoreFinished(string backupId, bool succeeded, TimeSpan duration) { }
    public void ScheduleMissed() { }
    public void StoreRetry(string operation) { }
}
