using System.Security.Cryptography;

namespace RegistryDR.Backup;

/// <summary>
/// A read-only pass-through that hashes and counts what flows through it, so every artifact's
/// SHA-256 is computed on the way to (or from) the store without a second read.
/// </summary>
internal sealed class HashingStream(Stream inner, Action<long>? onProgress = null) : Stream
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly byte[] _head = new byte[16];
    private long _length;
    private long _lastReported;

    public long BytesRead => _length;

    /// <summary>The first bytes seen (up to 16), to recognise a file format.</summary>
    public ReadOnlySpan<byte> Head => _head.AsSpan(0, (int)Math.Min(_length, _head.Length));

    /// <summary>The SHA-256 of everything read so far. Call once, at the end.</summary>
    public string HashHex() => Convert.ToHexStringLower(_hash.GetHashAndReset());

    public override int Read(byte[] buffer, int offset, int count) => Observe(buffer.AsSpan(offset, inner.Read(buffer, offset, count)));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = await inner.ReadAsync(buffer, cancellationToken);
        return Observe(buffer.Span[..n]);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private int Observe(ReadOnlySpan<byte> data)
    {
        if (_length < _head.Length)
        {
            var take = (int)Math.Min(_head.Length - _length, data.Length);
            data[..take].CopyTo(_head.AsSpan((int)_length));
        }
        _hash.AppendData(data);
        _length += data.Length;
        if (onProgress is not null && (_length - _lastReported >= 1 << 20 || data.Length == 0))
        {
            _lastReported = _length;
            onProgress(_length);
        }
        return data.Length;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _length; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    // Consumers such as SharpZipLib's GZipInputStream dispose the stream they read when they
    // finish, before the caller asks for the hash; so disposing does not end the hash, and the
    // inner stream stays owned by whoever opened it.
    protected override void Dispose(bool disposing) => base.Dispose(disposing);
}
