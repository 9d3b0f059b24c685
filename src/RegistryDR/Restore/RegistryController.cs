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
