using Microsoft.Extensions.Logging;
using RegistryDR.Configuration;
using RegistryDR.Processes;

namespace RegistryDR.Restore;

/// <summary>Stops, starts and health-checks the registry with the operator's own commands.</summary>
public sealed class RegistryController(RegistryProcessOptions options, ILogger logger, TimeProvider time, HttpClient? http = null)
{
    private readonly HttpClient _http = http ?? new HttpClient { Timeout = TimeSpan.FromSeconds(10) };

    public Task StopAsync(CancellationToken cancellationToken) => RunAsync(options.StopCommand, "stop", cancellationToken);

    public Task StartAsync(CancellationToken cancellationToken) => RunAsync(options.StartCommand, "start", cancellationToken);

    private async Task RunAsync(IReadOnlyList<string> argv, string what, CancellationToken cancellationToken)
    {
        if (argv.Count == 0)
        {
            logger.LogInformation("No Registry:{What}Command configured; nothing to {What}", what == "stop" ? "Stop" : "Start", what);
            return;
        }
        logger.LogInformation("Running the registry {What} command {Command}", what, argv[0]);
        await ProcessRunner.RunCheckedAsync(
            new ProcessSpec(argv[0], argv.Skip(1).ToList()) { Timeout = options.CommandTimeout, DisplayName = $"registry {what} command ({argv[0]})" },
            cancellationToken: cancellationToken);
    }

    /// <summary>
    /// At the start of a rollback, when the start command already ran on the restored data: stops
    /// the registry before the node's own data is put back under it (it read the restored config
    /// and holds sessions on the restored database). Returns the rollback's clause; never throws
    /// for the registry's own failures ("could NOT" in the clause marks the rollback incomplete).
    /// </summary>
    /// <returns>The clause, and whether the registry may still be running on the restored data (its stop command failed): then it is not started again.</returns>
    internal async Task<(string Clause, bool StillRunning)> StopRunningOnRestoredAsync(CancellationToken cancellationToken)
    {
        if (options.StopCommand.Count == 0)
            return ("the registry, started on the restored data, was not stopped (no Registry:StopCommand configured)", false);
        try
        {
            await StopAsync(cancellationToken);
            return ("the registry, started on the restored data, was stopped", false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return ($"the registry, started on the restored data, could NOT be stopped ({ex.Message}) and may still serve the restored data; it was not started again", true);
        }
    }

    /// <summary>
    /// After a rollback: runs the start command, then waits (at most <c>Registry:HealthTimeout</c>)
    /// for the health URL, and returns one clause of the rollback's "Node state:" sentence that
    /// says which of these is true — the registry serves again, it was started but does not answer
    /// (so the node is NOT serving although its data is back), or it could not be started. Never
    /// throws for the registry's own failures: the rollback's other steps still have to be reported.
    /// </summary>
    /// <returns>The clause, and whether the registry is known not to serve (false when it answers, or no health URL is configured).</returns>
    internal async Task<(string Clause, bool NotServing)> StartAgainAsync(CancellationToken cancellationToken)
    {
        try
        {
            await StartAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return ($"the registry is STOPPED and could not be started again ({ex.Message})", true);
        }
        if (string.IsNullOrEmpty(options.HealthUrl))
            return ("the registry was started again on its previous data (no Registry:HealthUrl to check that it serves)", false);
        try
        {
            await WaitUntilHealthyAsync(cancellationToken);
            return ($"the registry was started again on its previous data and answers {options.HealthUrl}", false);
        }
        catch (TimeoutException ex)
        {
            return ($"the registry was started again on its previous data but is NOT serving: {ex.Message} Check the registry's own log", true);
        }
    }

    /// <summary>Polls the health URL until it answers 2xx; throws with the last answer when the timeout passes.</summary>
    public async Task WaitUntilHealthyAsync(CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(options.HealthUrl))
        {
            logger.LogWarning("No Registry:HealthUrl configured; not waiting for the registry to serve");
            return;
        }
        var deadline = time.GetUtcNow() + options.HealthTimeout;
        var last = "no answer yet";
        while (true)
        {
            try
            {
                using var response = await _http.GetAsync(options.HealthUrl, cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    logger.LogInformation("Registry answers {HealthUrl} with {Status}", options.HealthUrl, (int)response.StatusCode);
                    return;
                }
                last = $"HTTP {(int)response.StatusCode}";
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                last = ex.GetBaseException().Message;
            }
            if (time.GetUtcNow() >= deadline)
                throw new TimeoutException($"The registry did not answer {options.HealthUrl} with 2xx within {options.HealthTimeout} (last: {last}).");
            await Task.Delay(TimeSpan.FromSeconds(1), time, cancellationToken);
        }
    }
}
