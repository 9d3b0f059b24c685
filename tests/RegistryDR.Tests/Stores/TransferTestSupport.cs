using System.Collections.Concurrent;
using System.Security.Cryptography;
using Amazon.S3;
using Amazon.S3.Model;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Stores;

/// <summary>Counts <see cref="IOperationEvents.StoreRetry"/> by operation.</summary>
internal sealed class RecordingEvents : IOperationEvents
{
    private readonly ConcurrentDictionary<string, int> _retries = new();

    public int Retries(string operation) => _retries.GetValueOrDefault(operation);
    public int TotalRetries => _retries.Values.Sum();
    public override string ToString() => string.Join(", ", _retries.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"));

    public void StoreRetry(string operation) => _retries.AddOrUpdate(operation, 1, (_, n) => n + 1);
    public void BackupStarted(string backupId) { }
    public void BackupSucceeded(BackupManifest manifest, TimeSpan duration) { }
    public void BackupFailed(string backupId, BackupFailureReason reason, TimeSpan duration) { }
    public void RestoreStarted(string backupId) { }
    public void RestoreFinished(string backupId, bool succeeded, TimeSpan duration) { }
    public void ScheduleMissed() { }
}

/// <summary>A read-only stream that cannot seek, like pg_dump's stdout: a retried part must come from the store's own buffer.</summary>
internal sealed class ForwardOnlyStream(byte[] data) : Stream
{
    private int _position;
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count)
    {
        // Small, uneven reads, so parts are assembled from many of them.
        var n = Math.Min(Math.Min(count, 300_001), data.Length - _position);
        Array.Copy(data, _position, buffer, offset, n);
        _position += n;
        return n;
    }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

internal static class TransferTestSupport
{
    public const int MiB = 1024 * 1024;

    public static async Task<(CephS3Server S3, string Bucket)> NewBucketAsync(string prefix)
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = prefix + "-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        return (s3, bucket);
    }

    /// <summary>Backoff of milliseconds instead of seconds, so a test with a dozen retries takes well under a second of waiting.</summary>
    public static void FastRetries(this StoreOptions options, TimeSpan? budget = null)
    {
        options.RetryBudget = budget ?? TimeSpan.FromSeconds(30);
        options.RetryBaseDelay = TimeSpan.FromMilliseconds(10);
        options.RetryMaxDelay = TimeSpan.FromMilliseconds(100);
    }

    /// <summary>An S3Store on <c>s3://bucket/prefix</c> that talks to the server through <paramref name="proxy"/>.</summary>
    public static S3Store StoreThrough(FaultProxy proxy, CephS3Server s3, string bucket, IOperationEvents events, Action<StoreOptions>? configure = null, string prefix = "p")
    {
        var options = new StoreOptions { Url = $"s3://{bucket}/{prefix}" };
        options.ConfigureFor(s3, partSizeMiB: 5);
        options.ServiceUrl = proxy.Endpoint;
        options.FastRetries();
        configure?.Invoke(options);
        return new S3Store(StoreLocation.Parse(options.Url), options, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey), events);
    }

    public static byte[] RandomBytes(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>The SHA-256 of an object as the server holds it, read directly (not through the proxy or the store).</summary>
    public static async Task<string> Sha256OfObjectAsync(CephS3Server s3, string bucket, string key)
    {
        using var client = s3.CreateClient();
        using var response = await client.GetObjectAsync(bucket, key);
        using var sha = SHA256.Create();
        return Convert.ToHexStringLower(await sha.ComputeHashAsync(response.ResponseStream));
    }

    public static async Task<bool> ObjectExistsAsync(CephS3Server s3, string bucket, string key)
    {
        using var client = s3.CreateClient();
        try
        {
            await client.GetObjectMetadataAsync(bucket, key);
            return true;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return false;
        }
    }

    public static async Task<string> ETagAsync(CephS3Server s3, string bucket, string key)
    {
        using var client = s3.CreateClient();
        return (await client.GetObjectMetadataAsync(bucket, key)).ETag;
    }

    /// <summary>Multipart uploads still open in the bucket (an aborted or completed one is not listed).</summary>
    public static async Task<IReadOnlyList<string>> OpenUploadsAsync(CephS3Server s3, string bucket)
    {
        using var client = s3.CreateClient();
        var response = await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = bucket });
        return (response.MultipartUploads ?? []).Select(u => $"{u.Key} ({u.UploadId})").ToList();
    }

    public static async Task PutDirectAsync(CephS3Server s3, string bucket, string key, byte[] data)
    {
        using var client = s3.CreateClient();
        await client.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = key, InputStream = new MemoryStream(data) });
    }
}
