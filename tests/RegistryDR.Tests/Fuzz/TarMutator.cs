using System.Globalization;
using System.Text;
using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Archive;

namespace RegistryDR.Tests.Fuzz;

/// <summary>What the generators aim at: the archive's roots, the names already in it and the sentinel.</summary>
internal sealed record HostileTargets(IReadOnlyList<ArchiveRoot> Roots, IReadOnlyList<string> ExistingNames, string SentinelPath);

/// <summary>
/// Turns a valid tar stream into a hostile or damaged one: 1 to 4 mutations out of a dozen kinds
/// (header byte flips, hostile values in any field, inserted PAX / GNU long-name records and
/// entries, duplicated, dropped and reordered members, broken endings). Only uses the
/// <see cref="Random"/> it is given, so a case is reproducible from its seed.
/// </summary>
internal sealed class TarMutator
{
    // Type flags an attacker would reach for first; the rest of the 256 values come in uniformly.
    private static readonly byte[] InterestingTypes = "01234567xgLKSVMDNA\0"u8.ToArray();

    // Long values, built once: the pools below are rebuilt for every pick.
    private static readonly string Segment255 = new('a', 255);
    private static readonly string Segment256 = new('a', 256);
    private static readonly string Segment400Bytes = new('é', 200);
    private static readonly string Segment5000 = new('b', 5000);
    private static readonly string Segment16K = new('p', 1 << 14);
    private static readonly string Deep1800 = string.Join('/', Enumerable.Repeat("d", 900));
    private static readonly string Deep4080 = string.Join('/', Enumerable.Repeat("a", 2040));

    private readonly Random _random;
    private readonly HostileTargets _targets;

    public TarMutator(Random random, HostileTargets targets)
    {
        _random = random;
        _targets = targets;
    }

    /// <summary>Descriptions of what was done, for the failure message.</summary>
    public List<string> Log { get; } = [];

    public byte[] Mutate(byte[] validTar)
    {
        var chunks = RawTar.SplitChunks(validTar).Select(c => (byte[])c.Clone()).ToList();
        var count = 1 + _random.Next(_random.Chance(0.7) ? 2 : 4);
        for (var i = 0; i < count; i++)
        {
            MutateOnce(chunks);
        }

        return Finish(chunks);
    }

    private void MutateOnce(List<byte[]> chunks)
    {
        var index = chunks.Count == 0 ? 0 : _random.Next(chunks.Count);
        switch (_random.Next(13))
        {
            case 0 when chunks.Count > 0:
                FlipHeaderBytes(chunks[index], index);
                break;
            case 1 when chunks.Count > 0:
            case 2 when chunks.Count > 0:
                SetRandomField(chunks[index], index);
                break;
            case 3 when chunks.Count > 0:
                SetName(chunks[index], index);
                break;
            case 4 when chunks.Count > 0:
                SetLink(chunks[index], index);
                break;
            case 5:
                var pax = PaxChunk();
                chunks.Insert(index, pax);
                break;
            case 6:
                chunks.Insert(index, GnuLongChunk(_random.Chance(0.6) ? TarHeader.LF_GNU_LONGNAME : TarHeader.LF_GNU_LONGLINK));
                break;
            case 7:
            case 8:
                chunks.InsertRange(index, NewEntry());
                break;
            case 9 when chunks.Count > 0:
                chunks.Insert(_random.Next(chunks.Count + 1), (byte[])chunks[index].Clone());
                Log.Add($"duplicated chunk {index}");
                break;
            case 10 when chunks.Count > 0:
                chunks.RemoveAt(index);
                Log.Add($"removed chunk {index}");
                break;
            case 11 when chunks.Count > 1:
                var other = _random.Next(chunks.Count);
                (chunks[index], chunks[other]) = (chunks[other], chunks[index]);
                Log.Add($"swapped chunks {index} and {other}");
                break;
            case 12 when chunks.Count > 0 && chunks[index].Length > RawTar.Block:
                var data = chunks[index];
                var position = RawTar.Block + _random.Next(data.Length - RawTar.Block);
                data[position] ^= (byte)(1 + _random.Next(255));
                Log.Add($"flipped data byte {position} of chunk {index}");
                break;
            default:
                chunks.InsertRange(index, NewEntry());
                break;
        }
    }

    private byte[] Finish(List<byte[]> chunks)
    {
        var roll = _random.NextDouble();
        if (roll < 0.70)
        {
            return RawTar.Join(chunks);
        }

        if (roll < 0.76)
        {
            Log.Add("one end block");
            return RawTar.Join(chunks, 1);
        }

        if (roll < 0.82)
        {
            Log.Add("no end-of-archive marker");
            return RawTar.Join(chunks, 0);
        }

        if (roll < 0.86)
        {
            Log.Add("twenty end blocks");
            return RawTar.Join(chunks, 20);
        }

        var tar = RawTar.Join(chunks);
        if (roll < 0.90)
        {
            Log.Add("garbage after the end");
            return [.. tar, .. Garbage(1 + _random.Next(700))];
        }

        var cut = _random.Chance(0.5) ? _random.Next(tar.Length + 1) : _random.Next(tar.Length / RawTar.Block + 1) * RawTar.Block;
        Log.Add($"truncated to {cut} of {tar.Length} bytes");
        return tar[..cut];
    }

    private void FlipHeaderBytes(byte[] chunk, int index)
    {
        var flips = 1 + _random.Next(8);
        for (var i = 0; i < flips; i++)
        {
            chunk[_random.Next(RawTar.Block)] ^= (byte)(1 << _random.Next(8));
        }

        var fix = _random.Chance(0.5);
        if (fix)
        {
            RawTar.FixChecksum(chunk);
        }

        Log.Add($"flipped {flips} header bits in chunk {index}{(fix ? ", checksum fixed" : string.Empty)}");
    }

    private void SetRandomField(byte[] chunk, int index)
    {
        var (name, offset, length) = _random.Pick(RawTar.Fields);
        byte[] value = name switch
        {
            "name" or "linkname" or "prefix" => Encoding.UTF8.GetBytes(_random.Chance(0.5) ? HostileName() : HostileLinkTarget()),
            "typeflag" => [_random.Chance(0.5) ? _random.Pick(InterestingTypes) : (byte)_random.Next(256)],
            "magic" => _random.Pick<byte[]>(["ustar\0"u8.ToArray(), "ustar "u8.ToArray(), "USTAR\0"u8.ToArray(), Garbage(6), new byte[6]]),
            "version" => _random.Pick<byte[]>(["00"u8.ToArray(), "  "u8.ToArray(), Garbage(2)]),
            "uname" or "gname" => _random.Chance(0.5) ? Garbage(length) : Encoding.UTF8.GetBytes(HostileName()),
            _ => NumberField(length),
        };
        RawTar.PutBytes(chunk, offset, length, value);
        var fix = name != "chksum" && _random.Chance(0.85);
        if (fix)
        {
            RawTar.FixChecksum(chunk);
        }
        else if (name == "chksum" && _random.Chance(0.3))
        {
            // The signed-byte checksum some historic writers used, which the reader also accepts.
            RawTar.PutText(chunk, 148, 8, Convert.ToString(RawTar.Checksum(chunk, signed: true) & 0x1fffff, 8).PadLeft(6, '0') + "\0 ");
        }

        Log.Add($"set {name} of chunk {index} to {Describe(value)}{(fix ? ", checksum fixed" : string.Empty)}");
    }

    private void SetName(byte[] chunk, int index)
    {
        var name = HostileName();
        if (Encoding.UTF8.GetByteCount(name) > 100 && _random.Chance(0.5))
        {
            // Split into the POSIX prefix field and the name field.
            var bytes = Encoding.UTF8.GetBytes(name);
            var cut = Math.Min(155, Math.Max(0, bytes.Length - 100));
            RawTar.PutBytes(chunk, 345, 155, bytes.AsSpan(0, cut));
            RawTar.PutBytes(chunk, 0, 100, bytes.AsSpan(Math.Min(bytes.Length, cut + 1)));
            "ustar\0"u8.CopyTo(chunk.AsSpan(257));
        }
        else
        {
            RawTar.PutText(chunk, 0, 100, name);
        }

        RawTar.FixChecksum(chunk);
        Log.Add($"named chunk {index} '{Fuzz.Printable(name)}'");
    }

    private void SetLink(byte[] chunk, int index)
    {
        var target = HostileLinkTarget();
        RawTar.PutText(chunk, 157, 100, target);
        if (_random.Chance(0.7))
        {
            chunk[156] = _random.Chance(0.8) ? TarHeader.LF_SYMLINK : TarHeader.LF_LINK;
        }

        RawTar.FixChecksum(chunk);
        Log.Add($"linked chunk {index} (type '{(char)chunk[156]}') to '{Fuzz.Printable(target)}'");
    }

    /// <summary>A new member: optional PAX / GNU records, a header with hostile fields, and data.</summary>
    private List<byte[]> NewEntry()
    {
        var result = new List<byte[]>();
        var typeFlag = _random.Chance(0.8)
            ? _random.Pick([TarHeader.LF_NORMAL, TarHeader.LF_NORMAL, TarHeader.LF_DIR, TarHeader.LF_SYMLINK, TarHeader.LF_SYMLINK, TarHeader.LF_LINK, TarHeader.LF_OLDNORM, TarHeader.LF_FIFO, TarHeader.LF_CHR])
            : (byte)_random.Next(256);
        var name = HostileName();
        if (typeFlag == TarHeader.LF_DIR && _random.Chance(0.7) && !name.EndsWith('/'))
        {
            name += "/";
        }

        var link = typeFlag is TarHeader.LF_SYMLINK or TarHeader.LF_LINK || _random.Chance(0.1) ? HostileLinkTarget() : string.Empty;
        var data = typeFlag is TarHeader.LF_NORMAL or TarHeader.LF_OLDNORM || _random.Chance(0.1) ? Garbage(_random.Next(_random.Chance(0.8) ? 600 : 3000)) : [];
        long size = data.Length;
        if (_random.Chance(0.15))
        {
            size = _random.Pick([size + 1, size - 1, size + 512, 0, -1, 1L << 40, long.MaxValue, long.MinValue, (1L << 33) - 1, 16L << 30, (16L << 30) + 1]);
        }

        var headerName = name;
        var headerLink = link;
        var route = _random.Next(4);
        if (route == 1 || (route == 0 && Encoding.UTF8.GetByteCount(name) > 100 && _random.Chance(0.5)))
        {
            var records = new List<(string, string)> { ("path", name) };
            if (link.Length > 0 && _random.Chance(0.7))
            {
                records.Add(("linkpath", link));
                headerLink = "stand-in";
            }

            if (_random.Chance(0.3))
            {
                records.Add(("size", size.ToString(CultureInfo.InvariantCulture)));
            }

            if (_random.Chance(0.3))
            {
                records.Add(_random.Pick(PaxValues()));
            }

            result.Add(PaxChunk(records));
            headerName = _random.Chance(0.5) ? "stand-in" : HostileName();
        }
        else if (route == 2)
        {
            result.Add(GnuLongChunk(TarHeader.LF_GNU_LONGNAME, name));
            if (link.Length > 0 && _random.Chance(0.7))
            {
                result.Add(GnuLongChunk(TarHeader.LF_GNU_LONGLINK, link));
                headerLink = "stand-in";
            }

            headerName = "././@LongLink";
        }

        var header = RawTar.Header(
            headerName,
            typeFlag,
            size,
            headerLink,
            mode: _random.Chance(0.8) ? 0b110_100_100 : _random.Next(0x10000),
            uid: _random.Chance(0.8) ? 0 : _random.Pick([1000L, -1L, uint.MaxValue, (long)uint.MaxValue + 1, long.MaxValue, 0x1fffff]),
            gid: _random.Chance(0.8) ? 0 : _random.Pick([1000L, -1L, uint.MaxValue, (long)uint.MaxValue + 1]),
            mtime: _random.Chance(0.8) ? 1_700_000_000 : _random.Pick([-1L, 0L, long.MaxValue, long.MinValue, 1L << 40, 253402300800L]),
            gnuMagic: _random.Chance(0.2));
        if (_random.Chance(0.1))
        {
            // Same name through the POSIX prefix field (only read with the POSIX magic).
            RawTar.PutText(header, 345, 155, HostileName());
            RawTar.FixChecksum(header);
        }

        result.Add(RawTar.Chunk(header, data));
        Log.Add($"inserted type '{Fuzz.Printable(((char)typeFlag).ToString())}' entry '{Fuzz.Printable(name)}' -> '{Fuzz.Printable(link)}' size {size} ({data.Length} data bytes) via {(route switch { 1 => "PAX", 2 => "GNU long name", _ => "header" })}");
        return result;
    }

    private byte[] PaxChunk(List<(string Key, string Value)>? records = null)
    {
        byte[] data;
        if (records is null)
        {
            records = [];
            var count = 1 + _random.Next(4);
            for (var i = 0; i < count; i++)
            {
                records.Add(_random.Pick(PaxValues()));
            }
        }

        if (_random.Chance(0.25))
        {
            data = MalformedPax(records);
        }
        else
        {
            data = [.. records.SelectMany(r => RawTar.PaxRecord(r.Key, r.Value))];
            Log.Add($"PAX {string.Join(", ", records.Select(r => $"{r.Key}='{Fuzz.Printable(r.Value, 60)}'"))}");
        }

        var declared = (long)data.Length;
        if (_random.Chance(0.1))
        {
            declared = _random.Pick([-1L, declared + 1, declared - 1, (1 << 20) + 1, long.MaxValue, 0]);
            Log.Add($"PAX header declares {declared} bytes for {data.Length}");
        }

        var typeFlag = _random.Chance(0.9) ? TarHeader.LF_XHDR : TarHeader.LF_GHDR;
        return RawTar.Chunk(RawTar.Header("././@PaxHeader", typeFlag, declared), data);
    }

    private byte[] MalformedPax(List<(string Key, string Value)> records)
    {
        var valid = records.SelectMany(r => RawTar.PaxRecord(r.Key, r.Value)).ToArray();
        var choice = _random.Next(11);
        byte[] data = choice switch
        {
            0 => [.. valid, .. "2147483647 path=x\n"u8],
            1 => [.. valid, .. "2147483600 path=x\n"u8],
            2 => [.. "99999999999999999999 path=x\n"u8],
            3 => [.. "-5 a=b\n"u8],
            4 => [.. "0 a=b\n"u8],
            5 => [.. "5 a=b\n"u8],
            6 => [.. "7 =bcd\n"u8],
            7 => [.. "8 abcdef"u8],
            8 => [.. valid[..Math.Max(0, valid.Length - 1 - _random.Next(Math.Max(1, valid.Length)))]],
            9 => [.. "+9 a=bc\n"u8],
            _ => Garbage(1 + _random.Next(300)),
        };
        Log.Add($"malformed PAX #{choice}: {Describe(data)}");
        return data;
    }

    private byte[] GnuLongChunk(byte typeFlag, string? value = null)
    {
        value ??= typeFlag == TarHeader.LF_GNU_LONGNAME ? HostileName() : HostileLinkTarget();
        var data = Encoding.UTF8.GetBytes(value + (_random.Chance(0.8) ? "\0" : string.Empty));
        long declared = data.Length;
        if (_random.Chance(0.1))
        {
            declared = _random.Pick([-1L, declared + 600, (1 << 20) + 1, long.MaxValue]);
        }

        Log.Add($"GNU '{(char)typeFlag}' record '{Fuzz.Printable(value)}' declaring {declared} bytes");
        return RawTar.Chunk(RawTar.Header("././@LongLink", typeFlag, declared), data);
    }

    public string HostileName()
    {
        var root = _random.Pick(_targets.Roots);
        var p = root.EntryPrefix;
        var existing = _targets.ExistingNames.Count > 0 ? _random.Pick(_targets.ExistingNames) : p + "/";
        var sentinel = _targets.SentinelPath;
        string[] names =
        [
            p, p + "/", p + "/x", p + "/x/", p + "/new-file", p + "/dir/sub/file",
            p + "/../x", p + "/..", p + "/x/..", p + "/x/../y", p + "/../../../../" + sentinel.TrimStart('/') + "/pwned",
            "../sentinel/pwned", "../../sentinel/pwned", "../../../../../../../../" + sentinel.TrimStart('/') + "/pwned",
            sentinel.TrimStart('/') + "/pwned", sentinel + "/pwned", "/" + p + "/x", "/" + p, "//" + p + "/x",
            p + "//x", p + "/./x", p + "/x/.", p + "/.", "./" + p + "/x", ".", "..", "", "/", "//",
            p + "\0/x", p + "/x\0", p + "/x\0/../../../sentinel", "\0",
            p + "/" + Segment255, p + "/" + Segment256, p + "/" + Segment400Bytes,
            p + "/" + Deep1800, p + "/" + Segment5000,
            p + "-evil/x", p.ToUpperInvariant() + "/x", p[..^1], p + "x", p + "/x\\..\\..\\y", p + "/..\\x",
            p + "/\u2024\u2024/x", p + "/\uff0e\uff0e/x", p + "/e\u0301", p + "/\u00e9", p + "/\ufffd", p + "/ ../x",
            p + "/.../x", p + "/.. /x", p + "/x\n/../..", p + "/\u202e",
            existing, existing.TrimEnd('/'), existing.TrimEnd('/') + "/", existing.TrimEnd('/') + "/child",
            existing.TrimEnd('/') + "/../" + existing.TrimEnd('/'),
        ];
        return _random.Pick(names);
    }

    public string HostileLinkTarget()
    {
        var root = _random.Pick(_targets.Roots);
        var other = _random.Pick(_targets.Roots);
        var sentinel = _targets.SentinelPath;
        var existing = _targets.ExistingNames.Count > 0 ? _random.Pick(_targets.ExistingNames) : root.EntryPrefix;
        var existingRelative = existing.Length > root.EntryPrefix.Length + 1 && existing.StartsWith(root.EntryPrefix + "/", StringComparison.Ordinal)
            ? existing[(root.EntryPrefix.Length + 1)..].TrimEnd('/')
            : "x";
        string[] targets =
        [
            "", "/", ".", "..", "../..", "../../..", "../../../../../../..", "../sentinel", "../../sentinel/x",
            sentinel, sentinel + "/x", sentinel + "/../sentinel", "/etc", "/etc/passwd", "/proc/self/root",
            root.Path, root.Path + "/", root.Path + "/x", root.Path + "/../sentinel", root.Path + "/./x", root.Path + "//x",
            "/" + root.Path, "/./" + root.Path.TrimStart('/'), root.Path + "-evil", root.Path[..^1], other.Path + "/x",
            "x", "x/y", "./x", "x/", "x/..", "x/../..", "self/..", "../x", "../../x", "a/b/../../..", ".././..",
            "x\0/../..", "\0", Segment5000, Deep4080,
            "..\\..\\..", existingRelative, "../" + existingRelative, existingRelative + "/..", existingRelative + "/x",
            "/" + existing, "/" + existing.TrimEnd('/') + "/x",
        ];
        return _random.Pick(targets);
    }

    private List<(string Key, string Value)> PaxValues()
    {
        var name = HostileName();
        var link = HostileLinkTarget();
        return
        [
            ("path", name), ("path", name), ("linkpath", link), ("linkpath", link),
            ("size", _random.Pick(["-1", "0", "1", "600", "99999999999999999999", "9223372036854775807", "-9223372036854775808", "1e3", "0x10", " 5", "", "+5", "٣", "17179869185"])),
            ("uid", _random.Pick(["-1", "0", "4294967295", "4294967296", "abc", "", "9223372036854775808", "1000"])),
            ("gid", _random.Pick(["-1", "0", "4294967295", "4294967296", "abc", "", "1000"])),
            ("mtime", _random.Pick(["-1.5", "1.", ".5", "-", "", "-9223372036854775808.5", "-9223372036854775808", "9223372036854775807.999999999", "1.9999999999999", "1.-5", "1e9", "abc", "١٢", "1700000000.123456789", "-0.000000001", "99999999999999999999"])),
            ("atime", "x"), ("ctime", "-1"), ("uname", Segment5000), ("gname", "\0"), ("charset", "ISO-IR 10646 2000 UTF-8"),
            ("hdrcharset", "BINARY"), ("comment", "hello"),
            ("GNU.sparse.map", "0,10"), ("GNU.sparse.size", "10"), ("GNU.sparse.major", "1"),
            ("SCHILY.xattr.security.capability", "\u0001"), ("LIBARCHIVE.xattr.user.x", "eA=="),
            ("path", Segment16K), (Segment256, "v"), ("x=y", "z"), ("key with space", "v"),
        ];
    }

    private byte[] NumberField(int length)
    {
        var choice = _random.Next(14);
        var field = new byte[length];
        switch (choice)
        {
            case 0:
                RawTar.PutText(field, 0, length, Convert.ToString(_random.NextInt64(0, 1L << Math.Min(62, 3 * (length - 1))), 8).PadLeft(length - 1, '0'));
                break;
            case 1:
                // All digits, no terminator.
                RawTar.PutText(field, 0, length, new string((char)('0' + _random.Next(8)), length));
                break;
            case 2:
                RawTar.PutText(field, 0, length, "   " + Convert.ToString(_random.Next(1000), 8) + " ");
                break;
            case 3:
                RawTar.PutText(field, 0, length, _random.Pick(["12a", "-1", "+1", "0x1f", "1e5", "8", "9", "1 2", " ", "0\u00001", "\t1"]));
                break;
            case 4:
                RawTar.PutBase256(field, 0, length, _random.NextInt64(0, 1L << 40));
                break;
            case 5:
                RawTar.PutBase256(field, 0, length, -_random.NextInt64(1, 1L << 40));
                break;
            case 6:
                field.AsSpan().Fill(0xff);
                break;
            case 7:
                field[0] = 0x80;
                field.AsSpan(1).Fill(0xff);
                break;
            case 8:
                field.AsSpan().Fill((byte)' ');
                break;
            case 9:
                break;
            case 10:
                field = Garbage(length);
                break;
            case 11:
                field[0] = (byte)(0x80 | _random.Next(0x80));
                _random.NextBytes(field.AsSpan(1));
                break;
            case 12:
                RawTar.PutText(field, 0, length, "77777777777777777777".PadRight(length, '7'));
                break;
            default:
                RawTar.PutText(field, 0, length, "0000000");
                break;
        }

        return field;
    }

    private byte[] Garbage(int length)
    {
        var bytes = new byte[length];
        _random.NextBytes(bytes);
        return bytes;
    }

    private static string Describe(byte[] value)
    {
        var text = Encoding.UTF8.GetString(value);
        return value.Any(b => b is < 0x20 or >= 0x7f) ? Convert.ToHexString(value.AsSpan(0, Math.Min(value.Length, 48))) : $"'{Fuzz.Printable(text, 80)}'";
    }
}
