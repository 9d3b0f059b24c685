using RegistryDR.Backup;
using RegistryDR.Stores;

namespace RegistryDR.Monitoring;

/// <summary>
/// What the backup and restore services reported since the process started, for
/// <c>/metrics</c> and <c>/load_balancer_status</c>. One per process (a singleton); every
/// member is safe to call from any thread.
/// </summary>
/// <remarks>
/// The last successful backup time is the <em>start</em> of the newest complete set, i.e. the
/// moment its database snapshot was taken: the age computed from it is how much would be lost if
/// the node died now. It is also what <see cref="InitializeFromStoreAsync"/> can read back from
/// the store (backup ids start with that time), so a restarted worker reports the same age.
/// </remarks>
public sealed class OperationMetrics(TimeProvider time) : IOperationEvents
{
    /// <summary>Distinct <c>operation</c> label values kept; more are counted under <see cref="OtherOperation"/>, so a caller can never blow up the series count.</summary>
    internal const int MaxOperations = 32;

    internal const string OtherOperation = "other";

    private readonly Lock _lock = new();
    private readonly long[] _failures = new long[Enum.GetValues<BackupFailureReason>().Length];
    private readonly Dictionary<string, long> _lastSizes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _storeRetries = new(StringComparer.Ordinal);
    private DateTimeOffset? _lastSuccess;
    private TimeSpan? _lastDuration;
    private long _successes;
    private int _restoresRunning;
    private TimeSpan? _lastRestoreDuration;
    private long _restoreSuccesses;
    private long _restoreFailures;
    private long _scheduleMissed;

    internal TimeProvider Time => time;

    /// <summary>True between <see cref="RestoreStarted"/> and its <see cref="RestoreFinished"/>: the node must not take traffic.</summary>
    public bool RestoreInProgress
    {
        get { lock (_lock) return _restoresRunning > 0; }
    }

    /// <summary>
    /// Seeds the last successful backup time from the store (the newest complete set), so a
    /// freshly started process reports the real backup age rather than "never". A backup this
    /// process has already completed is newer and is kept.
    /// </summary>
    public async Task InitializeFromStoreAsync(IBackupStore store, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        var sets = await new BackupCatalog(store).ListAsync(cancellationToken);
        // Base backups of continuous mode count too (they are what its schedule takes).
        var newestTime = new[] { sets.FirstOrDefault(s => s.IsComplete)?.Time, await new Continuous.ContinuousCatalog(store).NewestCompleteTimeAsync(cancellationToken) }.Max();
        if (newestTime is not { } newest) return;
        lock (_lock)
        {
            if (_lastSuccess is null || newest > _lastSuccess) _lastSuccess = newest;
        }
    }

    public void BackupStarted(string backupId)
    {
        lock (_lock) _runningSince = time.GetUtcNow();
    }

    private DateTimeOffset? _runningSince;
    private long _overruns;

    public void BackupOverran(string backupId, string phase, TimeSpan running)
    {
        lock (_lock) _overruns++;
    }

    public void BackupSucceeded(BackupManifest manifest, TimeSpan duration)
    {
        lock (_lock)
        {
            if (_lastSuccess is null || manifest.StartedAt > _lastSuccess) _lastSuccess = manifest.StartedAt;
            _lastDuration = duration;
            _lastSizes.Clear();
            // The database is the pg_dump archive plus the split tables' block ranges: one series,
            // so a drop in it still means the registry's data shrank, however the set was split.
            foreach (var artifact in manifest.Artifacts)
            {
                var label = Backup.BackupLayout.IsTableDataArtifact(artifact.Name) ? Backup.BackupLayout.DatabaseArtifact : artifact.Name;
                _lastSizes[label] = _lastSizes.GetValueOrDefault(label) + artifact.Size;
            }
            _successes++;
            _runningSince = null;
        }
    }

    public void BackupFailed(string backupId, BackupFailureReason reason, TimeSpan duration)
    {
        var index = (int)reason;
        if ((uint)index >= (uint)_failures.Length) index = (int)BackupFailureReason.Other;
        lock (_lock)
        {
            _failures[index]++;
            _runningSince = null;
        }
    }

    public void RestoreStarted(string backupId)
    {
        lock (_lock) _restoresRunning++;
    }

    public void RestoreFinished(string backupId, bool succeeded, TimeSpan duration)
    {
        lock (_lock)
        {
            // Never below zero: a finish without a start (a caller's bug) must not hide the next restore.
            if (_restoresRunning > 0) _restoresRunning--;
            _lastRestoreDuration = duration;
            if (succeeded) _restoreSuccesses++;
            else _restoreFailures++;
        }
    }

    public void DrillFinished(string backupId, bool succeeded, TimeSpan duration)
    {
        lock (_lock)
        {
            if (succeeded) { _drillSuccesses++; _lastDrillSuccess = time.GetUtcNow(); }
            else _drillFailures++;
        }
    }

    private long _drillSuccesses, _drillFailures;
    private DateTimeOffset? _lastDrillSuccess;
    private Continuous.WalArchiveObservation? _walArchive;

    public void WalArchiveObserved(Continuous.WalArchiveObservation observation)
    {
        lock (_lock) _walArchive = observation;
    }

    public void ScheduleMissed()
    {
        lock (_lock) _scheduleMissed++;
    }

    public void StoreRetry(string operation)
    {
        var key = string.IsNullOrEmpty(operation) ? OtherOperation : operation;
        lock (_lock)
        {
            if (!_storeRetries.ContainsKey(key) && _storeRetries.Count >= MaxOperations) key = OtherOperation;
            _storeRetries[key] = _storeRetries.GetValueOrDefault(key) + 1;
        }
    }

    /// <summary>A consistent copy, taken under the lock, for one scrape.</summary>
    internal Snapshot Read()
    {
        lock (_lock)
        {
            return new Snapshot(
                _lastSuccess, _lastDuration,
                new SortedDictionary<string, long>(_lastSizes, StringComparer.Ordinal),
                _successes,
                Enum.GetValues<BackupFailureReason>().ToDictionary(r => r, r => _failures[(int)r]),
                _restoresRunning > 0, _lastRestoreDuration, _restoreSuccesses, _restoreFailures,
                _scheduleMissed,
                new SortedDictionary<string, long>(_storeRetries, StringComparer.Ordinal))
            {
                BackupRunning = _runningSince is { } since ? time.GetUtcNow() - since : null,
                BackupOverruns = _overruns,
                DrillSuccesses = _drillSuccesses,
                DrillFailures = _drillFailures,
                LastDrillSuccess = _lastDrillSuccess,
                WalArchive = _walArchive,
            };
        }
    }

    internal sealed record Snapshot(
        DateTimeOffset? LastSuccess,
        TimeSpan? LastDuration,
        IReadOnlyDictionary<string, long> LastSizes,
        long Successes,
        IReadOnlyDictionary<BackupFailureReason, long> Failures,
        bool RestoreInProgress,
        TimeSpan? LastRestoreDuration,
        long RestoreSuccesses,
        long RestoreFailures,
        long ScheduleMissed,
        IReadOnlyDictionary<string, long> StoreRetries)
    {
        /// <summary>How long the backup running now has run; null when none runs.</summary>
        public TimeSpan? BackupRunning { get; init; }
        public long BackupOverruns { get; init; }
        public long DrillSuccesses { get; init; }
        public long DrillFailures { get; init; }
        public DateTimeOffset? LastDrillSuccess { get; init; }
        public Continuous.WalArchiveObservation? WalArchive { get; init; }
    }
}
