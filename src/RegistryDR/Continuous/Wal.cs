using System.Globalization;

namespace RegistryDR.Continuous;

/// <summary>
/// A write-ahead-log position (PostgreSQL's <c>pg_lsn</c>, written <c>X/Y</c> in hex): a byte
/// offset in the log's 64-bit address space.
/// </summary>
public readonly record struct Lsn(ulong Value) : IComparable<Lsn>
{
    /// <summary>Parses PostgreSQL's text form, e.g. <c>0/3000028</c>.</summary>
    public static bool TryParse(string? text, out Lsn lsn)
    {
        lsn = default;
        if (string.IsNullOrEmpty(text)) return false;
        var slash = text.IndexOf('/');
        if (slash <= 0 || slash > 8 || text.Length - slash - 1 is < 1 or > 8) return false;
        if (!uint.TryParse(text.AsSpan(0, slash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var hi) ||
            !uint.TryParse(text.AsSpan(slash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var lo))
            return false;
        lsn = new Lsn(((ulong)hi << 32) | lo);
        return true;
    }

    public static Lsn Parse(string text) => TryParse(text, out var lsn) ? lsn : throw new FormatException($"'{text}' is not a WAL position (X/Y in hex).");

    /// <summary>The segment number that holds this position, for segments of <paramref name="segmentSize"/> bytes.</summary>
    public ulong Segment(long segmentSize) => Value / (ulong)segmentSize;

    public int CompareTo(Lsn other) => Value.CompareTo(other.Value);
    public static bool operator <(Lsn a, Lsn b) => a.Value < b.Value;
    public static bool operator >(Lsn a, Lsn b) => a.Value > b.Value;
    public static bool operator <=(Lsn a, Lsn b) => a.Value <= b.Value;
    public static bool operator >=(Lsn a, Lsn b) => a.Value >= b.Value;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Value >> 32:X}/{Value & 0xFFFFFFFF:X}");
}

/// <summary>What a file in <c>pg_wal</c> (and so in the archive) is.</summary>
public enum WalFileKind
{
    /// <summary><c>TTTTTTTTXXXXXXXXYYYYYYYY</c>: a segment of timeline T.</summary>
    Segment,
    /// <summary><c>TTTTTTTT.history</c>: how timeline T branched off its parents.</summary>
    History,
    /// <summary><c>TTTTTTTTXXXXXXXXYYYYYYYY.partial</c>: the last, incomplete segment of a timeline that was left at promotion.</summary>
    Partial,
    /// <summary><c>TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup</c>: a base backup's history file (start and stop positions).</summary>
    BackupHistory,
}

/// <summary>
/// The name of a file PostgreSQL hands to <c>archive_command</c> (%f), parsed: the names follow
/// PostgreSQL's <c>xlog_internal.h</c> (<c>XLogFileName</c>, <c>TLHistoryFileName</c>,
/// <c>BackupHistoryFileName</c>). Anything else is refused, so no other name can reach the store.
/// </summary>
public sealed record WalFileName(string Name, WalFileKind Kind, uint Timeline, ulong LogId, ulong SegmentInLog)
{
    /// <summary>
    /// The segment's position in the log, in units of segments of <paramref name="segmentSize"/> bytes:
    /// a name's middle and last eight hex digits are the segment number divided by and modulo
    /// 0x100000000 / segment size.
    /// </summary>
    public ulong SegmentNumber(long segmentSize) => LogId * SegmentsPerLogId(segmentSize) + SegmentInLog;

    internal static ulong SegmentsPerLogId(long segmentSize) => 0x1_0000_0000UL / (ulong)segmentSize;

    public static bool TryParse(string? name, out WalFileName? parsed)
    {
        parsed = null;
        if (string.IsNullOrEmpty(name)) return false;
        if (name.Length == 16 && name.EndsWith(".history", StringComparison.Ordinal) && IsHex(name.AsSpan(0, 8)))
        {
            parsed = new WalFileName(name, WalFileKind.History, Hex(name, 0), 0, 0);
            return parsed.Timeline > 0;
        }
        if (name.Length < 24 || !IsHex(name.AsSpan(0, 24))) return false;
        var kind = name.Length switch
        {
            24 => WalFileKind.Segment,
            32 when name.EndsWith(".partial", StringComparison.Ordinal) => WalFileKind.Partial,
            40 when name[24] == '.' && IsHex(name.AsSpan(25, 8)) && name.EndsWith(".backup", StringComparison.Ordinal) => WalFileKind.BackupHistory,
            _ => (WalFileKind?)null,
        };
        if (kind is null) return false;
        parsed = new WalFileName(name, kind.Value, Hex(name, 0), Hex(name, 8), Hex(name, 16));
        return parsed.Timeline > 0;
    }

    /// <summary>The segment file name of timeline <paramref name="timeline"/> holding segment <paramref name="segmentNumber"/>.</summary>
    public static string SegmentName(uint timeline, ulong segmentNumber, long segmentSize)
    {
        var perLog = SegmentsPerLogId(segmentSize);
        return string.Create(CultureInfo.InvariantCulture, $"{timeline:X8}{segmentNumber / perLog:X8}{segmentNumber % perLog:X8}");
    }

    public static string HistoryName(uint timeline) => string.Create(CultureInfo.InvariantCulture, $"{timeline:X8}.history");

    private static uint Hex(string s, int start) => uint.Parse(s.AsSpan(start, 8), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    // PostgreSQL writes upper-case hex; lower case would be a different file to it.
    private static bool IsHex(ReadOnlySpan<char> s)
    {
        foreach (var c in s)
            if (!(char.IsAsciiDigit(c) || c is >= 'A' and <= 'F')) return false;
        return true;
    }

    public override string ToString() => Name;
}

/// <summary>One line of a timeline history file: timeline <see cref="Parent"/> was left at <see cref="SwitchPoint"/>.</summary>
public sealed record TimelineSwitch(uint Parent, Lsn SwitchPoint);

/// <summary>
/// A timeline history file (<c>TTTTTTTT.history</c>), as PostgreSQL writes it in
/// <c>writeTimeLineHistory</c>: one line per ancestor, "parentTLI&lt;tab&gt;switchpoint&lt;tab&gt;reason",
/// oldest first; blank lines and lines starting with '#' are ignored (as <c>readTimeLineHistory</c> does).
/// </summary>
public static class TimelineHistory
{
    public static IReadOnlyList<TimelineSwitch> Parse(string text, uint timeline)
    {
        var result = new List<TimelineSwitch>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            var fields = line.Split(['\t', ' '], 3, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 2 || !uint.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var parent) || !Lsn.TryParse(fields[1], out var at))
                throw new FormatException($"Timeline history {WalFileName.HistoryName(timeline)} has a line that is not 'timeline<TAB>position<TAB>reason': '{line}'.");
            if (parent >= timeline || (result.Count > 0 && (parent <= result[^1].Parent || at < result[^1].SwitchPoint)))
                throw new FormatException($"Timeline history {WalFileName.HistoryName(timeline)} does not list its ancestors in increasing order ('{line}').");
            result.Add(new TimelineSwitch(parent, at));
        }
        return result;
    }
}
