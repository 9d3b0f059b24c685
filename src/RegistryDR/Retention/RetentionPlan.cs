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
        return text.ToString();
    }
}
