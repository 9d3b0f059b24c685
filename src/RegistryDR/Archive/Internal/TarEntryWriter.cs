using System.Globalization;
using System.Text;
using ICSharpCode.SharpZipLib.Tar;

namespace RegistryDR.Archive.Internal;

/// <summary>What an entry carries beyond its header: ACLs as text, extended attributes as bytes.</summary>
internal sealed record EntryAttributes(string? AccessAcl, string? DefaultAcl, IReadOnlyList<KeyValuePair<string, byte[]>> ExtendedAttributes)
{
    public static readonly EntryAttributes None = new(null, null, []);
}

/// <summary>
/// Writes ustar headers through SharpZipLib's <see cref="TarOutputStream"/>, adding a PAX
/// extended header whenever a value does not fit the classic fields exactly (long or non-ASCII
/// names and link targets, large ids, long account names, times outside 1970..2242 or with
/// nanoseconds) and for ACLs and extended attributes. Without that, SharpZipLib would silently
/// truncate link targets and account names.
/// </summary>
/// <remarks>
/// The ustar fields only ever hold ASCII; everything else is in PAX records written as bytes, the
/// way GNU tar 1.34 writes them: 'path' and 'linkpath' hold a name's own bytes even when they are
/// not UTF-8 (no 'hdrcharset' record, which GNU tar does not know and warns about), 'mtime' has
/// nine decimals, SCHILY.acl.access / SCHILY.acl.default the ACL text, SCHILY.xattr.&lt;name&gt;
/// each attribute's raw value. GNU tar extracts all of it with --acls --xattrs --xattrs-include='*'.
/// </remarks>
internal sealed class TarEntryWriter
{
    private const int NameFieldLength = 100;
    private const int AccountFieldLength = 32;
    private const long MaxOctalId = 0x1fffff; // 7 octal digits
    private const long MaxOctalTime = 0x1_ffff_ffff; // 11 octal digits
    private const string PaxHeaderName = "././@PaxHeader";

    private readonly TarOutputStream _tar;

    public TarEntryWriter(TarOutputStream tar)
    {
        _tar = tar;
    }

    public void PutEntry(string name, byte typeFlag, in UnixFileStatus status, string userName, string groupName, long size, string linkName = "", EntryAttributes? attributes = null)
    {
        var pax = new List<(string Key, byte[] Value)>();
        var headerName = FitOrDefer(name, NameFieldLength, "path", pax);
        var headerLink = FitOrDefer(linkName, NameFieldLength, "linkpath", pax);
        var headerUser = FitOrDefer(userName, AccountFieldLength, "uname", pax);
        var headerGroup = FitOrDefer(groupName, AccountFieldLength, "gname", pax);

        var uid = status.UserId <= MaxOctalId ? (int)status.UserId : Defer(pax, "uid", status.UserId.ToString(CultureInfo.InvariantCulture));
        var gid = status.GroupId <= MaxOctalId ? (int)status.GroupId : Defer(pax, "gid", status.GroupId.ToString(CultureInfo.InvariantCulture));

        var seconds = status.ModifiedSeconds;
        var outOfRange = seconds is < 0 or > MaxOctalTime;
        if (outOfRange || status.ModifiedNanoseconds != 0)
        {
            pax.Add(("mtime", Encoding.ASCII.GetBytes(PaxTime(seconds, status.ModifiedNanoseconds))));
        }

        if (outOfRange)
        {
            seconds = 0;
        }

        attributes ??= EntryAttributes.None;
        if (attributes.AccessAcl is { } accessAcl)
        {
            pax.Add(("SCHILY.acl.access", Encoding.ASCII.GetBytes(accessAcl)));
        }

        if (attributes.DefaultAcl is { } defaultAcl)
        {
            pax.Add(("SCHILY.acl.default", Encoding.ASCII.GetBytes(defaultAcl)));
        }

        foreach (var (attribute, value) in attributes.ExtendedAttributes)
        {
            pax.Add(("SCHILY.xattr." + attribute, value));
        }

        var modified = DateTime.UnixEpoch.AddSeconds(seconds);
        if (pax.Count > 0)
        {
            WritePaxHeader(pax, modified);
        }

        var header = new TarHeader
        {
            Name = headerName,
            TypeFlag = typeFlag,
            Mode = status.Permissions,
            UserId = uid,
            GroupId = gid,
            UserName = headerUser,
            GroupName = headerGroup,
            Size = size,
            ModTime = modified,
            LinkName = headerLink,
            Magic = "ustar",
            Version = "00",
        };
        _tar.PutNextEntry(new TarEntry(header));
    }

    /// <summary>
    /// "seconds.nnnnnnnnn" as GNU tar writes it; a time before the epoch is negative as a whole
    /// ({-2 s, 0.5e9 ns} is "-1.500000000"), as POSIX and the reader read it.
    /// </summary>
    internal static string PaxTime(long seconds, uint nanoseconds)
    {
        if (nanoseconds == 0)
        {
            return seconds.ToString(CultureInfo.InvariantCulture);
        }

        if (seconds >= 0)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{seconds}.{nanoseconds:D9}");
        }

        return string.Create(CultureInfo.InvariantCulture, $"-{-(seconds + 1)}.{1_000_000_000 - nanoseconds:D9}");
    }

    public void Write(byte[] buffer, int count) => _tar.Write(buffer, 0, count);

    public void CloseEntry() => _tar.CloseEntry();

    private void WritePaxHeader(List<(string Key, byte[] Value)> records, DateTime modified)
    {
        var data = new List<byte>();
        foreach (var (key, value) in records)
        {
            data.AddRange(PaxRecord(key, value));
        }

        var header = new TarHeader
        {
            Name = PaxHeaderName,
            TypeFlag = TarHeader.LF_XHDR,
            Mode = 0b110_100_100,
            UserId = 0,
            GroupId = 0,
            UserName = string.Empty,
            GroupName = string.Empty,
            Size = data.Count,
            ModTime = modified,
            Magic = "ustar",
            Version = "00",
        };
        _tar.PutNextEntry(new TarEntry(header));
        var bytes = data.ToArray();
        _tar.Write(bytes, 0, bytes.Length);
        _tar.CloseEntry();
    }

    /// <summary>"LENGTH key=value\n", where LENGTH includes its own digits; the value is bytes.</summary>
    private static byte[] PaxRecord(string key, byte[] value)
    {
        var keyBytes = SurrogateEscape.Encode(key);
        var body = 1 + keyBytes.Length + 1 + value.Length + 1; // " key=value\n"
        var length = body + 1;
        while (length.ToString(CultureInfo.InvariantCulture).Length + body != length)
        {
            length = length.ToString(CultureInfo.InvariantCulture).Length + body;
        }

        return [.. Encoding.ASCII.GetBytes(length.ToString(CultureInfo.InvariantCulture) + " "), .. keyBytes, (byte)'=', .. value, (byte)'\n'];
    }

    /// <summary>
    /// Plain ASCII that fits goes into the header field; anything else goes to PAX as the bytes it
    /// stands for, and the field gets an ASCII stand-in, which readers that understand PAX ignore.
    /// </summary>
    private static string FitOrDefer(string value, int fieldLength, string paxKey, List<(string Key, byte[] Value)> pax)
    {
        if (value.Length <= fieldLength && Ascii.IsValid(value))
        {
            return value;
        }

        pax.Add((paxKey, SurrogateEscape.Encode(value)));
        var standIn = new StringBuilder(fieldLength);
        foreach (var c in value)
        {
            if (standIn.Length == fieldLength)
            {
                break;
            }

            standIn.Append(c is >= ' ' and < '\x7f' ? c : '_');
        }

        return standIn.ToString();
    }

    private static int Defer(List<(string Key, byte[] Value)> pax, string key, string value)
    {
        pax.Add((key, Encoding.ASCII.GetBytes(value)));
        return 0;
    }
}
