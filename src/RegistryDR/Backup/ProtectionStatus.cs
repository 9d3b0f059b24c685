using System.Text.Json.Serialization;
using RegistryDR.Stores;
using RegistryDR.Worker;

namespace RegistryDR.Backup;

[JsonConverter(typeof(JsonStringEnumConverter<ProtectionState>))]
public enum ProtectionState
{
    /// <summary>The newest restorable backup is younger than twice the schedule interval.</summary>
    Ok,
    /// <summary>The newest restorable backup is older than twice the schedule interval.</summary>
    Late,
    /// <summary>There is no restorable backup at all.</summary>
    Missing,
    /// <summary>The store could not be read, so protection cannot be judged.</summary>
    Unknown,
    /// <summary>The newest backup is on time, but the next one cannot run: the database cannot be reached with the configured password, or the store cannot be written.</summary>
    Blocked,
}

/// <summary>Is the registry protected right now, and what would a restore give back?</summary>
public sealed record ProtectionStatus(
    ProtectionState State,
    string Store,
    bool StoreReachable,
    string? StoreError,
    string Schedule,
    TimeSpan Interval,
    string? NewestBackupId,
    DateTimeOffset? NewestBackupTime,
    TimeSpan? NewestBackupAge,
    long? NewestBackupSize,
    int CompleteSets,
    int IncompleteSets)
{

    /// <summary>Whether a probe object could be written to the store and removed (null: not checked).</summary>
    public bool? StoreWritable { get; init; }

    /// <summary>Whether the database answered <c>SELECT 1</c> with the configured user and password (null: not checked).</summary>
    public bool? DatabaseReachable { get; init; }

    /// <summary>Why the next backup cannot run, one sentence each (empty when it can).</summary>
    public IReadOnlyList<string> Problems { get; init; } = [];

    /// <summary>Sets newer than the newest restorable one, which a restore would pass over, each with why (<see cref="RestorableSets"/>).</summary>
    public IReadOnlyList<SetJudgement> Skipped { get; init; } = [];

    /// <summary>In continuous mode (<c>Database:Mode</c>), the archived WAL; null in logical mode.</summary>
    public Continuous.WalArchiveStatus? Wal { get; init; }

    /// <summary>
    /// The point in time a restore now would return the registry to: the newest complete set's time,
    /// or in continuous mode the time the newest WAL segment of the chain was archived.
    /// </summary>
    public DateTimeOffset? RecoveryPoint => Wal is not null ? Wal.RecoveryPoint : NewestBackupTime;
}

public static class ProtectionStatusReader
{
    /// <summary>
    /// <see cref="ReadAsync(IBackupStore, string, TimeProvider, CancellationToken)"/>, plus whether
    /// the next backup can run at all: the store takes a write (a probe object, removed), the
    /// database answers <c>SELECT 1</c> with the configured password, and every config directory
    /// exists. OK only when all hold;
    /// otherwise an OK becomes <see cref="ProtectionState.Blocked"/>, and every state lists the problems.
    /// </summary>
    public static async Task<ProtectionStatus> ReadAsync(IBackupStore store, Configuration.RegistryDrOptions options, TimeProvider time,
        Microsoft.Extensions.Logging.ILogger? logger, CancellationToken cancellationToken)
    {
        // The mode in use decides what "protected" means: restorable sets, or base backups and archived WAL.
        var status = options.Database.Mode == Continuous.DatabaseMode.Continuous
            ? await Continuous.ContinuousStatus.ReadAsync(store, options.Schedule.Cron, time, cancellationToken)
            : await ReadAsync(store, options.Schedule.Cron, time, cancellationToken);
        var problems = new List<string>();
        bool? writable = null;
        if (status.StoreReachable)
        {
            try
            {
                await store.CheckAccessAsync(cancellationToken);
                writable = true;
            }
            catch (Exception ex) when (ex is StoreUnavailableException or StoreNotInitializedException or IOException or UnauthorizedAccessException)
            {
                writable = false;
                problems.Add("store: " + ex.Message);
            }
        }
        else
        {
            problems.Add("store: " + status.StoreError);
        }
        var databaseProblem = await Postgres.PostgresConnectionFactory.ProbeAsync(options.Database, logger, cancellationToken);
        if (databaseProblem is not null) problems.Add("database: " + databaseProblem);
        // The backup's preflight refuses a missing config directory: say so now, not at the next fire.
        foreach (var directory in options.Config.EffectiveDirectories)
            if (!Directory.Exists(directory))
                problems.Add($"config: directory '{directory}' does not exist (Config:Directories); the next backup fails at its preflight");
        return status with
        {
            State = status.State == ProtectionState.Ok && problems.Count > 0 ? ProtectionState.Blocked : status.State,
            StoreWritable = writable,
            DatabaseReachable = databaseProblem is null,
            Problems = problems,
        };
    }

    /// <summary>LATE once the newest complete set is older than this many schedule intervals.</summary>
    public const int LateAfterIntervals = 2;

    public static async Task<ProtectionStatus> ReadAsync(IBackupStore store, string cron, TimeProvider time, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var interval = ScheduleInterval.Of(cron, now);
        RestorableSelection selection;
        try
        {
            // The same selection restore makes: status never vouches for a set restore would refuse.
            selection = await new RestorableSets(store).SelectNewestAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is StoreUnavailableException or StoreNotInitializedException or IOException or UnauthorizedAccessException)
        {
            return new ProtectionStatus(ProtectionState.Unknown, store.Description, false, ex.Message, cron, interval, null, null, null, null, 0, 0);
        }
        var sets = selection.Sets;
        var complete = sets.Count(s => s.IsComplete);
        if (selection.Newest?.Set is not { } newest)
            return new ProtectionStatus(ProtectionState.Missing, store.Description, true, null, cron, interval, null, null, null, null, complete, sets.Count - complete)
                { Skipped = selection.Skipped };
        var age = now - newest.Time;
        var state = age > interval * LateAfterIntervals ? ProtectionState.Late : ProtectionState.Ok;
        return new ProtectionStatus(state, store.Description, true, null, cron, interval, newest.BackupId, newest.Time, age, newest.Size, complete, sets.Count - complete)
            { Skipped = selection.Skipped };
    }
}
