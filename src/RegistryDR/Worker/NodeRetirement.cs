namespace RegistryDR.Worker;

/// <summary>
/// Whether this node still takes backups on schedule. The termination watch retires the node when
/// Auto Scaling is about to terminate it: the final backup is the last one, and the schedule stops.
/// <see cref="BackupGate"/> is held by every backup the worker runs, so the final backup waits for
/// a running one to end instead of starting a second one beside it.
/// </summary>
public sealed class NodeRetirement
{
    private int _retiring;

    /// <summary>One backup at a time across the scheduled job and the final backup.</summary>
    public SemaphoreSlim BackupGate { get; } = new(1, 1);

    /// <summary>True once termination was noticed: scheduled backups are skipped from then on.</summary>
    public bool IsRetiring => Volatile.Read(ref _retiring) == 1;

    /// <summary>Stops scheduled backups; true the first time only.</summary>
    public bool BeginRetiring() => Interlocked.Exchange(ref _retiring, 1) == 0;
}
