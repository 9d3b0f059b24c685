using Npgsql;

namespace RegistryDR.Postgres;

/// <summary>
/// Server-side limits that would end RegistryDR's own sessions part-way: an operator may set
/// them by ALTER SYSTEM (postgresql.conf), ALTER DATABASE, ALTER ROLE, ALTER ROLE ... IN DATABASE
/// or ALTER ROLE ALL. pg_dump turns statement_timeout, lock_timeout,
/// idle_in_transaction_session_timeout (and, from 17, transaction_timeout) off for its sessions,
/// and pg_restore the first three for its own; RegistryDR does the same for every session it
/// opens, and for the tools it runs, because its sessions hold a snapshot while pg_dump runs,
/// COPY block ranges, count every table and sit idle while downloads and other jobs proceed.
/// </summary>
/// <remarks>
/// The limits are turned off in the start-up packet (libpq's <c>options</c>, PGOPTIONS), which
/// takes precedence over every per-database, per-role and per-system setting (PostgreSQL's
/// "client" source) and leaves no moment in which a 1 ms idle_session_timeout could strike. An
/// unknown name there refuses the connection, so the newest set is tried first and the first one
/// the server accepts is remembered (<see cref="Candidates"/>).
/// </remarks>
internal static class SessionLimits
{
    /// <summary>The sets of limits to turn off, newest server first: 17+ (transaction_timeout), 14+ (idle_session_timeout), 9.6+.</summary>
    internal static readonly string[][] Candidates =
    [
        ["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout", "transaction_timeout"],
        ["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout"],
        ["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"],
    ];

    /// <summary>The start-up options (<c>-c name=0 ...</c>) for one set of <see cref="Candidates"/>.</summary>
    internal static string Options(int candidate) => string.Join(' ', Candidates[candidate].Select(name => $"-c {name}=0"));

    /// <summary>One psql statement that turns off, for the session, every limit the server has (unknown names are skipped), printing nothing.</summary>
    internal const string DisableAllPsql = "DO $registrydr_limits$ BEGIN PERFORM pg_catalog.set_config(name, '0', false) FROM pg_catalog.pg_settings WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'idle_session_timeout', 'transaction_timeout'); END $registrydr_limits$;";
}
