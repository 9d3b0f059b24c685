using System.Globalization;
using System.Text;

namespace RegistryDR.Tests.Fuzz;

/// <summary>
/// Byte-level tar building blocks, independent of the code under test and of SharpZipLib, so
/// the generators can write any value into any field, valid or not.
/// </summary>
internal static class RawTar
{
    public const int Block = 512;

    /// <summary>Every ustar header field: name, offset, length.</summary>
    public static readonly (string Name, int Offset, int Length)[] Fields =
    [
        ("name", 0, 100),
        ("mode", 100, 8),
        ("uid", 108, 8),
        ("gid", 116, 8),
        ("size", 124, 12),
        ("mtime", 136, 12),
        ("chksum", 148, 8),
        ("typeflag", 156, 1),
        ("linkname", 157, 100),
        ("magic", 257, 6),
        ("version", 263, 2),
        ("uname", 265, 32),
        ("gname", 297, 32),
        ("devmajor", 329, 8),
        ("devminor", 337, 8),
        ("prefix", 345, 155),
    ];

    public static (string Name, int Offset, int Length) Field(string name) => Fields.Single(f => f.Name == name);

    /// <summary>A well-formed POSIX ustar (or old GNU) header with a correct checksum.</summary>
    public static byte[] Header(string name, byte typeFlag, long size = 0, string linkName = "", int mode = 0b110_100_100, long uid = 0, long gid = 0, long mtime = 1_700_000_000, bool gnuMagic = false)
    {
        var header = new byte[Block];
        PutText(header, 0, 100, name);
        PutNumber(header, 100, 8, mode);
        PutNumber(header, 108, 8, uid);
        PutNumber(header, 116, 8, gid);
        PutNumber(header, 124, 12, size);
        PutNumber(header, 136, 12, mtime);
        header[156] = typeFlag;
        PutText(header, 157, 100, linkName);
        if (gnuMagic)
        {
            "ustar  \0"u8.CopyTo(header.AsSpan(257));
        }
        else
        {
            "ustar\0"u8.CopyTo(header.AsSpan(257));
            "00"u8.CopyTo(header.AsSpan(263));
        }

        PutText(header, 265, 32, "root");
        PutText(header, 297, 32, "root");
        FixChecksum(header);
        return header;
    }

    /// <summary>UTF-8, truncated to the field, NUL-filled.</summary>
    public static void PutText(byte[] header, int offset, int length, string value) => PutBytes(header, offset, length, Encoding.UTF8.GetBytes(value));

    public static void PutBytes(byte[] header, int offset, int length, ReadOnlySpan<byte> value)
    {
        var field = header.AsSpan(offset, length);
        field.Clear();
        value[..Math.Min(value.Length, length)].CopyTo(field);
    }

    /// <summary>Octal with a NUL terminator when it fits, GNU base-256 (two's complement) otherwise.</summary>
    public static void PutNumber(byte[] header, int offset, int length, long value)
    {
        var octal = value >= 0 ? Convert.ToString(value, 8) : null;
        if (octal is not null && octal.Length < length)
        {
            PutText(header, offset, length, octal.PadLeft(length - 1, '0'));
            return;
        }

        PutBase256(header, offset, length, value);
    }

    public static void PutBase256(byte[] header, int offset, int length, long value)
    {
        var field = header.AsSpan(offset, length);
        var v = value;
        for (var i = length - 1; i >= 1; i--)
        {
            field[i] = (byte)(v & 0xff);
            v >>= 8;
        }

        field[0] = (byte)(value < 0 ? 0xff : 0x80);
    }

    /// <summary>Unsigned byte sum with the checksum field counted as spaces, written "%06o\0 ".</summary>
    public static void FixChecksum(byte[] header)
    {
        PutBytes(header, 148, 8, Encoding.ASCII.GetBytes(Convert.ToString(Checksum(header, signed: false), 8).PadLeft(6, '0') + "\0 "));
    }

    public static long Checksum(byte[] header, bool signed)
    {
        long sum = 0;
        for (var i = 0; i < Block; i++)
        {
            var b = i is >= 148 and < 156 ? (byte)' ' : header[i];
            sum += signed ? (sbyte)b : b;
        }

        return sum;
    }

    /// <summary>Data padded with zeros to whole blocks.</summary>
    public static byte[] Padded(ReadOnlySpan<byte> data)
    {
        var result = new byte[(data.Length + Block - 1) / Block * Block];
        data.CopyTo(result);
        return result;
    }

    public static byte[] Chunk(byte[] header, ReadOnlySpan<byte> data) => [.. header, .. Padded(data)];

    /// <summary>"LENGTH key=value\n" where LENGTH counts the whole record, its own digits included.</summary>
    public static byte[] PaxRecord(string key, string value)
    {
        var body = Encoding.UTF8.GetByteCount($" {key}={value}\n");
        var length = body + 1;
        while (length.ToString(CultureInfo.InvariantCulture).Length + body != length)
        {
            length = length.ToString(CultureInfo.InvariantCulture).Length + body;
        }

        return Encoding.UTF8.GetBytes($"{length.ToString(CultureInfo.InvariantCulture)} {key}={value}\n");
    }

    /// <summary>
    /// Splits a tar stream into member chunks (header plus padded data, by the header's octal
    /// size) up to the first zero block. Only used on well-formed templates.
    /// </summary>
    public static List<byte[]> SplitChunks(byte[] tar)
    {
        var chunks = new List<byte[]>();
        var position = 0;
        while (position + Block <= tar.Length)
        {
            var header = tar.AsSpan(position, Block);
            if (!header.ContainsAnyExcept((byte)0))
            {
                break;
            }

            var sizeText = Encoding.ASCII.GetString(header.Slice(124, 12)).Trim('\0', ' ');
            var size = sizeText.Length == 0 ? 0 : Convert.ToInt64(sizeText, 8);
            var length = Block + (int)((size + Block - 1) / Block * Block);
            chunks.Add(tar.AsSpan(position, length).ToArray());
            position += length;
        }

        return chunks;
    }

    public static byte[] Join(IEnumerable<byte[]> chunks, int zeroBlocks = 2)
    {
        var output = new MemoryStream();
        foreach (var chunk in chunks)
        {
            output.Write(chunk);
        }

        output.Write(new byte[zeroBlocks * Block]);
        return output.ToArray();
    }
}
