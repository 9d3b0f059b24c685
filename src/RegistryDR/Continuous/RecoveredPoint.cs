namespace RegistryDR.Continuous;

/// <summary>
/// What PostgreSQL's recovery reached in a restore or drill, read from the server after it
/// promoted: the new timeline, the WAL position, the newest replayed commit
/// ("last completed transaction was at log time …") and why replay stopped.
/// </summary>
/// <param name="TargetNotReachedSoLatest">
/// A time target after the newest archived commit: nothing after it has been archived, so the end
/// of the archive is the state at that time and recovery replayed to the end.
/// </param>
public sealed record RecoveredPoint(uint Timeline, string EndLsn, DateTimeOffset? LastTransactionAt, string? StopReason, bool TargetNotReachedSoLatest);

/// <summary>PostgreSQL's recovery in the rehearsal server failed; the message carries the end of its log.</summary>
public sealed class RecoveryFailedException(string message) : Exception(message);
