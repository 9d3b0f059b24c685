using System.Runtime.ExceptionServices;
using System.Net.Http;
using System.Net.Sockets;
using Amazon.Runtime;
using Amazon.S3;
using Microsoft.Extensions.Logging;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;

namespace RegistryDR.Stores.Internal;

/// <summary>
/// The one retry policy for every request <see cref="S3Store"/> makes. The SDK is configured
/// to make exactly one attempt per call (see <see cref="S3Store.CreateClientConfig"/>), so
/// every retry happens here, where it can be bounded by <see cref="StoreOptions.RetryBudget"/>,
/// reported through <see cref="IOperationEvents.StoreRetry"/>, logged, and — for parts —
/// re-sent from the part's own buffer.
/// </summary>
internal sealed partial class S3RetryPolicy
{
    private readonly StoreOptions _options;
    private readonly TimeProvider _time;
    private readonly IOperationEvents _events;
    private readonly ILogger _logger;
    private readonly string _store;

    public S3RetryPolicy(StoreOptions options, TimeProvider time, IOperationEvents events, ILogger logger, string store)
    {
        _options = options;
        _time = time;
        _events = events;
        _logger = logger;
        _store = store;
    }

    public TimeProvider Time => _time;

    public TimeSpan RequestTimeout => _options.RequestTimeout;

    /// <summary>
    /// Runs <paramref name="attempt"/> until it succeeds, fails with an error a retry cannot fix,
    /// or the budget is spent. Every failure comes out as a <see cref="StoreUnavailableException"/>
    /// whose inner exception is the SDK's or the network's own.
    /// </summary>
    /// <param name="operation">The label for <see cref="IOperationEvents.StoreRetry"/> and the log: put, initiate, part, complete, get, head, list, delete, abort.</param>
    /// <param name="what">What is being done, for messages: "part 3 of 'backups/x/database.dump'".</param>
    /// <param name="budget">Overrides <see cref="StoreOptions.RetryBudget"/> (the abort after a failure gets less).</param>
    public async Task<T> RunAsync<T>(string operation, string what, Func<CancellationToken, Task<T>> attempt, CancellationToken cancellationToken, TimeSpan? budget = null)
    {
        var scope = Begin(operation, what, budget);
        while (true)
        {
            try
            {
                // Our own per-attempt deadline as well as the SDK's: an attempt that hangs must
                // become a retry, not eat the whole budget silently.
                using var deadline = new CancellationTokenSource(_options.RequestTimeout, _time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
                return await attempt(linked.Token);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                await scope.FailedAsync(ex, cancellationToken);
            }
        }
    }

    /// <summary>Starts counting attempts and time for one operation; <see cref="RetryScope.FailedAsync"/> decides after each failure.</summary>
    public RetryScope Begin(string operation, string what, TimeSpan? budget = null) =>
        new(this, operation, what, budget ?? _options.RetryBudget, _time.GetTimestamp());

    /// <summary>
    /// Whether another attempt could succeed: throttling, server-side errors, timeouts, and a
    /// connection that broke. Not: a refused connection or an unknown host (nothing listens at
    /// the endpoint, or it is misspelt — waiting five minutes fixes neither, and AWS endpoints
    /// answer 503 rather than refuse when they are overloaded), access denied, a missing key or
    /// bucket, a failed precondition, or the caller's own cancellation.
    /// </summary>
    internal static bool IsTransient(Exception ex, CancellationToken cancellationToken)
    {
        if (ex is OperationCanceledException) return !cancellationToken.IsCancellationRequested; // a deadline, not the caller
        if (ex is AmazonServiceException service && service.StatusCode != 0)
        {
            if ((int)service.StatusCode is 429 or 500 or 502 or 503 or 504) return true;
            return service.ErrorCode is "SlowDown" or "RequestTimeout" or "Throttling" or "ThrottlingException" or "RequestThrottled"
                or "InternalError" or "ServiceUnavailable" or "IncompleteBody"
                // The SDK corrects its clock offset when it sees this, so the next attempt is signed right.
                or "RequestTimeTooSkewed";
        }
        for (var e = ex; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case SocketException socket:
                    return socket.SocketErrorCode switch
                    {
                        SocketError.ConnectionRefused or SocketError.HostNotFound or SocketError.NoData or SocketError.AddressNotAvailable => false,
                        _ => true, // reset, aborted, timed out, shut down, unreachable, TryAgain (a DNS hiccup)
                    };
                case HttpRequestException http when http.HttpRequestError is HttpRequestError.SecureConnectionError or HttpRequestError.ConfigurationLimitExceeded:
                    return false;
                case TimeoutException:
                    return true;
            }
        }
        // No socket error underneath: a body that ended early, a response cut mid-way, a garbled one.
        return ex is IOException || ex.InnerException is IOException || ex is HttpRequestException
            || (ex is AmazonClientException && ex.InnerException is HttpRequestException or IOException);
    }

    /// <summary>One line about an error, without the SDK's stack of wrappers: "SlowDown (HTTP 503): Please reduce your request rate."</summary>
    internal string Describe(Exception ex) => ex switch
    {
        AmazonServiceException { StatusCode: not 0 } s => $"{s.ErrorCode ?? "error"} (HTTP {(int)s.StatusCode}){(string.IsNullOrEmpty(s.Message) ? "" : ": " + s.Message)}",
        OperationCanceledException => $"no answer within {Seconds(_options.RequestTimeout)} (Store:RequestTimeout)",
        _ => ex.GetBaseException().Message,
    };

    /// <summary>The exception for an error that is not retried: the same wording the store has always used.</summary>
    internal StoreUnavailableException Permanent(Exception ex, string what, int attempts)
    {
        var after = attempts > 1 ? $" (attempt {attempts})" : "";
        return ex is AmazonServiceException { StatusCode: not 0 }
            ? new StoreUnavailableException($"S3 refused {what} in {_store}: {Describe(ex)}{after}", ex)
            : new StoreUnavailableException($"S3 store {_store} could not be reached for {what}: {Describe(ex)}{after}", ex);
    }

    internal StoreUnavailableException Exhausted(Exception ex, string what, int attempts, TimeSpan elapsed, TimeSpan budget)
    {
        var tally = $"{attempts} attempt{(attempts == 1 ? "" : "s")} over {Seconds(elapsed)} (Store:RetryBudget {Seconds(budget)}) failed";
        return ex is AmazonServiceException { StatusCode: not 0 }
            ? new StoreUnavailableException($"S3 kept refusing {what} in {_store}: {tally}; the last error: {Describe(ex)}", ex)
            : new StoreUnavailableException($"S3 store {_store} could not be reached for {what}: {tally}; the last error: {Describe(ex)}", ex);
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds < 10 ? $"{t.TotalSeconds:0.0#} s" : $"{t.TotalSeconds:0} s";

    /// <summary>Full jitter: anywhere from 0 to the exponential ceiling, so clients throttled together do not come back together.</summary>
    private TimeSpan Backoff(int failures)
    {
        var ceiling = _options.RetryBaseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(failures - 1, 30));
        ceiling = Math.Min(ceiling, _options.RetryMaxDelay.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * ceiling);
    }

    /// <summary>The attempts of one operation against one budget.</summary>
    internal sealed class RetryScope(S3RetryPolicy policy, string operation, string what, TimeSpan budget, long started)
    {
        public int Attempts { get; private set; }

        public string What => what;

        public TimeSpan Elapsed => policy._time.GetElapsedTime(started);

        /// <summary>
        /// Called after a failed attempt. Throws when the error is permanent or the budget would be
        /// over before the next attempt could start; otherwise reports the retry and waits the backoff.
        /// </summary>
        public async Task FailedAsync(Exception ex, CancellationToken cancellationToken)
        {
            Attempts++;
            if (!IsTransient(ex, cancellationToken))
            {
                if (ex is OperationCanceledException) ExceptionDispatchInfo.Throw(ex);
                throw policy.Permanent(ex, what, Attempts);
            }
            var delay = policy.Backoff(Attempts);
            var elapsed = Elapsed;
            if (elapsed + delay >= budget)
                throw policy.Exhausted(ex, what, Attempts, elapsed, budget);
            policy._events.StoreRetry(operation);
            policy.LogRetrying(operation, what, Attempts, elapsed.TotalSeconds, budget.TotalSeconds, policy.Describe(ex), (long)delay.TotalMilliseconds);
            await Task.Delay(delay, policy._time, cancellationToken);
        }
    }

    [LoggerMessage(7000, LogLevel.Warning, "S3 {Operation}: {What} failed (attempt {Attempt}, {Elapsed:0.0} s of a {Budget:0} s retry budget): {Error}; retrying in {DelayMs} ms")]
    private partial void LogRetrying(string operation, string what, int attempt, double elapsed, double budget, string error, long delayMs);
}
