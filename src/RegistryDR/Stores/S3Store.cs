using System.Buffers;
using System.Net;
using System.Runtime.CompilerServices;
using Amazon;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using RegistryDR.Configuration;

namespace RegistryDR.Stores;

/// <summary>
/// A store in an S3 bucket (AWS, or an S3-compatible server such as Ceph RGW). Puts stream
/// through our own multipart upload: parts are filled from the source into pooled buffers and
/// uploaded a few at a time, so memory stays near PartSize × (Concurrency + 1) whatever the
/// artifact's size, and an upload that fails or is cancelled is aborted rather than left to
/// accrue storage. An object only becomes visible when CompleteMultipartUpload succeeds.
/// </summary>
public sealed class S3Store : IBackupStore, IDisposable
{
    private readonly IAmazonS3 _s3;
    private readonly StoreLocation _location;
    private readonly StoreOptions _options;
    private readonly int _partSize;

    public S3Store(StoreLocation location, StoreOptions options, AWSCredentials? credentials = null)
    {
        if (location.Kind != StoreKind.S3) throw new ArgumentException("Not an s3:// location.", nameof(location));
        _location = location;
        _options = options;
        _partSize = options.PartSizeMiB * 1024 * 1024;
        var config = CreateClientConfig(options);
        _s3 = credentials is null ? new AmazonS3Client(config) : new AmazonS3Client(credentials, config);
    }

    internal static AmazonS3Config CreateClientConfig(StoreOptions options)
    {
        var config = new AmazonS3Config
        {
            ForcePathStyle = options.ForcePathStyle,
            MaxErrorRetry = 4,
            Timeout = TimeSpan.FromMinutes(5),
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
        var first = ArrayPool<byte>.Shared.Rent(_partSize);
        try
        {
            var firstLength = await FillAsync(content, first, _partSize, cancellationToken);
            if (firstLength < _partSize)
            {
                // Small artifacts (manifest, roles, small config trees) go in one request.
                var request = new PutObjectRequest
                {
                    BucketName = _location.Bucket,
                    Key = fullKey,
                    InputStream = new MemoryStream(first, 0, firstLength, writable: false),
                    AutoCloseStream = true,
                };
                ApplyEncryption(request);
                await Call(() => _s3.PutObjectAsync(request, cancellationToken), fullKey);
                return firstLength;
            }
            return await MultipartAsync(fullKey, content, first, cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(first);
        }
    }

    private async Task<long> MultipartAsync(string fullKey, Stream content, byte[] firstPart, CancellationToken cancellationToken)
    {
        var initiate = new InitiateMultipartUploadRequest { BucketName = _location.Bucket, Key = fullKey };
        if (_options.ServerSideEncryption == ServerSideEncryptionMode.S3) initiate.ServerSideEncryptionMethod = ServerSideEncryptionMethod.AES256;
        else if (_options.ServerSideEncryption == ServerSideEncryptionMode.Kms)
        {
            initiate.ServerSideEncryptionMethod = ServerSideEncryptionMethod.AWSKMS;
            if (!string.IsNullOrEmpty(_options.KmsKeyId)) initiate.ServerSideEncryptionKeyManagementServiceKeyId = _options.KmsKeyId;
        }
        var uploadId = (await Call(() => _s3.InitiateMultipartUploadAsync(initiate, cancellationToken), fullKey)).UploadId;

        using var failFast = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var etags = new List<PartETag>();
        var inFlight = new List<Task>();
        using var slots = new SemaphoreSlim(_options.Concurrency);
        long total = 0;
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
                        var response = await Call(() => _s3.UploadPartAsync(new UploadPartRequest
                        {
                            BucketName = _location.Bucket,
                            Key = fullKey,
                            UploadId = uploadId,
                            PartNumber = number,
                            PartSize = size,
                            InputStream = new MemoryStream(data, 0, size, writable: false),
                        }, failFast.Token), fullKey);
                        lock (etags) etags.Add(new PartETag(number, response.ETag));
                    }
                    catch
                    {
                        failFast.Cancel();
                        throw;
                    }
                    finally
                    {
                        if (release) ArrayPool<byte>.Shared.Return(data);
                        slots.Release();
                    }
                }, CancellationToken.None));
                inFlight.RemoveAll(t => t.IsCompletedSuccessfully);

                // The first buffer belongs to the caller; every later one is rented here and returned by its upload.
                buffer = ArrayPool<byte>.Shared.Rent(_partSize);
                ownsBuffer = true;
                length = await FillAsync(content, buffer, _partSize, failFast.Token);
                if (length == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    break;
                }
                if (partNumber >= 10_000)
                    throw new InvalidOperationException($"'{fullKey}' needs more than 10,000 parts; raise Store:PartSizeMiB.");
            }
            await Task.WhenAll(inFlight);
            etags.Sort((a, b) => a.PartNumber!.Value.CompareTo(b.PartNumber!.Value));
            await Call(() => _s3.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
            {
                BucketName = _location.Bucket,
                Key = fullKey,
                UploadId = uploadId,
                PartETags = etags,
            }, cancellationToken), fullKey);
            return total;
        }
        catch (Exception ex)
        {
            failFast.Cancel();
            try { await Task.WhenAll(inFlight); } catch { /* the first failure is the one to report */ }
            await AbortQuietlyAsync(fullKey, uploadId);
            // A part failure cancels its siblings; report the part's own error, not their cancellation.
            var root = inFlight.Where(t => t.IsFaulted).Select(t => t.Exception!.GetBaseException()).FirstOrDefault();
            if (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested && root is not null)
                throw root;
            throw;
        }
    }

    private async Task AbortQuietlyAsync(string fullKey, string uploadId)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await _s3.AbortMultipartUploadAsync(new AbortMultipartUploadRequest { BucketName = _location.Bucket, Key = fullKey, UploadId = uploadId }, cts.Token);
        }
        catch (Exception)
        {
            // The bucket's lifecycle rule for incomplete multipart uploads is the backstop.
        }
    }

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
        try
        {
            var response = await Call(() => _s3.GetObjectAsync(_location.Bucket, fullKey, cancellationToken), fullKey);
            return new ResponseOwningStream(response);
        }
        catch (StoreUnavailableException ex) when (ex.InnerException is AmazonS3Exception { StatusCode: HttpStatusCode.NotFound })
        {
            throw new StoreObjectNotFoundException(key, Description);
        }
    }

    public async IAsyncEnumerable<StoreItem> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var request = new ListObjectsV2Request { BucketName = _location.Bucket, Prefix = _location.Prefix.Length == 0 ? prefix : _location.Prefix + "/" + prefix };
        while (true)
        {
            var response = await Call(() => _s3.ListObjectsV2Async(request, cancellationToken), request.Prefix);
            foreach (var o in response.S3Objects ?? [])
                yield return new StoreItem(RelativeKey(o.Key), o.Size ?? 0, o.LastModified is { } lm ? new DateTimeOffset(lm.ToUniversalTime()) : DateTimeOffset.MinValue);
            if (response.IsTruncated != true) yield break;
            request.ContinuationToken = response.NextContinuationToken;
        }
    }

    public async Task DeleteAsync(string key, CancellationToken cancellationToken)
    {
        var fullKey = FullKey(key);
        await Call(() => _s3.DeleteObjectAsync(_location.Bucket, fullKey, cancellationToken), fullKey);
    }

    public async Task CheckAccessAsync(CancellationToken cancellationToken)
    {
        var request = new ListObjectsV2Request { BucketName = _location.Bucket, Prefix = _location.Prefix, MaxKeys = 1 };
        await Call(() => _s3.ListObjectsV2Async(request, cancellationToken), _location.Prefix);
    }

    /// <summary>Turns SDK and network failures into one exception type whose message names the store, the key and the S3 error code.</summary>
    private async Task<T> Call<T>(Func<Task<T>> action, string fullKey)
    {
        try
        {
            return await action();
        }
        catch (AmazonS3Exception ex)
        {
            throw new StoreUnavailableException($"S3 refused a request for '{fullKey}' in {Description}: {ex.ErrorCode ?? "error"} (HTTP {(int)ex.StatusCode}){(string.IsNullOrEmpty(ex.Message) ? "" : ": " + ex.Message)}", ex);
        }
        catch (Exception ex) when (ex is AmazonClientException or HttpRequestException or IOException && ex is not OperationCanceledException)
        {
            throw new StoreUnavailableException($"S3 store {Description} could not be reached for '{fullKey}': {ex.GetBaseException().Message}", ex);
        }
    }

    public void Dispose() => _s3.Dispose();

    /// <summary>Keeps the GetObject response alive for as long as its body is read.</summary>
    private sealed class ResponseOwningStream(GetObjectResponse response) : Stream
    {
        private readonly Stream _inner = response.ResponseStream;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => response.ContentLength;
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _inner.ReadAsync(buffer, cancellationToken);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _inner.ReadAsync(buffer, offset, count, cancellationToken);
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        protected override void Dispose(bool disposing)
        {
            if (disposing) response.Dispose();
            base.Dispose(disposing);
        }
    }
}
