using System.Globalization;
using System.Text;
using System.Text.Json.Serialization;
using RegistryDR.Backup;

namespace RegistryDR.Retention;

[JsonConverter(typeof(JsonStringEnumConverter<RetentionAction>))]
public enum RetentionAction { Keep, Delete }

/// <summary>What retention does with one set, and why.</summary>
public sealed record RetentionDecision(
    string BackupId,
    DateTimeOffset Time,
    [property: JsonConverter(typeof(JsonStringEnumConverter<BackupSetState>))] BackupSetState State,
    bool Verified,
    long Size,
    RetentionAction Action,
    IReadOnlyList<string> Reasons);

/// <summary>Every set in the store with Keep or Delete, newest first; what <c>prune --dry-run</c> shows.</summary>
public sealed record RetentionPlan(DateTimeOffset PlannedAt, IReadOnlyList<RetentionDecision> Sets)
{
    public int KeepCount => Sets.Count(s => s.Action == RetentionAction.Keep);
    public int DeleteCount => Sets.Count(s => s.Action == RetentionAction.Delete);
    public long DeleteBytes => Sets.Where(s => s.Action == RetentionAction.Delete).Sum(s => s.Size);

    /// <summary>The continuous archive's base backups and WAL (<c>Database:Mode</c> Continuous); null when not planned.</summary>
    public Continuous.ContinuousRetentionPlan? Continuous { get; init; }

    /// <summary>One line per set: id, KEEP or DELETE, the reasons (and whether it carries a verification record).</summary>
    public string Render()
    {
        var text = new StringBuilder();
        foreach (var s in Sets)
        {
            text.Append(CultureInfo.InvariantCulture, $"{s.BackupId}  {(s.Action == RetentionAction.Keep ? "KEEP  " : "DELETE")}  {string.Join("; ", s.Reasons)}");
            if (s.Verified) text.Append(" [verified]");
            text.Append('\n');
        }
        if (Continuous is { } c && (c.BaseBackups.Sets.Count > 0 || c.Wal.Keep + c.Wal.Delete.Count > 0))
        {
            foreach (var s in c.BaseBackups.Sets)
                text.Append(CultureInfo.InvariantCulture, $"base {s.BackupId}  {(s.Action == RetentionAction.Keep ? "KEEP  " : "DELETE")}  {string.Join("; ", s.Reasons)}{(s.Verified ? " [verified]" : "")}\n");
            if (c.Wal.KeepFrom is null)
                text.Append(CultureInfo.InvariantCulture, $"WAL: keep all {c.Wal.Keep} archived file(s) (no kept base backup says which are needed{(c.Wal.KeptBecauseOf is null ? "" : ": " + c.Wal.KeptBecauseOf + " has an unreadable manifest")})\n");
            else
                text.Append(CultureInfo.InvariantCulture, $"WAL: DELETE {c.Wal.Delete.Count} file(s) ({c.Wal.DeleteBytes} bytes) before {c.Wal.KeepFrom}; KEEP {c.Wal.Keep} from there (oldest kept base backup {c.Wal.KeptBecauseOf})\n");
        }
        return text.ToString();
    }
}
