using System.Buffers.Binary;
using System.IO.Compression;
using System.Security.Cryptography;

namespace RegistryDR.Continuous;

/// <summary>
/// The first page header of a WAL segment (PostgreSQL's <c>XLogLongPageHeaderData</c>,
/// <c>access/xlog_internal.h</c>): where the segment says it belongs. Read to refuse a segment of
/// another cluster, another timeline or another position before it can reach the store.
/// </summary>
public sealed record WalSegmentHeader(uint Timeline, ulong PageAddress, ulong SystemIdentifier, uint SegmentSize)
{
    private const ushort LongHeaderFlag = 0x0002; // XLP_LONG_HEADER
    private const int LongHeaderSize = 40;         // SizeOfXLogLongPHD on 64-bit builds (sysid at offset 24)

    /// <summary>Null when the bytes do not start with a long page header (not a WAL segment).</summary>
    public static WalSegmentHeader? Read(ReadOnlySpan<byte> segment)
    {
        if (segment.Length < LongHeaderSize) return null;
        var info = BinaryPrimitives.ReadUInt16LittleEndian(segment[2..]);
        if ((info & LongHeaderFlag) == 0) return null;
        return new WalSegmentHeader(
            BinaryPrimitives.ReadUInt32LittleEndian(segment[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(segment[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(segment[24..]),
            BinaryPrimitives.ReadUInt32LittleEndian(segment[32..]));
    }

    /// <summary>Null when the header agrees with the file's name and length; otherwise what is wrong.</summary>
    public static string? Check(WalFileName file, ReadOnlySpan<byte> bytes, out WalSegmentHeader? header)
    {
        header = Read(bytes);
        if (header is null) return $"{file.Name} does not start with a WAL segment header";
        if (header.SegmentSize != bytes.Length || header.SegmentSize < 1 << 20 || (header.SegmentSize & (header.SegmentSize - 1)) != 0)
            return $"{file.Name} is {bytes.Length} bytes but its header says segments are {header.SegmentSize} bytes";
        // The first segment of a new timeline starts with the old timeline's pages (PostgreSQL copies
        // them at promotion), so its header may name an ancestor; never a later timeline.
        if (header.Timeline == 0 || header.Timeline > file.Timeline)
            return $"{file.Name} belongs to timeline {file.Timeline} by its name but its header says {header.Timeline}";
        var expected = file.SegmentNumber(header.SegmentSize) * header.SegmentSize;
        if (header.PageAddress != expected)
            return $"{file.Name} starts at {new Lsn(header.PageAddress)} by its header, not at {new Lsn(expected)} as its name says";
        return null;
    }
}

/// <summary>How an archived WAL file is stored: gzip'd, keyed by the SHA-256 of the file itself.</summary>
public static class WalCodec
{
    public static string Sha256(ReadOnlySpan<byte> file) => Convert.ToHexStringLower(SHA256.HashData(file));

    public static byte[] Compress(ReadOnlySpan<byte> file, int level)
    {
        using var output = new MemoryStream(Math.Max(1024, file.Length / 4));
        using (var gzip = new GZipStream(output, new ZLibCompressionOptions { CompressionLevel = level }, leaveOpen: true))
            gzip.Write(file);
        return output.ToArray();
    }

    /// <summary>
    /// Reads a stored WAL object back: gunzip, then SHA-256 of the result against the one its key
    /// names. Throws <see cref="CorruptWalException"/> naming the file when either fails.
    /// </summary>
    public static async Task<byte[]> ReadVerifiedAsync(Stores.IBackupStore store, WalObject wal, CancellationToken cancellationToken)
    {
        await using var source = await store.OpenReadAsync(wal.Key, cancellationToken);
        using var output = new MemoryStream();
        try
        {
            await using var gunzip = new GZipStream(source, CompressionMode.Decompress);
            await gunzip.CopyToAsync(output, cancellationToken);
        }
        catch (InvalidDataException ex)
        {
            throw new CorruptWalException(wal, $"it is not valid gzip ({ex.Message})");
        }
        var bytes = output.ToArray();
        var actual = Sha256(bytes);
        if (actual != wal.Sha256)
            throw new CorruptWalException(wal, $"its content has SHA-256 {actual}, not the {wal.Sha256} it was archived with");
        return bytes;
    }
}

/// <summary>An archived WAL file whose bytes are not what was archived. Never replayed: recovery would stop there silently.</summary>
public sealed class CorruptWalException(WalObject wal, string reason)
    : Exception($"Archived WAL file {wal.File.Name} ({wal.Key}) is corrupt: {reason}. It is refused: replaying past it is impossible, so a restore would silently end before it.")
{
    public WalObject Wal { get; } = wal;
}
