using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using static RegistryDR.Tests.Stores.TransferTestSupport;

namespace RegistryDR.Tests.Stores;

/// <summary>
/// Puts through a proxy that throttles, fails and drops connections: what can be retried is,
/// from the store's own buffers, and what cannot be saved leaves nothing behind.
/// </summary>
[TestClass]
public sealed class TransferUploadTests
{
    private static bool IsPart(ProxiedRequest r, int number) => r.Kind == "UploadPart" && r.QueryValue("partNumber") == number.ToString();

    [TestMethod]
    public async Task MultipartPut_WithTwoSlowDownsAndAReset_StoresExactlyTheSourceBytes()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-put");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);
        var source = RandomBytes(22 * MiB + 12345, seed: 1); // five parts of 5 MiB, the last one short
        var rules = new[]
        {
            proxy.Inject(r => IsPart(r, 2), Fault.SlowDown),
            proxy.Inject(r => IsPart(r, 3), Fault.SlowDown),
            proxy.Inject(r => IsPart(r, 4), Fault.Reset),
        };

        var written = await store.PutAsync("set/database.dump", new ForwardOnlyStream(source), CancellationToken.None);

        Assert.AreEqual(source.Length, written);
        Assert.AreEqual(Sha256(source), await Sha256OfObjectAsync(s3, bucket, "p/set/database.dump"), "the stored object differs from the source");
        foreach (var rule in rules) Assert.AreEqual(1, rule.Fired, $"fault {rule.Fault} was not injected");
        Assert.AreEqual(3, events.Retries("part"), events.ToString());
        Assert.AreEqual(5 + 3, proxy.Count("UploadPart"), "each failed part is sent once more, and only it");
        Assert.AreEqual(1, proxy.Count("CompleteMultipartUpload"));
        Assert.IsEmpty(await OpenUploadsAsync(s3, bucket));
    }

    [TestMethod]
    public async Task SmallPut_AfterSlowDownAndReset_IsStored()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-small");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);
        proxy.Inject(r => r.Kind == "PutObject", Fault.SlowDown);
        proxy.Inject(r => r.Kind == "PutObject", Fault.Reset, skip: 1);
        var source = RandomBytes(100_000, seed: 2);

        Assert.AreEqual(source.Length, await store.PutAsync("set/manifest.json", new MemoryStream(source), CancellationToken.None));

        Assert.AreEqual(Sha256(source), await Sha256OfObjectAsync(s3, bucket, "p/set/manifest.json"));
        Assert.AreEqual(2, events.Retries("put"), events.ToString());
        Assert.AreEqual(3, proxy.Count("PutObject"));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)] // a bound for a budget that would not stop the retries
    public async Task Put_FailingBeyondTheBudget_FailsSayingWhatAndHowLong_AndLeavesNoUploadAndNoObject()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-budget");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events, o => o.FastRetries(TimeSpan.FromSeconds(1)));
        var slowDown = proxy.Inject(r => IsPart(r, 2), Fault.SlowDown, times: int.MaxValue);
        var source = RandomBytes(12 * MiB, seed: 3);

        var failure = await Assert.ThrowsExactlyAsync<StoreUnavailableException>(() =>
            store.PutAsync("set/database.dump", new ForwardOnlyStream(source), CancellationToken.None));

        StringAssert.Contains(failure.Message, "part 2 of 'p/set/database.dump'");
        StringAssert.Contains(failure.Message, $"s3://{bucket}/p");
        StringAssert.Contains(failure.Message, "SlowDown (HTTP 503)");
        StringAssert.Matches(failure.Message, new System.Text.RegularExpressions.Regex(@"\d+ attempts over [\d.]+ s \(Store:RetryBudget 1\.0 s\)"));
        Assert.IsGreaterThanOrEqualTo(3, slowDown.Fired);
        Assert.AreEqual(slowDown.Fired - 1, events.Retries("part"), events.ToString());
        // The budget, not a wall clock, bounds the operation: the message reports the budget the retries ran under.
        Assert.IsGreaterThanOrEqualTo(1, proxy.Count("AbortMultipartUpload"));
        Assert.AreEqual(0, proxy.Count("CompleteMultipartUpload"));
        Assert.IsEmpty(await OpenUploadsAsync(s3, bucket), "the failed upload was not aborted");
        Assert.IsFalse(await ObjectExistsAsync(s3, bucket, "p/set/database.dump"));
    }

    [TestMethod]
    public async Task Complete_FailingEveryTime_LeavesNoUploadAndNoObject()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-complete");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events, o => o.FastRetries(TimeSpan.FromSeconds(1)));
        proxy.Inject(r => r.Kind == "CompleteMultipartUpload", Fault.InternalError, times: int.MaxValue);

        var failure = await Assert.ThrowsExactlyAsync<StoreUnavailableException>(() =>
            store.PutAsync("set/database.dump", new ForwardOnlyStream(RandomBytes(11 * MiB, seed: 4)), CancellationToken.None));

        StringAssert.Contains(failure.Message, "completing the upload of 'p/set/database.dump'");
        StringAssert.Contains(failure.Message, "InternalError (HTTP 500)");
        Assert.IsGreaterThanOrEqualTo(1, events.Retries("complete"));
        Assert.IsEmpty(await OpenUploadsAsync(s3, bucket));
        Assert.IsFalse(await ObjectExistsAsync(s3, bucket, "p/set/database.dump"));
    }

    [TestMethod]
    public async Task Complete_WhoseAnswerIsLost_IsRecognisedAsDone()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-lost");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);
        var lost = proxy.Inject(r => r.Kind == "CompleteMultipartUpload", Fault.ResetAfterForwarding);
        var source = RandomBytes(11 * MiB, seed: 5);

        Assert.AreEqual(source.Length, await store.PutAsync("set/database.dump", new ForwardOnlyStream(source), CancellationToken.None));

        Assert.AreEqual(1, lost.Fired);
        Assert.AreEqual(200, proxy.Requests.First(r => r.Kind == "CompleteMultipartUpload").Status, "the server did complete the first time");
        Assert.AreEqual(Sha256(source), await Sha256OfObjectAsync(s3, bucket, "p/set/database.dump"));
        Assert.AreEqual(1, events.Retries("complete"), events.ToString());
        Assert.IsEmpty(await OpenUploadsAsync(s3, bucket));
    }

    [TestMethod]
    public async Task Complete_WhoseAnswerIsLost_AndWhoseRetryFindsNoUpload_IsRecognisedAsDoneByTheObject()
    {
        // AWS may answer a repeated completion with NoSuchUpload (Ceph answers 200 again): the
        // object at the key, with the size and multipart ETag of our parts, shows it was ours.
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-nsu");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);
        proxy.Inject(r => r.Kind == "CompleteMultipartUpload", Fault.ResetAfterForwarding);
        proxy.Inject(r => r.Kind == "CompleteMultipartUpload", NoSuchUpload, skip: 1);
        var source = RandomBytes(11 * MiB, seed: 6);

        Assert.AreEqual(source.Length, await store.PutAsync("set/database.dump", new ForwardOnlyStream(source), CancellationToken.None));

        Assert.AreEqual(Sha256(source), await Sha256OfObjectAsync(s3, bucket, "p/set/database.dump"));
        Assert.AreEqual(1, proxy.Count("HeadObject"));
        Assert.AreEqual(0, proxy.Count("AbortMultipartUpload"));
    }

    [TestMethod]
    public async Task Complete_WhoseRetryFindsNoUpload_WithoutAnObject_Fails()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-nsu-fail");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);
        proxy.Inject(r => r.Kind == "CompleteMultipartUpload", Fault.SlowDown); // never reached the server
        proxy.Inject(r => r.Kind == "CompleteMultipartUpload", NoSuchUpload, skip: 1);

        var failure = await Assert.ThrowsExactlyAsync<StoreUnavailableException>(() =>
            store.PutAsync("set/database.dump", new ForwardOnlyStream(RandomBytes(11 * MiB, seed: 7)), CancellationToken.None));

        StringAssert.Contains(failure.Message, "NoSuchUpload (HTTP 404)");
        Assert.IsEmpty(await OpenUploadsAsync(s3, bucket));
        Assert.IsFalse(await ObjectExistsAsync(s3, bucket, "p/set/database.dump"));
    }

    private static readonly Fault NoSuchUpload = Fault.Error(404, "NoSuchUpload", "The specified upload does not exist.");

    [TestMethod]
    public async Task ListAndDelete_AreRetriedToo()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-list");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);
        await PutDirectAsync(s3, bucket, "p/set/a", [1, 2, 3]);
        proxy.Inject(r => r.Kind == "ListObjects", Fault.InternalError);
        proxy.Inject(r => r.Kind == "ListObjects", Fault.Error(502, "BadGateway", "Bad gateway."), skip: 1);
        proxy.Inject(r => r.Kind == "DeleteObject", Fault.Reset);
        proxy.Inject(r => r.Kind == "DeleteObject", Fault.Error(429, "TooManyRequests", "Slow down."), skip: 1);

        var items = new List<StoreItem>();
        await foreach (var item in store.ListAsync("set/", CancellationToken.None)) items.Add(item);
        Assert.AreEqual("set/a", items.Single().Key);
        await store.DeleteAsync("set/a", CancellationToken.None);

        Assert.IsFalse(await ObjectExistsAsync(s3, bucket, "p/set/a"));
        Assert.AreEqual(2, events.Retries("list"), events.ToString());
        Assert.AreEqual(2, events.Retries("delete"), events.ToString());
    }

    [TestMethod]
    public async Task RefusedConnection_IsNotRetried_SoAWrongEndpointFailsAtOnce()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-refused");
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var events = new RecordingEvents();
        var options = new RegistryDR.Configuration.StoreOptions { Url = $"s3://{bucket}/p" }; // the default five-minute budget
        options.ConfigureFor(s3);
        options.ServiceUrl = $"http://127.0.0.1:{port}";
        using var store = new S3Store(StoreLocation.Parse(options.Url), options, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey), events);

        var failure = await Assert.ThrowsExactlyAsync<StoreUnavailableException>(() => store.CheckAccessAsync(CancellationToken.None));

        // Refused at once: no retry was spent on it (so the five-minute budget never ran).
        StringAssert.Contains(failure.Message, "could not be reached");
        Assert.AreEqual(0, events.TotalRetries);
    }
}
