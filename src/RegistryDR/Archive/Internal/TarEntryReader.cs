using System.Globalization;
using System.Text;
using ICSharpCode.SharpZipLib.Tar;

namespace RegistryDR.Archive.Internal;

/// <summary>
/// One archive member with PAX and GNU long-name records already folded in. Names and link
/// targets are the archive's bytes decoded with <see cref="SurrogateEscape"/>.
/// </summary>
internal sealed record TarMember(
    string Name,
    byte TypeFlag,
    int Permissions,
    long UserId,
    long GroupId,
    long Size,
    long ModifiedSeconds,
    uint ModifiedNanoseconds,
    string LinkName)
{
    /// <summary>Extended attributes from SCHILY.xattr.&lt;name&gt; records, by name (ordinal order), values as bytes.</summary>
    public IReadOnlyList<KeyValuePair<string, byte[]>> ExtendedAttributes { get; init; } = [];

    /// <summary>The SCHILY.acl.access record: the access ACL as text, or null.</summary>
    public string? AccessAcl { get; init; }

    /// <summary>The SCHILY.acl.default record: a directory's default ACL as text, or null.</summary>
    public string? DefaultAcl { get; init; }
}

/// <summary>
/// A deliberately strict tar parser. SharpZipLib's TarInputStream is not used for reading
/// because it silently drops entries of types it does not understand (FIFOs and devices
/// disappear instead of being refused), does not verify the checksum of a header that follows a
/// long-name record, and ignores long link names. Here every header is checksummed, every
/// numeric field must be well-formed, every type flag is reported to the caller, and the
/// archive must end with a proper end-of-archive marker. Names are bytes: header fields and
/// PAX 'path'/'linkpath' values are taken as the bytes they hold (as GNU tar does, whatever
/// 'hdrcharset' says), and SCHILY.xattr values are binary.
/// </summary>
internal sealed class TarEntryReader
{
    private const int BlockSize = 512;

    /// <summary>PAX and GNU long-name records are held in memory; bound them.</summary>
    public const int MaxMetadataBytes = 1 << 20;

    /// <summary>GNU tar's and star's PAX key prefix for one extended attribute.</summary>
    private const string XattrPrefix = "SCHILY.xattr.";

    private readonly Stream _input;
    private readonly byte[] _header = new byte[BlockSize];
    private readonly byte[] _scratch = new byte[64 * 1024];
    private long _dataRemaining;
    private int _paddingRemaining;
    private string _currentName = string.Empty;

    public TarEntryReader(Stream input)
    {
        _input = input;
    }

    /// <summary>
    /// Moves to the next member, skipping whatever is left of the current one. Returns null at
    /// the end-of-archive marker.
    /// </summary>
    public TarMember? ReadNext()
    {
        SkipRest();

        Dictionary<string, byte[]>? pax = null;
        string? longName = null;
        string? longLink = null;
        var sawExtension = false;

        // One budget for all extended headers in front of one entry: bounding each record alone
        // let a chain of them (distinct PAX keys, or repeated GNU records) hold memory without
        // limit, from a small, highly compressible archive (found by the fuzz tests).
        long metadataBudget = MaxMetadataBytes;

        while (true)
        {
            if (!ReadHeaderBlock())
            {
                if (sawExtension)
                {
                    throw new InvalidDataException("The archive ends right after an extended header, without the entry it describes.");
                }

                return null;
            }

            var typeFlag = _header[156];
            var rawName = ParseString(_header, 0, 100);
            if (IsUstarPosix() && _header[345] != 0)
            {
                rawName = ParseString(_header, 345, 155) + "/" + rawName;
            }

            var size = ParseNumber(_header, 124, 12, "size");
            switch (typeFlag)
            {
                case TarHeader.LF_XHDR:
                    pax ??= new Dictionary<string, byte[]>(StringComparer.Ordinal);
                    foreach (var (key, value) in ParsePax(ReadMetadata(rawName, size, ref metadataBudget)))
                    {
                        if (key.StartsWith("GNU.sparse.", StringComparison.Ordinal))
                        {
                            throw new UnsafeArchiveException(PaxText(pax, "path") ?? rawName, "GNU sparse-file records are not supported (registry-dr stores sparse files whole)");
                        }

                        pax[key] = value;
                    }

                    sawExtension = true;
                    continue;
                case TarHeader.LF_GNU_LONGNAME:
                    longName = SurrogateEscape.Decode(ReadMetadata(rawName, size, ref metadataBudget)).TrimEnd('\0');
                    sawExtension = true;
                    continue;
                case TarHeader.LF_GNU_LONGLINK:
                    longLink = SurrogateEscape.Decode(ReadMetadata(rawName, size, ref metadataBudget)).TrimEnd('\0');
                    sawExtension = true;
                    continue;
            }

            var member = new TarMember(
                Name: PaxText(pax, "path") ?? longName ?? rawName,
                TypeFlag: typeFlag,
                Permissions: (int)(ParseNumber(_header, 100, 8, "mode") & 0xfff),
                UserId: PaxNumber(pax, "uid") ?? ParseNumber(_header, 108, 8, "uid"),
                GroupId: PaxNumber(pax, "gid") ?? ParseNumber(_header, 116, 8, "gid"),
                Size: PaxNumber(pax, "size") ?? size,
                ModifiedSeconds: ParseNumber(_header, 136, 12, "mtime"),
                ModifiedNanoseconds: 0,
                LinkName: PaxText(pax, "linkpath") ?? longLink ?? ParseString(_header, 157, 100));

            if (PaxText(pax, "mtime") is { } paxTime)
            {
                var (seconds, nanoseconds) = ParsePaxTime(paxTime);
                member = member with { ModifiedSeconds = seconds, ModifiedNanoseconds = nanoseconds };
            }

            if (pax is not null)
            {
                member = member with
                {
                    ExtendedAttributes = pax.Where(r => r.Key.StartsWith(XattrPrefix, StringComparison.Ordinal))
                        .Select(r => KeyValuePair.Create(r.Key[XattrPrefix.Length..], r.Value))
                        .OrderBy(r => r.Key, StringComparer.Ordinal)
                        .ToList(),
                    AccessAcl = PaxText(pax, "SCHILY.acl.access"),
                    DefaultAcl = PaxText(pax, "SCHILY.acl.default"),
                };
            }

            // Quoted in truncation messages: printable, like every name the reader reports.
            _currentName = UnsafeArchiveException.Printable(member.Name);
            _dataRemaining = Math.Max(member.Size, 0);
            _paddingRemaining = (int)((BlockSize - (_dataRemaining % BlockSize)) % BlockSize);
            return member;
        }
    }

    /// <summary>Reads the current member's content; 0 once it is exhausted.</summary>
    public int ReadData(Span<byte> buffer)
    {
        if (_dataRemaining == 0)
        {
            return 0;
        }

        var wanted = (int)Math.Min(buffer.Length, _dataRemaining);
        var read = ReadFully(buffer[..wanted]);
        if (read < wanted)
        {
            throw new InvalidDataException($"The archive is truncated inside entry '{_currentName}'.");
        }

        _dataRemaining -= read;
        return read;
    }

    /// <summary>
    /// After the end-of-archive marker only zero padding may follow. Reading it to the end also
    /// makes the gzip layer check its CRC and length trailer, so corruption anywhere is caught.
    /// </summary>
    public void VerifyEnd()
    {
        int read;
        while ((read = _input.Read(_scratch, 0, _scratch.Length)) > 0)
        {
            if (_scratch.AsSpan(0, read).ContainsAnyExcept((byte)0))
            {
                throw new InvalidDataException("The archive has unexpected data after its end-of-archive marker.");
            }
        }
    }

    private void SkipRest()
    {
        while (_dataRemaining > 0)
        {
            ReadData(_scratch);
        }

        if (_paddingRemaining > 0)
        {
            if (ReadFully(_scratch.AsSpan(0, _paddingRemaining)) < _paddingRemaining)
            {
                throw new InvalidDataException($"The archive is truncated after entry '{_currentName}'.");
            }

            _paddingRemaining = 0;
        }
    }

    /// <summary>False at the end-of-archive marker (a zero block).</summary>
    private bool ReadHeaderBlock()
    {
        var read = ReadFully(_header);
        if (read == 0)
        {
            throw new InvalidDataException("The archive is truncated: it ends without an end-of-archive marker.");
        }

        if (read < BlockSize)
        {
            throw new InvalidDataException("The archive is truncated inside a header.");
        }

        if (!_header.AsSpan().ContainsAnyExcept((byte)0))
        {
            return false;
        }

        VerifyChecksum();
        if (!_header.AsSpan(257, 6).SequenceEqual("ustar\0"u8) && !_header.AsSpan(257, 8).SequenceEqual("ustar  \0"u8))
        {
            throw new InvalidDataException("The archive contains a header that is not in ustar format.");
        }

        return true;
    }

    private bool IsUstarPosix() => _header.AsSpan(257, 6).SequenceEqual("ustar\0"u8);

    private void VerifyChecksum()
    {
        var stored = ParseNumber(_header, 148, 8, "checksum");
        long unsignedSum = 0, signedSum = 0;
        for (var i = 0; i < BlockSize; i++)
        {
            var b = i is >= 148 and < 156 ? (byte)' ' : _header[i];
            unsignedSum += b;
            signedSum += (sbyte)b;
        }

        // Some historic writers summed signed bytes; both are accepted, as GNU tar does.
        if (stored != unsignedSum && stored != signedSum)
        {
            throw new InvalidDataException("The archive contains a header with a bad checksum (corrupt data).");
        }
    }

    private byte[] ReadMetadata(string rawName, long size, ref long budget)
    {
        if (size < 0 || size > MaxMetadataBytes)
        {
            throw new UnsafeArchiveException(rawName, $"its extended header declares {size} bytes, outside 0..{MaxMetadataBytes}");
        }

        if (size > budget)
        {
            throw new UnsafeArchiveException(rawName, $"the extended headers before one entry add up to more than {MaxMetadataBytes} bytes");
        }

        budget -= size;

        var data = new byte[size];
        if (ReadFully(data) < size)
        {
            throw new InvalidDataException("The archive is truncated inside an extended header.");
        }

        var padding = (int)((BlockSize - (size % BlockSize)) % BlockSize);
        if (ReadFully(_scratch.AsSpan(0, padding)) < padding)
        {
            throw new InvalidDataException("The archive is truncated inside an extended header.");
        }

        return data;
    }

    private int ReadFully(Span<byte> buffer)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var read = _input.Read(buffer[total..]);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return total;
    }

    private static string ParseString(byte[] block, int offset, int length)
    {
        var field = block.AsSpan(offset, length);
        var end = field.IndexOf((byte)0);
        return SurrogateEscape.Decode(end < 0 ? field : field[..end]);
    }

    /// <summary>
    /// Octal with optional leading spaces and a space/NUL terminator, or GNU base-256 (high bit of
    /// the first byte set, two's complement, so negative values are possible and reported as such).
    /// Anything else is corruption, not something to guess at.
    /// </summary>
    private static long ParseNumber(byte[] block, int offset, int length, string field)
    {
        var bytes = block.AsSpan(offset, length);
        try
        {
            if ((bytes[0] & 0x80) != 0)
            {
                // Bit 6 of the first byte is the sign of the remaining 7-bit two's complement value.
                long value = (bytes[0] & 0x40) != 0 ? (bytes[0] & 0x7f) - 0x80 : bytes[0] & 0x7f;
                foreach (var b in bytes[1..])
                {
                    value = checked((value * 256) + b);
                }

                return value;
            }

            var i = 0;
            while (i < bytes.Length && bytes[i] == ' ')
            {
                i++;
            }

            long result = 0;
            for (; i < bytes.Length && bytes[i] is >= (byte)'0' and <= (byte)'7'; i++)
            {
                result = checked((result * 8) + (bytes[i] - '0'));
            }

            for (; i < bytes.Length; i++)
            {
                if (bytes[i] is not ((byte)' ' or 0))
                {
                    throw new InvalidDataException($"The archive contains a header whose {field} field is not a number (corrupt data).");
                }
            }

            return result;
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"The archive contains a header whose {field} field overflows (corrupt data).");
        }
    }

    /// <summary>
    /// PAX records are "LENGTH key=value\n" where LENGTH counts the whole record. Values are
    /// bytes: names that are not UTF-8 and binary xattr values must survive.
    /// </summary>
    private static List<(string Key, byte[] Value)> ParsePax(byte[] data)
    {
        var records = new List<(string, byte[])>();
        var position = 0;
        while (position < data.Length)
        {
            var space = Array.IndexOf(data, (byte)' ', position);
            if (space < 0
                || !int.TryParse(Encoding.ASCII.GetString(data, position, space - position), NumberStyles.None, CultureInfo.InvariantCulture, out var length)
                || length <= space - position + 1
                // Compared as a difference: "position + length" overflows int for a length near
                // int.MaxValue after an earlier record, and the overflowed sum then passed this
                // check and indexed outside the array (IndexOutOfRangeException instead of
                // InvalidDataException; found by the fuzz tests).
                || length > data.Length - position
                || data[position + length - 1] != (byte)'\n')
            {
                throw new InvalidDataException("The archive contains a malformed PAX extended header.");
            }

            var record = data.AsSpan(space + 1, position + length - 1 - (space + 1));
            var equals = record.IndexOf((byte)'=');
            if (equals <= 0)
            {
                throw new InvalidDataException("The archive contains a malformed PAX extended header record.");
            }

            records.Add((SurrogateEscape.Decode(record[..equals]), record[(equals + 1)..].ToArray()));
            position += length;
        }

        return records;
    }

    /// <summary>A PAX value as text, its bytes decoded with <see cref="SurrogateEscape"/>; null when absent.</summary>
    private static string? PaxText(Dictionary<string, byte[]>? pax, string key) =>
        pax is not null && pax.TryGetValue(key, out var value) ? SurrogateEscape.Decode(value) : null;

    private static long? PaxNumber(Dictionary<string, byte[]>? pax, string key)
    {
        if (PaxText(pax, key) is not { } text)
        {
            return null;
        }

        return long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new InvalidDataException($"The archive contains a PAX '{key}' value that is not a number.");
    }

    private static (long Seconds, uint Nanoseconds) ParsePaxTime(string text)
    {
        var dot = text.IndexOf('.', StringComparison.Ordinal);
        var wholePart = dot < 0 ? text : text[..dot];
        var fraction = dot < 0 ? string.Empty : text[(dot + 1)..];
        if (!long.TryParse(wholePart, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var seconds)
            || fraction.Any(c => c is < '0' or > '9'))
        {
            throw new InvalidDataException("The archive contains a PAX 'mtime' value that is not a time.");
        }

        var digits = fraction.Length > 9 ? fraction[..9] : fraction.PadRight(9, '0');
        var nanoseconds = uint.Parse(digits, CultureInfo.InvariantCulture);

        // "-1.5" means 1.5 s before the epoch, i.e. -2 s plus 0.5 s.
        if (wholePart.StartsWith('-') && nanoseconds > 0)
        {
            seconds -= 1;
            nanoseconds = 1_000_000_000 - nanoseconds;
        }

        return (seconds, nanoseconds);
    }
}
