using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Worker;

namespace RegistryDR.Monitoring;

/// <summary>
/// A small Kestrel listener on <c>Monitoring:Urls</c> with three endpoints:
/// <c>GET /load_balancer_status</c> (200 only when the node should take registry traffic, see
/// <see cref="LoadBalancerStatus"/>), <c>GET /healthz</c> (200 while this process answers) and
/// <c>GET /metrics</c> (Prometheus text). docs/monitoring.md describes the answers.
/// </summary>
/// <remarks>
/// <para>Two ways to run it: as a hosted service of the worker's Generic Host
/// (<see cref="MonitoringServiceCollectionExtensions.AddRegistryDrMonitoring"/>), or standalone
/// around <c>bootstrap</c> (<see cref="StartAsync(RegistryDrOptions, OperationMetrics, ILoggerFactory, CancellationToken)"/>,
/// then <see cref="DisposeAsync"/>).</para>
/// <para>Either way it is its own small web host: no configuration sources (so no stray
/// <c>ASPNETCORE_URLS</c> or appsettings.json can move it), no signal handling of its own (whoever
/// started it stops it), logs through the caller's logger factory with ASP.NET Core's own
/// categories held at Warning, so a health check every few seconds does not fill the journal.</para>
/// <para>Failing to listen (the port is taken) is logged as an error and does not throw: backups
/// matter more than their metrics, and the load balancer notices a node that does not answer.</para>
/// </remarks>
public sealed partial class MonitoringServer : IHostedService, IAsyncDisposable
{
    private readonly RegistryDrOptions _options;
    private readonly MonitoringOptions _monitoring;
    private readonly OperationMetrics _metrics;
    private readonly ILoggerFactory _loggers;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly LoadBalancerStatus _status;
    private WebApplication? _app;
    private int _disposed;

    public MonitoringServer(RegistryDrOptions options, OperationMetrics metrics, ILoggerFactory loggers, TimeProvider time)
        : this(options, options.Monitoring, metrics, loggers, time)
    {
    }

    internal MonitoringServer(RegistryDrOptions options, MonitoringOptions monitoring, OperationMetrics metrics, ILoggerFactory loggers, TimeProvider time)
    {
        _options = options;
        _monitoring = monitoring;
        _metrics = metrics;
        _loggers = loggers;
        _time = time;
        _logger = loggers.CreateLogger<MonitoringServer>();
        _status = new LoadBalancerStatus(options, metrics, time);
    }

    /// <summary>The addresses actually listened on (a configured port 0 shows the port chosen); empty when not listening.</summary>
    public IReadOnlyList<string> Addresses { get; private set; } = [];

    /// <summary>
    /// Starts the endpoints for a command that has no Generic Host (<c>bootstrap</c>): report the
    /// restore to <paramref name="metrics"/> (pass it to RestoreService as its IOperationEvents)
    /// and the load balancer sees <c>503 restoring</c> until it finishes. Dispose to stop.
    /// </summary>
    public static async Task<MonitoringServer> StartAsync(RegistryDrOptions options, OperationMetrics metrics, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        var server = new MonitoringServer(options, metrics, loggers, metrics.Time);
        await server.StartAsync(cancellationToken);
        return server;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!_monitoring.Enabled)
        {
            LogDisabled();
            return;
        }
        var urls = _monitoring.EffectiveUrls.ToArray();
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions
        {
            ApplicationName = "registry-dr-monitoring",
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.WebHost.UseKestrelCore().UseUrls(urls);
        builder.WebHost.ConfigureKestrel(k => k.AddServerHeader = false);
        builder.Services.AddRoutingCore();
        builder.Services.AddSingleton<IHostLifetime, OwnerControlledLifetime>();
        builder.Logging.AddProvider(new ForwardingLoggerProvider(_loggers));
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        // "Hosting failed to start" with a stack trace would repeat LogListenFailed's line below.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);

        var app = builder.Build();
        app.MapGet("/healthz", context => WriteJsonAsync(context, StatusCodes.Status200OK, ("status", "ok")));
        app.MapGet("/load_balancer_status", LoadBalancerStatusAsync);
        app.MapGet("/metrics", MetricsAsync);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            LogListenFailed(string.Join(", ", urls), ex.GetBaseException().Message);
            await app.DisposeAsync();
            return;
        }
        _app = app;
        Addresses = app.Urls.ToList();
        LogListening(string.Join(", ", Addresses));
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_app is { } app) await app.StopAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_app is { } app)
        {
            // A short grace: the endpoints answer in milliseconds, and a process that is stopping
            // must not wait on a load balancer's half-open connection.
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await app.StopAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
            }
            await app.DisposeAsync();
            _app = null;
        }
        Addresses = [];
        _status.Dispose();
    }

    private async Task LoadBalancerStatusAsync(HttpContext context)
    {
        var problem = await _status.WhyUnavailableAsync(context.RequestAborted);
        if (problem is not null)
            await WriteJsonAsync(context, StatusCodes.Status503ServiceUnavailable, ("status", "unavailable"), ("reason", problem));
        else if (string.IsNullOrEmpty(_options.Registry.HealthUrl))
            await WriteJsonAsync(context, StatusCodes.Status200OK, ("status", "ok"), ("registry", LoadBalancerStatus.RegistryNotChecked));
        else
            await WriteJsonAsync(context, StatusCodes.Status200OK, ("status", "ok"));
    }

    private Task MetricsAsync(HttpContext context)
    {
        var now = _time.GetUtcNow();
        var text = PrometheusExposition.Render(_metrics.Read(), now, BackupService.Version, ScheduleInterval.Of(_options.Schedule.Cron, now),
            Agent.NodeStateFile.Read(_options.Agent.StateFile)?.RegistryCheck);
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = PrometheusExposition.ContentType;
        context.Response.Headers.CacheControl = "no-store";
        return context.Response.WriteAsync(text, context.RequestAborted);
    }

    private static async Task WriteJsonAsync(HttpContext context, int status, params (string Name, string Value)[] members)
    {
        using var buffer = new MemoryStream(128);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var (name, value) in members) w.WriteString(name, value);
            w.WriteEndObject();
        }
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        await context.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), context.RequestAborted);
    }

    /// <summary>The inner web host neither waits for nor reacts to SIGTERM: its owner stops it.</summary>
    private sealed class OwnerControlledLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>Hands the inner host's loggers to the caller's factory (its filters apply after the inner ones); owns nothing.</summary>
    private sealed class ForwardingLoggerProvider(ILoggerFactory loggers) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => loggers.CreateLogger(categoryName);
        public void Dispose() { }
    }

    [LoggerMessage(6010, LogLevel.Information, "Monitoring endpoints (/load_balancer_status, /healthz, /metrics) listening on {Addresses}")]
    private partial void LogListening(string addresses);

    [LoggerMessage(6011, LogLevel.Error, "Monitoring endpoints could not listen on {Urls} ({Reason}; Monitoring:Urls sets the address); backups continue, but the load balancer and Prometheus get no answer from this node")]
    private partial void LogListenFailed(string urls, string reason);

    [LoggerMessage(6012, LogLevel.Information, "Monitoring endpoints are disabled (Monitoring:Enabled is false)")]
    private partial void LogDisabled();
}
