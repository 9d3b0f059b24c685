using System.Globalization;
using RegistryDR.Agent;
using RegistryDR.Configuration;

namespace RegistryDR.Monitoring;

/// <summary>
/// Whether this node should take registry traffic: the answer behind
/// <c>GET /load_balancer_status</c>. Checked in order of cost, the first problem wins:
/// a restore in progress, then (with <c>Schedule:RequireRestoredNode</c>) the node state file,
/// then the registry's own <c>Registry:HealthUrl</c>.
/// </summary>
/// <remarks>
/// Load balancers probe often, from several nodes each; the registry probe is therefore shared:
/// concurrent requests wait for the one probe in flight, and its answer is reused for
/// <see cref="CacheFor"/> after it completes. A probe has <see cref="ProbeTimeout"/> in all, so
/// an answer is always ready well inside a load balancer's own health-check timeout.
/// </remarks>
internal sealed class LoadBalancerStatus : IDisposable
{
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);
    public static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(1);

    /// <summary>The <c>registry</c> member of a 200 when there is nothing to probe.</summary>
    public const string RegistryNotChecked = "not checked: Registry:HealthUrl is not set";

    private readonly RegistryDrOptions _options;
    private readonly OperationMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly HttpClient _http;
    private readonly Lock _lock = new();
    private Task<string?>? _probe;
    private long _probeCompletedAt;

    public LoadBalancerStatus(RegistryDrOptions options, OperationMetrics metrics, TimeProvider time, HttpMessageHandler? handler = null)
    {
        _options = options;
        _metrics = metrics;
        _time = time;
        _http = new HttpClient(handler ?? new SocketsHttpHandler
        {
            ConnectTimeout = ProbeTimeout,
            // A registry that was replaced by a restore is a new process: do not keep talking to the old one's connections.
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary>Null when the node may take traffic; otherwise why not, for the 503's <c>reason</c>.</summary>
    public async Task<string?> WhyUnavailableAsync(CancellationToken cancellationToken)
    {
        if (_metrics.RestoreInProgress) return "restoring";
        if (_options.Schedule.RequireRestoredNode && NodeProblem() is { } node) return node;
        if (string.IsNullOrEmpty(_options.Registry.HealthUrl)) return null;
        return await SharedProbe().WaitAsync(cancellationToken);
    }

    private string? NodeProblem()
    {
        var state = NodeStateFile.Read(_options.Agent.StateFile);
        return state switch
        {
            null => "node did not restore: no readable node state file",
            { Status: NodeStatus.Restored or NodeStatus.FirstBoot } => null,
            // The bootstrap agent marks the node Restoring before it starts, and may be between two
            // attempts (a set failed verification) when the metrics show no restore running.
            { Status: NodeStatus.Restoring } => "restoring",
            _ => "node did not restore: " + state.Status,
        };
    }

    private Task<string?> SharedProbe()
    {
        lock (_lock)
        {
            if (_probe is not null && (!_probe.IsCompleted || _time.GetElapsedTime(_probeCompletedAt) < CacheFor))
                return _probe;
            _probe = ProbeAsync();
            return _probe;
        }
    }

    private async Task<string?> ProbeAsync()
    {
        // Never the caller's token: other requests share this probe.
        using var timeout = new CancellationTokenSource(ProbeTimeout, _time);
        string? problem;
        try
        {
            using var response = await _http.GetAsync(_options.Registry.HealthUrl, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            problem = response.IsSuccessStatusCode
                ? null
                : "registry unhealthy: HTTP " + ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            problem = $"registry unhealthy: no answer within {ProbeTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s";
        }
        catch (Exception ex) when (ex is HttpRequestException or InvalidOperationException or IOException)
        {
            // HttpRequestException's own message names the address ("Connection refused (127.0.0.1:443)");
            // a TLS failure only says "see inner exception", so the innermost cause is added then.
            var cause = ex.GetBaseException().Message;
            problem = "registry unhealthy: " + ex.Message + (ex.Message.Contains(cause, StringComparison.Ordinal) ? "" : " (" + cause + ")");
        }
        lock (_lock) _probeCompletedAt = _time.GetTimestamp();
        return problem;
    }

    public void Dispose() => _http.Dispose();
}
