using System.Globalization;
using System.Text;
using ICSharpCode.SharpZipLib.Tar;

namespace RegistryDR.Archive.Internal;

/// <summary>
/// Writes ustar headers through SharpZipLib's <see cref="TarOutputStream"/>, adding a PAX
/// extended header whenever a value does not fit the classic fields exactly (long or non-ASCII
/// names and link targets, large ids, long account names, times outside 1970..2242). Without
/// that, SharpZipLib would silently truncate link targets and account names.
/// </summary>
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

    public void PutEntry(string name, byte typeFlag, in UnixFileStatus status, string userName, string groupName, long size, string linkName = "")
    {
        var pax = new List<(string Key, string Value)>();
        var headerName = FitOrDefer(name, NameFieldLength, "path", pax);
        var headerLink = FitOrDefer(linkName, NameFieldLength, "linkpath", pax);
        var headerUser = FitOrDefer(userName, AccountFieldLength, "uname", pax);
        var headerGroup = FitOrDefer(groupName, AccountFieldLength, "gname", pax);

        var uid = status.UserId <= MaxOctalId ? (int)status.UserId : Defer(pax, "uid", status.UserId.ToString(CultureInfo.InvariantCulture));
        var gid = status.GroupId <= MaxOctalId ? (int)status.GroupId : Defer(pax, "gid", status.GroupId.ToString(CultureInfo.InvariantCulture));

        var seconds = status.ModifiedSeconds;
        if (seconds is < 0 or > MaxOctalTime)
        {
            pax.Add(("mtime", seconds.ToString(CultureInfo.InvariantCulture)));
            seconds = 0;
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

    public void Write(byte[] buffer, int count) => _tar.Write(buffer, 0, count);

    public void CloseEntry() => _tar.CloseEntry();

    private void WritePaxHeader(List<(string Key, string Value)> records, DateTime modified)
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

    /// <summary>"LENGTH key=value\n", where LENGTH includes its own digits.</summary>
    private static byte[] PaxRecord(string key, string value)
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
    /// Plain ASCII that fits goes into the header field; anything else goes to PAX and the field
    /// gets an ASCII stand-in, which readers that understand PAX ignore.
    /// </summary>
    private static string FitOrDefer(string value, int fieldLength, string paxKey, List<(string Key, string Value)> pax)
    {
        if (value.Length <= fieldLength && Ascii.IsValid(value))
        {
            return value;
        }

        pax.Add((paxKey, value));
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

    private static int Defer(List<(string Key, string Value)> pax, string key, string value)
    {
        pax.Add((key, value));
        return 0;
    }
}
