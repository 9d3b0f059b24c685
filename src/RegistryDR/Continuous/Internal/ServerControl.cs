using Microsoft.Extensions.Logging;
using Npgsql;
using RegistryDR.Configuration;
using RegistryDR.Processes;

namespace RegistryDR.Continuous.Internal;

/// <summary>
/// The node's own PostgreSQL server, stopped and started with the operator's commands
/// (<c>Continuous:ServerStopCommand</c>, <c>Continuous:ServerStartCommand</c>): by a point-in-time
/// restore around its data-directory swap, by its rollback, and by <see cref="Restore.InterruptedRestore"/>
/// when it puts back the data directory of a restore that was killed.
/// </summary>
internal sealed class ServerControl(RegistryDrOptions options, ILogger logger, TimeProvider time)
{
    private string DataDirectory => Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.Continuous.DataDirectory!));

    /// <summary>Runs the stop command; a server that was not running (a node whose database died) is what a stop wants anyway.</summary>
    /// <exception cref="ProcessFailedException">The command failed and a postmaster still runs on the data directory.</exception>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var c = options.Continuous;
        Require(c.ServerStopCommand, "Continuous:ServerStopCommand");
        var result = await ProcessRunner.RunAsync(new ProcessSpec(c.ServerStopCommand[0], c.ServerStopCommand.Skip(1).ToList())
        { Timeout = c.ServerTimeout, DisplayName = $"PostgreSQL stop command ({c.ServerStopCommand[0]})" }, cancellationToken: cancellationToken);
        if (result.ExitCode != 0 && PostmasterAlive(DataDirectory))
            throw new ProcessFailedException($"Continuous:ServerStopCommand exited {result.ExitCode} and PostgreSQL still runs.{ProcessRunner.FormatTail(result.StandardError)}", result.ExitCode, result.StandardError);
    }

    /// <summary>Runs the start command, then waits (within Continuous:ServerTimeout) until the server accepts connections and is out of recovery.</summary>
    /// <param name="started">Called once the start command has succeeded (the server may now run on the data directory).</param>
    public async Task StartAsync(Action? started, CancellationToken cancellationToken)
    {
        var c = options.Continuous;
        Require(c.ServerStartCommand, "Continuous:ServerStartCommand");
        await ProcessRunner.RunCheckedAsync(new ProcessSpec(c.ServerStartCommand[0], c.ServerStartCommand.Skip(1).ToList())
        { Timeout = c.ServerTimeout, DisplayName = $"PostgreSQL start command ({c.ServerStartCommand[0]})" }, cancellationToken: cancellationToken);
        started?.Invoke();
        await WaitForServerAsync(cancellationToken);
    }

    /// <summary>Until the server accepts connections on Database:Host/Port and is out of recovery, within Continuous:ServerTimeout.</summary>
    private async Task WaitForServerAsync(CancellationToken cancellationToken)
    {
        var deadline = time.GetUtcNow() + options.Continuous.ServerTimeout;
        var postgres = new Postgres.PostgresConnectionFactory(options.Database, logger);
        var last = "no answer yet";
        while (true)
        {
            try
            {
                await using var connection = await postgres.OpenAsync(options.Database.MaintenanceDatabase, cancellationToken);
                await using var cmd = new NpgsqlCommand("SELECT pg_is_in_recovery()", connection);
                if (await cmd.ExecuteScalarAsync(cancellationToken) is false) return;
                last = "still in recovery";
            }
            catch (Postgres.DatabaseUnavailableException ex)
            {
                last = ex.Message;
            }
            if (time.GetUtcNow() >= deadline)
                throw new TimeoutException($"PostgreSQL did not accept connections within Continuous:ServerTimeout ({options.Continuous.ServerTimeout}) after the start command (last: {last}).");
            await Task.Delay(TimeSpan.FromMilliseconds(500), time, cancellationToken);
        }
    }

    /// <summary>
    /// Stops, immediately, a postmaster that still runs on <paramref name="dataDirectory"/> (the
    /// rehearsal server of a restore killed while it replayed: pg_ctl started it detached, so it
    /// outlives registry-dr), so that the directory can be removed. Null when none ran.
    /// </summary>
    public async Task<string?> StopOrphanAsync(string dataDirectory, CancellationToken cancellationToken)
    {
        if (!PostmasterAlive(dataDirectory)) return null;
        var owner = await FileOwner.OfAsync(dataDirectory, cancellationToken);
        var tools = new ServerTools(options.Database);
        await ProcessRunner.RunCheckedAsync(ServerTools.AsOwner(new ProcessSpec(tools.PgCtl, ["-D", dataDirectory, "-m", "immediate", "-w", "-t", "60", "stop"])
        { DisplayName = "pg_ctl stop (a killed restore's rehearsal server)", Timeout = TimeSpan.FromMinutes(2) }, owner), cancellationToken: cancellationToken);
        return $"the rehearsal server still replaying on {dataDirectory} was stopped";
    }

    /// <summary>
    /// Validated at start-up in continuous mode; recovering a point-in-time restore's journal under a
    /// configuration that no longer sets it gets here.
    /// </summary>
    private static void Require(List<string> command, string key)
    {
        if (command.Count == 0 || command.Any(string.IsNullOrEmpty))
            throw new Configuration.ConfigurationException($"{key} is not set: PostgreSQL must be stopped and started with it around its data directory's swap (a point-in-time restore's, recorded in the restore journal). Set it as for Database:Mode Continuous.");
    }

    internal static bool PostmasterAlive(string dataDirectory)
    {
        try
        {
            var first = File.ReadLines(Path.Combine(dataDirectory, "postmaster.pid")).FirstOrDefault();
            return int.TryParse(first, out var pid) && Directory.Exists($"/proc/{pid}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
