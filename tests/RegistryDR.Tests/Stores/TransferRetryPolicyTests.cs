using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using Amazon.Runtime;
using Amazon.S3;
using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Configuration;
using RegistryDR.Stores;
using RegistryDR.Stores.Internal;

namespace RegistryDR.Tests.Stores;

/// <summary>
/// The retry policy on its own, in virtual time: the default five-minute budget is checked
/// without waiting five minutes, and the SDK is held to one attempt per call.
/// </summary>
[TestClass]
public sealed class TransferRetryPolicyTests
{
    private static AmazonS3Exception S3Error(HttpStatusCode status, string code) =>
        new($"{code} from the test", ErrorType.Sender, code, "req-1", status);

    private static (S3RetryPolicy Policy, RecordingEvents Events, SteppingClock Clock) Policy(StoreOptions? options = null, TimeSpan? fireBelow = null)
    {
        var events = new RecordingEvents();
        var clock = new SteppingClock(fireBelow ?? TimeSpan.FromMinutes(1));
        return (new S3RetryPolicy(options ?? new StoreOptions(), clock, events, NullLogger.Instance, "s3://bucket/p"), events, clock);
    }

    [TestMethod]
    public void TheSdkMakesOneAttemptPerCall_SoEveryRetryIsOurs()
    {
        var config = S3Store.CreateClientConfig(new StoreOptions { RequestTimeout = TimeSpan.FromSeconds(42) });
        Assert.AreEqual(0, config.MaxErrorRetry);
        Assert.AreEqual(0, config.MaxStaleConnectionRetries);
        Assert.AreEqual(TimeSpan.FromSeconds(42), config.Timeout);
    }

    [TestMethod]
    public async Task ThrottledForever_WithTheDefaults_GivesUpWithinFiveMinutes_AfterManyJitteredRetries()
    {
        var (policy, events, clock) = Policy();
        var attempts = 0;

        var failure = await Assert.ThrowsExactlyAsync<StoreUnavailableException>(() => policy.RunAsync<int>("part", "part 7 of 'k'", _ =>
        {
            attempts++;
            throw S3Error(HttpStatusCode.ServiceUnavailable, "SlowDown");
        }, CancellationToken.None));

        var elapsed = TimeSpan.FromTicks(clock.GetTimestamp());
        Assert.IsLessThanOrEqualTo(TimeSpan.FromMinutes(5), elapsed, "the budget is a ceiling");
        Assert.IsGreaterThan(TimeSpan.FromMinutes(5) - TimeSpan.FromSeconds(20), elapsed, "one more backoff (at most 20 s) would have fit");
        Assert.AreEqual(attempts - 1, events.Retries("part"), "every retry is reported");
        Assert.IsGreaterThan(10, attempts);
        Assert.IsTrue(clock.Waits.All(w => w <= TimeSpan.FromSeconds(20)), "no backoff above Store:RetryMaxDelay");
        Assert.IsGreaterThan(clock.Waits.Count / 2, clock.Waits.Distinct().Count(), "the backoffs are jittered");
        Assert.AreEqual($"S3 kept refusing part 7 of 'k' in s3://bucket/p: {attempts} attempts over {elapsed.TotalSeconds:0} s (Store:RetryBudget 300 s) failed; the last error: SlowDown (HTTP 503): SlowDown from the test", failure.Message);
        Assert.IsInstanceOfType<AmazonS3Exception>(failure.InnerException);
    }

    [TestMethod]
    public async Task ThrottledThenServed_ReturnsTheAnswer()
    {
        var (policy, events, _) = Policy();
        var attempts = 0;
        var result = await policy.RunAsync("get", "reading 'k'", _ => ++attempts < 3 ? throw S3Error(HttpStatusCode.InternalServerError, "InternalError") : Task.FromResult(42), CancellationToken.None);
        Assert.AreEqual(42, result);
        Assert.AreEqual(2, events.Retries("get"));
    }

    [TestMethod]
    public async Task AccessDenied_IsNotRetried()
    {
        var (policy, events, _) = Policy();
        var failure = await Assert.ThrowsExactlyAsync<StoreUnavailableException>(() =>
            policy.RunAsync<int>("put", "the upload of 'k'", _ => throw S3Error(HttpStatusCode.Forbidden, "AccessDenied"), CancellationToken.None));
        Assert.AreEqual("S3 refused the upload of 'k' in s3://bucket/p: AccessDenied (HTTP 403): AccessDenied from the test", failure.Message);
        Assert.AreEqual(0, events.TotalRetries);
    }

    [TestMethod]
    public async Task ZeroBudget_MeansOneAttempt()
    {
        var (policy, events, _) = Policy(new StoreOptions { RetryBudget = TimeSpan.Zero });
        var attempts = 0;
        await Assert.ThrowsExactlyAsync<StoreUnavailableException>(() =>
            policy.RunAsync<int>("put", "the upload of 'k'", _ => { attempts++; throw new IOException("reset"); }, CancellationToken.None));
        Assert.AreEqual(1, attempts);
        Assert.AreEqual(0, events.TotalRetries);
    }

    [TestMethod]
    public async Task CancellationDuringABackoff_IsCancellation_NotAStoreError()
    {
        // Nothing fires on this clock: the first backoff waits until cancelled.
        var (policy, _, _) = Policy(fireBelow: TimeSpan.Zero);
        using var cts = new CancellationTokenSource();
        var run = policy.RunAsync<int>("part", "part 1 of 'k'", _ => { cts.CancelAfter(50); throw new IOException("reset"); }, cts.Token);
        await Assert.ThrowsAsync<OperationCanceledException>(() => run);
    }

    public static IEnumerable<object[]> Errors =>
    [
        [S3Error(HttpStatusCode.ServiceUnavailable, "SlowDown"), true],
        [S3Error(HttpStatusCode.TooManyRequests, "TooManyRequests"), true],
        [S3Error(HttpStatusCode.InternalServerError, "InternalError"), true],
        [S3Error(HttpStatusCode.BadGateway, "BadGateway"), true],
        [S3Error(HttpStatusCode.GatewayTimeout, "GatewayTimeout"), true],
        [S3Error(HttpStatusCode.BadRequest, "RequestTimeout"), true],
        [S3Error(HttpStatusCode.Forbidden, "RequestTimeTooSkewed"), true],
        [S3Error(HttpStatusCode.Forbidden, "AccessDenied"), false],
        [S3Error(HttpStatusCode.NotFound, "NoSuchKey"), false],
        [S3Error(HttpStatusCode.NotFound, "NoSuchBucket"), false],
        [S3Error(HttpStatusCode.PreconditionFailed, "PreconditionFailed"), false],
        [new HttpRequestException(HttpRequestError.ConnectionError, "reset", new SocketException((int)SocketError.ConnectionReset)), true],
        [new HttpRequestException(HttpRequestError.ConnectionError, "timed out", new SocketException((int)SocketError.TimedOut)), true],
        [new HttpRequestException(HttpRequestError.ConnectionError, "refused", new SocketException((int)SocketError.ConnectionRefused)), false],
        [new HttpRequestException(HttpRequestError.NameResolutionError, "no such host", new SocketException((int)SocketError.HostNotFound)), false],
        [new HttpRequestException(HttpRequestError.NameResolutionError, "try again", new SocketException((int)SocketError.TryAgain)), true],
        [new HttpIOException(HttpRequestError.ResponseEnded, "The response ended prematurely."), true],
        [new IOException("Unable to read data from the transport connection: Connection reset by peer.", new SocketException((int)SocketError.ConnectionReset)), true],
        [new TaskCanceledException("The request was canceled due to the configured HttpClient.Timeout", new TimeoutException()), true],
        [new AmazonClientException("no credentials"), false],
        [new InvalidOperationException("a bug"), false],
    ];

    [TestMethod]
    [DynamicData(nameof(Errors))]
    public void WhatIsRetried(Exception error, bool transient)
    {
        Assert.AreEqual(transient, S3RetryPolicy.IsTransient(error, CancellationToken.None), error.ToString());
    }

    [TestMethod]
    public void TheCallersOwnCancellation_IsNotRetried()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.IsFalse(S3RetryPolicy.IsTransient(new OperationCanceledException(cts.Token), cts.Token));
    }

    [TestMethod]
    public void MultipartETag_IsTheMd5OfThePartMd5s()
    {
        // Two parts of "a" and "b": S3's well-known rule, md5(md5("a") ‖ md5("b")) + "-2".
        var parts = new List<Amazon.S3.Model.PartETag>
        {
            new(1, "\"0cc175b9c0f1b6a831c399e269772661\""),
            new(2, "\"92eb5ffee6ae2fec3ad71c777531578f\""),
        };
        var expected = Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(Convert.FromHexString("0cc175b9c0f1b6a831c399e26977266192eb5ffee6ae2fec3ad71c777531578f"))) + "-2";
        Assert.AreEqual(expected, S3Store.MultipartETag(parts));
        Assert.IsNull(S3Store.MultipartETag([new(1, "\"not-an-md5\"")]), "SSE-KMS ETags are not MD5s: only the size can be compared");
    }
}

/// <summary>
/// Virtual time for the retry policy: a timer due sooner than <c>fireBelow</c> (a backoff) fires
/// at once and moves the clock on by its due time, so backoffs cost no real time but count
/// against the budget; longer ones (the per-request deadlines) never fire.
/// </summary>
internal sealed class SteppingClock(TimeSpan fireBelow) : TimeProvider
{
    private long _ticks;
    private readonly List<TimeSpan> _waits = [];

    public IReadOnlyList<TimeSpan> Waits
    {
        get { lock (_waits) return _waits.ToList(); }
    }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;
    public override long GetTimestamp() => Interlocked.Read(ref _ticks);
    public override DateTimeOffset GetUtcNow() => DateTimeOffset.UnixEpoch.AddTicks(GetTimestamp());

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        if (dueTime == Timeout.InfiniteTimeSpan || dueTime >= fireBelow) return new Silent();
        lock (_waits) _waits.Add(dueTime);
        Interlocked.Add(ref _ticks, dueTime.Ticks);
        ThreadPool.QueueUserWorkItem(_ => callback(state));
        return new Silent();
    }

    private sealed class Silent : ITimer
    {
        public bool Change(TimeSpan dueTime, TimeSpan period) => true;
        public void Dispose() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
