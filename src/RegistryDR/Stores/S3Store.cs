using System.Buffers;
using System.Net;
using System.Runtime.CompilerServices;
using Amazon;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Stores.Internal;

namespace RegistryDR.Stores;

/// <summary>
/// A store in an S3 bucket (AWS, or an S3-compatible server such as Ceph RGW). Puts stream
/// through our own multipart upload: parts are filled from the source into pooled buffers and
/// uploaded a few at a time, so memory stays near PartSize × (Concurrency + 1) whatever the
/// artifact's size, and an upload that fails or is cancelled is aborted rather than left to
/// accrue storage. An object only becomes visible when CompleteMultipartUpload succeeds.
/// Every request is retried on throttling, server errors and broken connections within
/// <see cref="StoreOptions.RetryBudget"/> (<see cref="S3RetryPolicy"/>): a part from its own
/// buffer, since the source cannot be rewound. Downloads resume where their connection broke
/// (<see cref="ResumableReadStream"/>).
/// </summary>
public sealed class S3Store : IBackupStore, IDisposable
{
    private readonly IAmazonS3 _s3;
    private readonly StoreLocation _location;
    private readonly StoreOptions _options;
    private readonly int _partSize;
    private readonly PartBuffers _buffers;
    private readonly S3RetryPolicy _retry;

    /// <param name="events">Told about every retry (<see cref="IOperationEvents.StoreRetry"/>).</param>
    /// <param name="logger">Warned about every retry, with its error and backoff.</param>
    /// <param name="time">The clock of the retry budget, the backoff and the request deadlines.</param>
    public S3Store(StoreLocation location, StoreOptions options, AWSCredentials? credentials = null,
        IOperationEvents? events = null, ILogger? logger = null, TimeProvider? time = null)
    {
        if (location.Kind != StoreKind.S3) throw new ArgumentException("Not an s3:// location.", nameof(location));
        _location = location;
        _options = options;
        _partSize = options.PartSizeMiB * 1024 * 1024;
        // The store's own pool, not ArrayPool<byte>.Shared: the shared pool parks a returned
        // array in the returning thread's slot, and with uploads spread over many pool threads
        // it kept dozens of part buffers alive (the backup's RSS grew past 200 MiB); it also
        // rounds 5 MiB up to 8. This one holds buffers of exactly the part size, keeps a few
        // (uploads at once × parts in flight) and lets the rest be collected.
        _buffers = new PartBuffers(_partSize, keep: 4 * (options.Concurrency + 1));
        var config = CreateClientConfig(options);
        _s3 = credentials is null ? new AmazonS3Client(config) : new AmazonS3Client(credentials, config);
        // Failures name the server as well as the bucket: "S3 store s3://b/p (server http://10.0.0.5:7480)
        // could not be reached …" says which peer did not answer.
        _retry = new S3RetryPolicy(options, time ?? TimeProvider.System, events ?? NullOperationEvents.Instance,
            logger ?? NullLogger.Instance, $"{location} (server {ServerOf(options)})");
    }

    /// <summary>The endpoint requests go to, for messages: Store:ServiceUrl, or AWS's regional endpoint.</summary>
    internal static string ServerOf(StoreOptions options) =>
        !string.IsNullOrEmpty(options.ServiceUrl) ? options.ServiceUrl.TrimEnd('/')
        : !string.IsNullOrEmpty(options.Region) ? $"https://s3.{options.Region}.amazonaws.com"
        : "AWS S3 in the SDK's default region";

    internal static AmazonS3Config CreateClientConfig(StoreOptions options)
    {
        var config = new AmazonS3Config
        {
            ForcePathStyle = options.ForcePathStyle,
            // The SDK makes one attempt per call and S3RetryPolicy owns every retry. Left to the
            // SDK, retries would be invisible (no StoreRetry, no log line), bounded by a count
            // rather than by time (so Store:RetryBudget would not be real: its 2 retries with
            // their own backoff inside each of our attempts, and its retry quota failing calls
            // fast once many have failed), and would stack multiplicatively with ours. The
            // stale-connection retries (a reset on a pooled connection, up to 10, outside
            // MaxErrorRetry) are turned off for the same reason: a reset is ours to count.
            MaxErrorRetry = 0,
            MaxStaleConnectionRetries = 0,
            Timeout = options.RequestTimeout,
        };
        if (options.Checksums == S3ChecksumMode.WhenRequired)
        {
            config.RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED;
            config.ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED;
        }
        if (!string.IsNullOrEmpty(options.ServiceUrl))
        {
            config.ServiceURL = options.ServiceUrl;
            config.AuthenticationRegion = options.Region ?? "us-east-1";
        }
        else if (!string.IsNullOrEmpty(options.Region))
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(options.Region);
        }
        return config;
    }

    public string Description => _location.ToString();

    private string FullKey(string key)
    {
        StoreKeys.Validate(key);
        return _location.Prefix.Length == 0 ? key : _location.Prefix + "/" + key;
    }

    private string RelativeKey(string fullKey) =>
        _location.Prefix.Length == 0 ? fullKey : fullKey[(_location.Prefix.Length + 1)..];

    public async Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken)
    {
        var fullKey = FullKey(key);
        var first = _buffers.Rent(_partSize);
        try
        {
            var firstLength = await FillAsync(content, first, _partSize, cancellationToken);
            if (firstLength < _partSize)
            {
                // Small artifacts (manifest, roles, small config trees) go in one request, which
                // is idempotent: a retry after a lost answer writes the same bytes again.
                await _retry.RunAsync("put", $"the upload of '{fullKey}'", ct =>
                {
                    var request = new PutObjectRequest
                    {
                        BucketName = _location.Bucket,
                        Key = fullKey,
                        InputStream = new MemoryStream(first, 0, firstLength, writable: false),
                        AutoCloseStream = true,
                    };
                    ApplyEncryption(request);
                    return _s3.PutObjectAsync(request, ct);
                }, cancellationToken);
                return firstLength;
            }
            return await MultipartAsync(fullKey, content, first, cancellationToken);
        }
        finally
        {
            _buffers.Return(first);
        }
    }

    private async Task<long> MultipartAsync(string fullKey, Stream content, byte[] firstPart, CancellationToken cancellationToken)
    {
        // A retried initiate whose first answer was lost leaves an empty upload behind; the
        // bucket's lifecycle rule for incomplete multipart uploads removes it.
        var uploadId = (await _retry.RunAsync("initiate", $"starting the upload of '{fullKey}'", ct =>
        {
            var initiate = new InitiateMultipartUploadRequest { BucketName = _location.Bucket, Key = fullKey };
            if (_options.ServerSideEncryption == ServerSideEncryptionMode.S3) initiate.ServerSideEncryptionMethod = ServerSideEncryptionMethod.AES256;
            else if (_options.ServerSideEncryption == ServerSideEncryptionMode.Kms)
            {
                initiate.ServerSideEncryptionMethod = ServerSideEncryptionMethod.AWSKMS;
                if (!string.IsNullOrEmpty(_options.KmsKeyId)) initiate.ServerSideEncryptionKeyManagementServiceKeyId = _options.KmsKeyId;
            }
            return _s3.InitiateMultipartUploadAsync(initiate, ct);
        }, cancellationToken)).UploadId;

        using var failFast = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var etags = new List<PartETag>();
        var inFlight = new List<Task>();
        using var slots = new SemaphoreSlim(_options.Concurrency);
        long total = 0;
        var completeSent = false;
        try
        {
            var partNumber = 0;
            byte[]? buffer = firstPart;
            var length = _partSize;
            var ownsBuffer = false;
            while (true)
            {
                partNumber++;
                total += length;
                await slots.WaitAsync(failFast.Token);
                var number = partNumber;
                var data = buffer!;
                var size = length;
                var release = ownsBuffer;
                inFlight.Add(Task.Run(async () =>
                {
                    try
                    {
                        // The buffer stays ours until the part is stored, so every retry re-sends
                        // exactly these bytes: the source stream has moved on and cannot rewind.
                        var response = await _retry.RunAsync("part", $"part {number} of '{fullKey}'", ct => _s3.UploadPartAsync(new UploadPartRequest
                        {
                            BucketName = _location.Bucket,
                            Key = fullKey,
                            UploadId = uploadId,
                            PartNumber = number,
                            PartSize = size,
                            InputStream = new MemoryStream(data, 0, size, writable: false),
                        }, ct), failFast.Token);
                        lock (etags) etags.Add(new PartETag(number, response.ETag));
                    }
                    catch
                    {
                        failFast.Cancel();
                        throw;
                    }
                    finally
                    {
                        if (release) _buffers.Return(data);
                        slots.Release();
                    }
                }, CancellationToken.None));
                inFlight.RemoveAll(t => t.IsCompletedSuccessfully);

                // The first buffer belongs to the caller; every later one is rented here and returned by its upload.
                buffer = _buffers.Rent(_partSize);
                ownsBuffer = true;
                length = await FillAsync(content, buffer, _partSize, failFast.Token);
                if (length == 0)
                {
                    _buffers.Return(buffer);
                    break;
                }
                if (partNumber >= 10_000)
                    throw new InvalidOperationException($"'{fullKey}' needs more than 10,000 parts; raise Store:PartSizeMiB.");
            }
            await Task.WhenAll(inFlight);
            etags.Sort((a, b) => a.PartNumber!.Value.CompareTo(b.PartNumber!.Value));
            completeSent = true;
            await CompleteAsync(fullKey, uploadId, etags, total, cancellationToken);
            return total;
        }
        catch (Exception ex)
        {
            failFast.Cancel();
            try { await Task.WhenAll(inFlight); } catch { /* the first failure is the one to report */ }
            await AbortQuietlyAsync(fullKey, uploadId);
            // A completion whose answer was lost may have gone through after all (the abort then
            // finds nothing to abort). Then the object is whole and ours, and the put succeeded.
            if (completeSent && await IsCompletedUploadQuietlyAsync(fullKey, etags, total))
                return total;
            // A part failure cancels its siblings; report the part's own error, not their cancellation.
            var root = inFlight.Where(t => t.IsFaulted).Select(t => t.Exception!.GetBaseException()).FirstOrDefault();
            if (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested && root is not null)
                throw root;
            throw;
        }
    }

    /// <summary>
    /// Completes the upload, retrying like any request. CompleteMultipartUpload is not idempotent:
    /// when an attempt went through but its answer was lost, the retry finds no such upload. The
    /// object at the key then tells whether it was ours that completed.
    /// </summary>
    private async Task CompleteAsync(string fullKey, string uploadId, List<PartETag> etags, long total, CancellationToken cancellationToken)
    {
        var attempts = 0;
        await _retry.RunAsync("complete", $"completing the upload of '{fullKey}'", async ct =>
        {
            attempts++;
            try
            {
                return await _s3.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
                {
                    BucketName = _location.Bucket,
                    Key = fullKey,
                    UploadId = uploadId,
                    PartETags = etags,
                }, ct);
            }
            catch (AmazonS3Exception ex) when (attempts > 1 && ex.ErrorCode == "NoSuchUpload")
            {
                if (await IsCompletedUploadAsync(fullKey, etags, total, ct)) return null;
                throw;
            }
        }, cancellationToken);
    }

    /// <summary>
    /// Whether the object at the key is the one this upload's parts make: the right size and,
    /// when the parts' ETags are MD5s (no SSE-KMS), the multipart ETag S3 computes from them —
    /// the MD5 of the parts' MD5s, a dash and the number of parts. Keys are unique to a backup
    /// set, so nothing else writes this key meanwhile.
    /// </summary>
    private async Task<bool> IsCompletedUploadAsync(string fullKey, List<PartETag> etags, long total, CancellationToken cancellationToken)
    {
        GetObjectMetadataResponse head;
        try
        {
            head = await _s3.GetObjectMetadataAsync(_location.Bucket, fullKey, cancellationToken);
        }
        catch (AmazonS3Exception ex) when (ex.StatusCode == HttpStatusCode.NotFound)
        {
            return false;
        }
        if (head.ContentLength != total) return false;
        var expected = MultipartETag(etags);
        return expected is null || string.Equals(head.ETag?.Trim('"'), expected, StringComparison.OrdinalIgnoreCase);
    }

    private async Task<bool> IsCompletedUploadQuietlyAsync(string fullKey, List<PartETag> etags, long total)
    {
        try
        {
            using var cts = new CancellationTokenSource(_options.RequestTimeout, _retry.Time);
            return await IsCompletedUploadAsync(fullKey, etags, total, cts.Token);
        }
        catch (Exception)
        {
            return false; // unknown counts as not stored; the caller deletes the key on failure anyway
        }
    }

    internal static string? MultipartETag(IReadOnlyList<PartETag> etags)
    {
        var md5s = new byte[etags.Count * 16];
        for (var i = 0; i < etags.Count; i++)
        {
            var hex = etags[i].ETag?.Trim('"');
            if (hex is not { Length: 32 } || !hex.All(char.IsAsciiHexDigit)) return null;
            Convert.FromHexString(hex).CopyTo(md5s, i * 16);
        }
        return Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(md5s)) + "-" + etags.Count;
    }

    /// <summary>
    /// Aborts a failed upload so its parts stop accruing storage. Retried like any request, but
    /// within at most 30 s: the put has already failed, and its error should not wait for a
    /// second full budget. The bucket's lifecycle rule for incomplete uploads is the backstop.
    /// </summary>
    private async Task AbortQuietlyAsync(string fullKey, string uploadId)
    {
        var budget = _options.RetryBudget < AbortBudget ? _options.RetryBudget : AbortBudget;
        try
        {
            // Not the caller's token: a cancelled backup must still clean up after itself.
            using var cts = new CancellationTokenSource(AbortBudget + _options.RequestTimeout, _retry.Time);
            await _retry.RunAsync("abort", $"aborting the upload of '{fullKey}'", ct =>
                _s3.AbortMultipartUploadAsync(new AbortMultipartUploadRequest { BucketName = _location.Bucket, Key = fullKey, UploadId = uploadId }, ct),
                cts.Token, budget);
        }
        catch (Exception)
        {
            // NoSuchUpload (a completion went through after all), or S3 is still unreachable.
        }
    }

    private static readonly TimeSpan AbortBudget = TimeSpan.FromSeconds(30);

    private static async Task<int> FillAsync(Stream source, byte[] buffer, int count, CancellationToken cancellationToken)
    {
        var filled = 0;
        while (filled < count)
        {
            var n = await source.ReadAsync(buffer.AsMemory(filled, count - filled), cancellationToken);
            if (n == 0) break;
            filled += n;
        }
        return filled;
    }

    private void ApplyEncryption(PutObjectRequest request)
    {
        switch (_options.ServerSideEncryption)
        {
            case ServerSideEncryptionMode.S3:
                request.ServerSideEncryptionMethod = ServerSideEncryptionMethod.AES256;
                break;
            case ServerSideEncryptionMode.Kms:
                request.ServerSideEncryptionMethod = ServerSideEncryptionMethod.AWSKMS;
                if (!string.IsNullOrEmpty(_options.KmsKeyId)) request.ServerSideEncryptionKeyManagementServiceKeyId = _options.KmsKeyId;
                break;
        }
    }

    public async Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken)
    {
        var fullKey = FullKey(key);
        GetObjectResponse response;
        try
        {
            response = await _retry.RunAsync("get", $"reading '{fullKey}'",
                ct => _s3.GetObjectAsync(new GetObjectRequest { BucketName = _location.Bucket, Key = fullKey }, ct), cancellationToken);
        }
        catch (StoreUnavailableException ex) when (ex.InnerException is AmazonS3Exception { StatusCode: HttpStatusCode.NotFound })
        {
            throw new StoreObjectNotFoundException(key, Description);
        }
        return new ResumableReadStream(response, (offset, etag, ct) => _s3.GetObjectAsync(new GetObjectRequest
        {
            BucketName = _location.Bucket,
            Key = fullKey,
            ByteRange = new ByteRange($"bytes={offset}-"),
            EtagToMatch = etag,
        }, ct), _retry, fullKey, Description);
    }

    public async IAsyncEnumerable<StoreItem> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var fullPrefix = _location.Prefix.Length == 0 ? prefix : _location.Prefix + "/" + prefix;
        string? continuation = null;
        while (true)
        {
            var response = await _retry.RunAsync("list", $"listing '{fullPrefix}'", ct => _s3.ListObjectsV2Async(
                new ListObjectsV2Request { BucketName = _location.Bucket, Prefix = fullPrefix, ContinuationToken = continuation }, ct), cancellationToken);
            foreach (var o in response.S3Objects ?? [])
                yield return new StoreItem(RelativeKey(o.Key), o.Size ?? 0, o.LastModified is { } lm ? new DateTimeOffset(lm.ToUniversalTime()) : DateTimeOffset.MinValue);
            if (response.IsTruncated != true) yield break;
            continuation = response.NextContinuationToken;
        }
    }

    /// <summary>
    /// A put with <c>If-None-Match: *</c>: S3 (since 2024) and Ceph RGW in an unversioned bucket refuse
    /// it with 412 when the key exists, so exactly one of two racing nodes wins. Servers that ignore
    /// the header (Ceph RGW on a versioned bucket, older MinIO) make it last-writer-wins: see
    /// docs/architecture.md, "Fencing".
    /// </summary>
    public async Task<bool> TryCreateAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        var fullKey = FullKey(key);
        var bytes = content.ToArray();
        try
        {
            await _retry.RunAsync("put", $"creating '{fullKey}'", ct =>
            {
                var request = new PutObjectRequest { BucketName = _location.Bucket, Key = fullKey, InputStream = new MemoryStream(bytes, writable: false), IfNoneMatch = "*" };
                ApplyEncryption(request);
                return _s3.PutObjectAsync(request, ct);
            }, cancellationToken);
            return true;
        }
        catch (Exception ex) when (ConditionFailed(ex))
        {
            // A retry after a lost answer meets the object its first attempt created: if the
            // bytes there are ours, this node won; otherwise another node did.
            try
            {
                await using var existing = await OpenReadAsync(key, cancellationToken);
                using var buffer = new MemoryStream();
                await existing.CopyToAsync(buffer, cancellationToken);
                return buffer.ToArray().AsSpan().SequenceEqual(bytes);
            }
            catch (StoreObjectNotFoundException)
            {
                return false;
            }
        }
    }

    public bool CreateIsAtomic => true;

    private static bool ConditionFailed(Exception ex) =>
        (ex as AmazonS3Exception ?? ex.InnerException as AmazonS3Exception) is { } s3 &&
        (s3.StatusCode is HttpStatusCode.PreconditionFailed || s3.ErrorCode is "PreconditionFailed" or "ConditionalRequestConflict");

    /// <summary>
    /// The multipart uploads under the prefix that were neither completed nor aborted
    /// (ListMultipartUploads): what a killed put leaves, accruing storage for its parts until
    /// aborted. The bucket's lifecycle rule for incomplete uploads is the backstop.
    /// </summary>
    public async IAsyncEnumerable<StoreTemporary> ListTemporariesAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var fullPrefix = _location.Prefix.Length == 0 ? prefix : _location.Prefix + "/" + prefix;
        string? keyMarker = null, uploadIdMarker = null;
        while (true)
        {
            var response = await _retry.RunAsync("list", $"listing the open uploads under '{fullPrefix}'", ct => _s3.ListMultipartUploadsAsync(
                new ListMultipartUploadsRequest { BucketName = _location.Bucket, Prefix = fullPrefix, KeyMarker = keyMarker, UploadIdMarker = uploadIdMarker }, ct), cancellationToken);
            foreach (var upload in response.MultipartUploads ?? [])
                yield return new StoreTemporary(RelativeKey(upload.Key), upload.UploadId, null,
                    upload.Initiated is { } started ? new DateTimeOffset(started.ToUniversalTime()) : DateTimeOffset.MinValue);
            if (response.IsTruncated != true) yield break;
            keyMarker = response.NextKeyMarker;
            uploadIdMarker = response.NextUploadIdMarker;
        }
    }

    /// <summary>Aborts the upload (AbortMultipartUpload); one already completed or aborted (NoSuchUpload) is fine.</summary>
    public async Task DeleteTemporaryAsync(StoreTemporary temporary, CancellationToken cancellationToken)
    {
        var fullKey = FullKey(temporary.Key);
        try
        {
            await _retry.RunAsync("abort", $"aborting the upload of '{fullKey}'", ct =>
                _s3.AbortMultipartUploadAsync(new AbortMultipartUploadRequest { BucketName = _location.Bucket, Key = fullKey, UploadId = temporary.Id }, ct), cancellationToken);
        }
        catch (StoreUnavailableException ex) when (ex.InnerException is AmazonS3Exception { ErrorCode: "NoSuchUpload" })
        {
        }
    }

    public async Task DeleteAsync(string key, CancellationToken cancellationToken)
    {
        var fullKey = FullKey(key);
        await _retry.RunAsync("delete", $"deleting '{fullKey}'", ct => _s3.DeleteObjectAsync(_location.Bucket, fullKey, ct), cancellationToken);
    }

    /// <summary>
    /// Proves the bucket and prefix can be listed and written: lists, puts an empty probe object
    /// (with the configured encryption, so a bucket policy that demands another is caught too)
    /// and deletes it.
    /// </summary>
    public async Task CheckAccessAsync(CancellationToken cancellationToken)
    {
        await _retry.RunAsync("list", $"listing '{_location.Prefix}'", ct => _s3.ListObjectsV2Async(
            new ListObjectsV2Request { BucketName = _location.Bucket, Prefix = _location.Prefix, MaxKeys = 1 }, ct), cancellationToken);
        var probe = FullKey(".registry-dr-probe-" + Guid.NewGuid().ToString("N"));
        await _retry.RunAsync("put", $"writing the probe object '{probe}'", ct =>
        {
            var request = new PutObjectRequest { BucketName = _location.Bucket, Key = probe, InputStream = new MemoryStream([], writable: false) };
            ApplyEncryption(request);
            return _s3.PutObjectAsync(request, ct);
        }, cancellationToken);
        await _retry.RunAsync("delete", $"deleting the probe object '{probe}'", ct => _s3.DeleteObjectAsync(_location.Bucket, probe, ct), cancellationToken);
    }

    public void Dispose() => _s3.Dispose();
}

/// <summary>Part buffers of exactly one size; at most <c>keep</c> are held for reuse.</summary>
internal sealed class PartBuffers(int size, int keep)
{
    private readonly System.Collections.Concurrent.ConcurrentBag<byte[]> _free = [];

    public byte[] Rent(int length)
    {
        if (length > size) throw new ArgumentOutOfRangeException(nameof(length));
        return _free.TryTake(out var buffer) ? buffer : new byte[size];
    }

    public void Return(byte[] buffer)
    {
        if (buffer.Length == size && _free.Count < keep) _free.Add(buffer);
    }
}
