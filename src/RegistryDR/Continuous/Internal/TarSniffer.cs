using System.Text;

namespace RegistryDR.Continuous.Internal;

/// <summary>
/// A read-only pass-through over a tar stream (POSIX ustar, as pg_basebackup writes it) that
/// follows its headers as the bytes go by and keeps a copy of a few small members: here
/// <c>backup_label</c> and <c>backup_manifest</c>, which say where the base backup starts and ends
/// in the WAL. The stream itself is not changed or held: it still goes straight to the store.
/// </summary>
internal sealed class TarSniffer(Stream inner, IReadOnlySet<string> capture, int maxCaptureBytes) : Stream
{
    private readonly byte[] _header = new byte[512];
    private int _headerFill;
    private long _dataLeft;
    private long _padLeft;
    private MemoryStream? _current;
    private string? _currentName;
    private int _zeroBlocks;

    public Dictionary<string, byte[]> Captured { get; } = new(StringComparer.Ordinal);
    public int Entries { get; private set; }
    /// <summary>True once the two zero blocks that end a tar archive were seen.</summary>
    public bool Ended => _zeroBlocks >= 2;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = await inner.ReadAsync(buffer, cancellationToken);
        Observe(buffer.Span[..n]);
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var n = inner.Read(buffer, offset, count);
        Observe(buffer.AsSpan(offset, n));
        return n;
    }

    private void Observe(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            if (_dataLeft > 0)
            {
                var take = (int)Math.Min(_dataLeft, data.Length);
                if (_current is not null)
                {
                    if (_current.Length + take > maxCaptureBytes)
                        throw new InvalidDataException($"pg_basebackup's {_currentName} is larger than {maxCaptureBytes} bytes.");
                    _current.Write(data[..take]);
                }
                _dataLeft -= take;
                data = data[take..];
                if (_dataLeft == 0) FinishEntry();
                continue;
            }
            if (_padLeft > 0)
            {
                var take = (int)Math.Min(_padLeft, data.Length);
                _padLeft -= take;
                data = data[take..];
                continue;
            }
            if (Ended)
            {
                return; // trailing zero padding after the end-of-archive blocks
            }
            var want = Math.Min(512 - _headerFill, data.Length);
            data[..want].CopyTo(_header.AsSpan(_headerFill));
            _headerFill += want;
            data = data[want..];
            if (_headerFill == 512)
            {
                _headerFill = 0;
                ParseHeader();
            }
        }
    }

    private void ParseHeader()
    {
        if (_header.AsSpan().IndexOfAnyExcept((byte)0) < 0)
        {
            _zeroBlocks++;
            return;
        }
        _zeroBlocks = 0;
        Entries++;
        var name = Field(_header.AsSpan(0, 100));
        var prefix = Field(_header.AsSpan(345, 155));
        if (prefix.Length > 0) name = prefix + "/" + name;
        var size = Size(_header.AsSpan(124, 12));
        var type = (char)_header[156];
        // Directories and links carry no data whatever their size field says.
        if (type is '5' or '2' or '1') size = 0;
        _dataLeft = size;
        _padLeft = (512 - size % 512) % 512;
        _currentName = name;
        _current = capture.Contains(name) && type is '0' or '\0' ? new MemoryStream() : null;
        if (size == 0) FinishEntry();
    }

    private void FinishEntry()
    {
        if (_current is not null && _currentName is not null) Captured[_currentName] = _current.ToArray();
        _current = null;
    }

    private static string Field(ReadOnlySpan<byte> field)
    {
        var end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }

    /// <summary>Octal, or base-256 when the first byte has its high bit set (GNU, used by PostgreSQL for large sizes).</summary>
    private static long Size(ReadOnlySpan<byte> field)
    {
        if ((field[0] & 0x80) != 0)
        {
            long v = field[0] & 0x7F;
            for (var i = 1; i < field.Length; i++) v = (v << 8) | field[i];
            return v;
        }
        long octal = 0;
        foreach (var b in field)
        {
            if (b is 0 or (byte)' ') { if (octal > 0) break; continue; }
            if (b is < (byte)'0' or > (byte)'7') throw new InvalidDataException("pg_basebackup's tar stream has an invalid size field.");
            octal = octal * 8 + (b - '0');
        }
        return octal;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
