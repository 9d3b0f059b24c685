using System.Globalization;

namespace RegistryDR.Backup;

/// <summary>
/// One way to describe a backup set to a person, used by <c>list</c>, <c>status</c>, the restore
/// plan and <c>backup</c>/<c>verify</c> output alike: a set's time is its recovery point (the
/// start of the backup, when pg_dump's snapshot was taken; docs/decisions.md), written in UTC; sizes
/// are in binary units with one decimal. JSON output keeps exact bytes and ISO 8601 times.
/// </summary>
public static class SetFormat
{
    /// <summary>"2026-05-06 07:08:09 UTC".</summary>
    public static string Time(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + " UTC";

    /// <summary>"812 B", "1.5 KiB", "12.3 MiB", "4.0 GiB", "1.2 TiB" (powers of 1024).</summary>
    public static string Bytes(long bytes)
    {
        string[] units = ["KiB", "MiB", "GiB", "TiB"];
        if (bytes < 1024) return bytes.ToString(CultureInfo.InvariantCulture) + " B";
        var value = (double)bytes;
        var unit = -1;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return value.ToString("F1", CultureInfo.InvariantCulture) + " " + units[unit];
    }
}
