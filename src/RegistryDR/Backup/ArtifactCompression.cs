using System.IO.Compression;

namespace RegistryDR.Backup;

/// <summary>
/// The codecs of what RegistryDR compresses itself: the split tables' block ranges. Each
/// table-data artifact records its codec in the manifest (<see cref="BackupManifest.Artifact.Compression"/>);
/// sets written before the record (format 1–3) hold gzip ranges. Both formats carry a checksum of
/// the uncompressed bytes (gzip's CRC-32; zstd's content checksum, off by default in zstd and
/// always on here), so damaged bytes are refused by the codec too, not only by the manifest's
/// SHA-256 — also by hand, with <c>gunzip</c> or Debian's <c>zstd -d</c>. The zstd reader refuses
/// a stream that ends inside its frame; .NET's gzip reader does not (measured: a gzip stream cut
/// anywhere decompresses without error), which is why a range must also end with binary COPY's
/// trailer (<see cref="Restore.BackupVerifier"/>).
/// </summary>
public static class ArtifactCompression
{
    /// <summary>RFC 1952 gzip (zlib-ng in .NET); file extension <c>.gz</c>.</summary>
    public const string Gzip = "gzip";

    /// <summary>RFC 8878 Zstandard, one frame with a content checksum (ZstdSharp); file extension <c>.zst</c>.</summary>
    public const string Zstd = "zstd";

    public static bool IsKnown(string? compression) => compression is Gzip or Zstd;

    /// <summary>The file extension of a compressed object: ".gz" or ".zst".</summary>
    public static string Extension(string compression) => compression switch
    {
        Gzip => ".gz",
        Zstd => ".zst",
        _ => throw new ArgumentOutOfRangeException(nameof(compression), compression, "not a known compression"),
    };

    /// <summary>A stream that compresses into <paramref name="output"/> (left open) at <paramref name="level"/>
    /// (gzip 0–9; zstd 1–19, 0 for zstd's default of 3). Dispose it to finish the stream.</summary>
    internal static Stream Compress(Stream output, string compression, int level)
    {
        switch (compression)
        {
            case Gzip:
                return new GZipStream(output, new ZLibCompressionOptions { CompressionLevel = level }, leaveOpen: true);
            case Zstd:
                var zstd = new ZstdSharp.CompressionStream(output, level, leaveOpen: true);
                // Off by default in zstd: without it a flipped bit in a literal decompresses to wrong rows.
                zstd.SetParameter(ZstdSharp.Unsafe.ZSTD_cParameter.ZSTD_c_checksumFlag, 1);
                return zstd;
            default:
                throw new ArgumentOutOfRangeException(nameof(compression), compression, "not a known compression");
        }
    }

    /// <summary>A stream that decompresses <paramref name="input"/> (left open). Reading past a stream
    /// that ends early or fails its checksum throws (see <see cref="IsInvalidData"/>).</summary>
    internal static Stream Decompress(Stream input, string compression) => compression switch
    {
        Gzip => new GZipStream(input, CompressionMode.Decompress, leaveOpen: true),
        // checkEndOfStream: an input that ends inside a frame is an error, not a short stream.
        Zstd => new ZstdSharp.DecompressionStream(input, checkEndOfStream: true, leaveOpen: true),
        _ => throw new ArgumentOutOfRangeException(nameof(compression), compression, "not a known compression"),
    };

    /// <summary>Whether <paramref name="ex"/>, thrown by a <see cref="Decompress"/> stream, means the bytes are not valid for the codec.</summary>
    internal static bool IsInvalidData(Exception ex) => ex is InvalidDataException or ZstdSharp.ZstdException or EndOfStreamException;
}
