using System.Diagnostics;
using System.Security.Cryptography;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using static RegistryDR.Tests.Stores.TransferTestSupport;

namespace RegistryDR.Tests.Stores;

/// <summary>
/// Downloads whose connection breaks part-way continue from where they broke, with the same
/// object's bytes, or stop clearly: never a restart from zero, never two objects spliced.
/// </summary>
[TestClass]
public sealed class TransferDownloadTests
{
    private static async Task<string> ReadAllSha256Async(Stream stream)
    {
        using var sha = SHA256.Create();
        var buffer = new byte[1 << 20];
        int n;
        while ((n = await stream.ReadAsync(buffer)) > 0) sha.TransformBlock(buffer, 0, n, null, 0);
        sha.TransformFinalBlock([], 0, 0);
        return Convert.ToHexStringLower(sha.Hash!);
    }

    [TestMethod]
    public async Task LargeDownload_CutTwice_ResumesAndYieldsExactlyTheObject()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-get");
        var data = RandomBytes(30 * MiB, seed: 10);
        await PutDirectAsync(s3, bucket, "p/set/database.dump", data);
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);
        bool IsDump(ProxiedRequest r) => r.Kind == "GetObject" && r.Key == "p/set/database.dump";
        // 1: throttled; 2: cut cleanly at 8 MiB (short of Content-Length); 3: the resume is reset;
        // 4: the resume is cut with a reset 10 MiB further on; 5: the rest.
        var rules = new[]
        {
            proxy.Inject(IsDump, Fault.SlowDown),
            proxy.Inject(IsDump, Fault.CutBody(8 * MiB), skip: 1),
            proxy.Inject(IsDump, Fault.Reset, skip: 2),
            proxy.Inject(IsDump, Fault.CutBody(10 * MiB, reset: true), skip: 3),
        };

        await using (var stream = await store.OpenReadAsync("set/database.dump", CancellationToken.None))
            Assert.AreEqual(Sha256(data), await ReadAllSha256Async(stream), "the resumed download differs from the object");

        foreach (var rule in rules) Assert.AreEqual(1, rule.Fired, $"fault {rule.Fault} was not injected");
        var gets = proxy.Requests.Where(IsDump).ToList();
        Assert.HasCount(5, gets, string.Join("\n", gets));
        Assert.AreEqual(4, events.Retries("get"), events.ToString());
        // Resumed, not restarted: every re-open asks for the rest only, of the same object. A clean
        // cut delivers every byte before it, so the resume starts exactly there; a reset may drop
        // what was still in the proxy's send buffer, so that resume starts somewhere past 8 MiB.
        Assert.IsFalse(gets[1].Headers.ContainsKey("If-Match"));
        var etag = await ETagAsync(s3, bucket, "p/set/database.dump");
        foreach (var resume in gets.Skip(2)) Assert.AreEqual(etag, resume.Headers["If-Match"]);
        Assert.AreEqual($"bytes={8 * MiB}-", gets[2].Headers["Range"]);
        Assert.AreEqual($"bytes={8 * MiB}-", gets[3].Headers["Range"], "the reset resume delivered nothing, so the next one asks for the same range");
        var lastStart = long.Parse(gets[4].Headers["Range"]["bytes=".Length..^1]);
        Assert.IsTrue(lastStart > 8 * MiB && lastStart <= 18 * MiB, gets[4].Headers["Range"]);
        // A restart would have sent the first 8 MiB again, at least.
        var sent = gets.Sum(r => r.ResponseBytes);
        Assert.IsLessThan(data.Length + 8L * MiB, sent, $"{sent} bytes were sent for a {data.Length}-byte object: that is a restart");
    }

    [TestMethod]
    public async Task ObjectReplacedBetweenCutAndResume_IsRefused_NotSpliced()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-replaced");
        await PutDirectAsync(s3, bucket, "p/set/database.dump", RandomBytes(12 * MiB, seed: 11));
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);
        proxy.Inject(r => r.Kind == "GetObject", Fault.CutBody(4 * MiB));

        await using var stream = await store.OpenReadAsync("set/database.dump", CancellationToken.None);
        var head = new byte[1 * MiB];
        await stream.ReadExactlyAsync(head);
        // Someone writes the key anew (same size, other bytes) while the first connection dies at 4 MiB.
        await PutDirectAsync(s3, bucket, "p/set/database.dump", RandomBytes(12 * MiB, seed: 12));

        var failure = await Assert.ThrowsExactlyAsync<StoreObjectChangedException>(() => stream.CopyToAsync(Stream.Null));

        StringAssert.Contains(failure.Message, "'p/set/database.dump'");
        StringAssert.Contains(failure.Message, "was replaced while it was being read");
        var resume = proxy.Requests.Where(r => r.Kind == "GetObject").Last();
        Assert.AreEqual(412, resume.Status, "the resume must be conditional on the first ETag, so no byte of the new object is sent");
    }

    [TestMethod]
    public async Task StalledBody_IsResumedAfterTheRequestTimeout()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-stall");
        var data = RandomBytes(6 * MiB, seed: 13);
        await PutDirectAsync(s3, bucket, "p/set/config.tar.gz", data);
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events, o => o.RequestTimeout = TimeSpan.FromSeconds(1));
        var stall = proxy.Inject(r => r.Kind == "GetObject", Fault.Stall(2 * MiB));

        // A stalled body is abandoned after Store:RequestTimeout and resumed (one retry); a read that
        // waited on the stall would hang: the bounded token fails the test instead of a threshold.
        using var bound = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await using (var stream = await store.OpenReadAsync("set/config.tar.gz", bound.Token))
            Assert.AreEqual(Sha256(data), await ReadAllSha256Async(stream));

        Assert.AreEqual(1, stall.Fired);
        Assert.AreEqual(1, events.Retries("get"), events.ToString());
    }

    [TestMethod]
    public async Task MissingObject_IsNotFound_WithoutRetrying()
    {
        var (s3, bucket) = await NewBucketAsync("rdr-xfer-missing");
        await using var proxy = FaultProxy.Start(s3.Endpoint);
        var events = new RecordingEvents();
        using var store = StoreThrough(proxy, s3, bucket, events);

        await Assert.ThrowsExactlyAsync<StoreObjectNotFoundException>(() => store.OpenReadAsync("set/nothing", CancellationToken.None));
        Assert.AreEqual(0, events.TotalRetries);
        Assert.AreEqual(1, proxy.Count("GetObject"));
    }
}
