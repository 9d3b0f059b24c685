using System.Net;
using Amazon.S3;
using Amazon.S3.Model;

namespace RegistryDR.Stores.Internal;

/// <summary>
/// The body of one S3 object that survives its connection breaking. When a read fails
/// (reset, timeout, no byte for <c>Store:RequestTimeout</c>) or the body ends before its
/// Content-Length, the object is fetched again with a ranged GET from the first byte not yet
/// delivered, with <c>If-Match</c> on the ETag of the first response: a restore that lost its
/// connection at 9 GB of 10 continues at 9 GB instead of starting over, and an object replaced
/// in the meantime is refused (412) instead of having its tail spliced onto the old head.
/// Each resume is one retry of the "get" operation against <c>Store:RetryBudget</c>; the clock
/// of a recovery runs from the break until the new body delivers a byte.
/// </summary>
internal sealed class ResumableReadStream : Stream
{
    /// <summary>One ranged GET, <c>bytes=offset-</c> with If-Match, a single attempt.</summary>
    public delegate Task<GetObjectResponse> RangedGet(long offset, string etag, CancellationToken cancellationToken);

    private readonly RangedGet _get;
    private readonly S3RetryPolicy _policy;
    private readonly string _key;
    private readonly string _store;
    private readonly string? _etag;
    private readonly long _length;
    private GetObjectResponse? _response;
    private long _position;
    private S3RetryPolicy.RetryScope? _recovery;
    private bool _disposed;

    public ResumableReadStream(GetObjectResponse first, RangedGet get, S3RetryPolicy policy, string fullKey, string store)
    {
        _response = first;
        _get = get;
        _policy = policy;
        _key = fullKey;
        _store = store;
        _etag = string.IsNullOrEmpty(first.ETag) ? null : first.ETag;
        _length = first.ContentLength;
    }

    /// <summary>How many times the body was re-opened (for tests and logs).</summary>
    public int Resumes { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _length;
    public override long Position { get => _position; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        // Synchronous callers get the same resuming logic; the rent keeps the span off the async path.
        var rented = System.Buffers.ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            var n = ReadAsync(rented.AsMemory(0, buffer.Length), CancellationToken.None).AsTask().GetAwaiter().GetResult();
            rented.AsSpan(0, n).CopyTo(buffer);
            return n;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (buffer.Length == 0) return 0;
        while (true)
        {
            if (_length >= 0 && _position >= _length) return 0;
            if (_response is null) await ReopenAsync(cancellationToken);
            int n;
            try
            {
                // A body that stops delivering is as broken as one that resets, but nothing
                // would notice: the SDK's timeout ends with the response headers.
                using var idle = new CancellationTokenSource(_policy.RequestTimeout, _policy.Time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
                n = await _response!.ResponseStream.ReadAsync(buffer, linked.Token);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                await BrokeAsync(ex, cancellationToken);
                continue;
            }
            if (n == 0)
            {
                if (_length < 0) return 0; // no Content-Length to hold it to
                await BrokeAsync(new IOException($"the body ended after {_position} of {_length} bytes"), cancellationToken);
                continue;
            }
            _position += n;
            _recovery = null; // bytes flow again: the next break gets a budget of its own
            return n;
        }
    }

    private async Task BrokeAsync(Exception ex, CancellationToken cancellationToken)
    {
        DropResponse();
        if (_etag is null || _length < 0)
            throw new StoreUnavailableException($"Reading '{_key}' from {_store} broke at byte {_position} and cannot be resumed safely (the server sent no ETag or length): {_policy.Describe(ex)}", ex);
        _recovery ??= _policy.Begin("get", $"reading '{_key}' (resuming at byte {_position} of {_length})");
        // Reports the resume as a retry and waits the backoff, or throws when the budget is spent.
        await _recovery.FailedAsync(ex, cancellationToken);
    }

    private async Task ReopenAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                using var deadline = new CancellationTokenSource(_policy.RequestTimeout, _policy.Time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
                var response = await _get(_position, _etag!, linked.Token);
                Resumes++;
                var expected = _length - _position;
                if (!string.Equals(response.ETag, _etag, StringComparison.Ordinal))
                {
                    // If-Match should have stopped this; a server that ignores it is caught here.
                    response.Dispose();
                    throw new StoreObjectChangedException(_key, _store, _position, "was replaced");
                }
                if (response.HttpStatusCode != HttpStatusCode.PartialContent || response.ContentLength != expected)
                {
                    response.Dispose();
                    throw new StoreUnavailableException(
                        $"{_store} answered a ranged GET of '{_key}' from byte {_position} with HTTP {(int)response.HttpStatusCode} and {response.ContentLength} bytes instead of 206 and {expected}; the read cannot be resumed.");
                }
                _response = response;
                return;
            }
            catch (AmazonS3Exception ex) when (ex.StatusCode == HttpStatusCode.PreconditionFailed)
            {
                throw new StoreObjectChangedException(_key, _store, _position, "was replaced", ex);
            }
            catch (AmazonS3Exception ex) when (ex.StatusCode == HttpStatusCode.NotFound)
            {
                throw new StoreObjectChangedException(_key, _store, _position, "was deleted", ex);
            }
            catch (Exception ex) when (ex is not (StoreObjectChangedException or StoreUnavailableException)
                                       && (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested))
            {
                await _recovery!.FailedAsync(ex, cancellationToken);
            }
        }
    }

    private void DropResponse()
    {
        var response = _response;
        _response = null;
        // Disposing a half-read body may throw on a connection that is already gone.
        try { response?.Dispose(); } catch (Exception) { }
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_disposed)
        {
            _disposed = true;
            DropResponse();
        }
        base.Dispose(disposing);
    }
}
