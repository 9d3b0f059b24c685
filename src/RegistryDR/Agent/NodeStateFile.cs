using System.Text.Json;
using System.Text.Json.Serialization;

namespace RegistryDR.Agent;

[JsonConverter(typeof(JsonStringEnumConverter<NodeStatus>))]
public enum NodeStatus
{
    /// <summary>The agent is restoring; the node holds nothing worth backing up yet.</summary>
    Restoring,
    /// <summary>A backup was restored and the registry answered its health check.</summary>
    Restored,
    /// <summary>The store was empty and first boot was explicitly allowed: this node's registry is the original.</summary>
    FirstBoot,
    /// <summary>The agent failed; the node must never write backups.</summary>
    Failed,
}

public sealed record NodeState(NodeStatus Status, DateTimeOffset At, string? BackupId, string? InstanceId, string? Reason)
{
    /// <summary>The fencing generation this node took when it restored or first-booted (see <see cref="Fencing.GenerationLedger"/>).</summary>
    public long? Generation { get; init; }
}

/// <summary>
/// What the bootstrap agent concluded about this node, on local disk. The backup path reads it
/// (when <c>Schedule:RequireRestoredNode</c> is set) so that a node that did not restore can never
/// write a backup: otherwise a fresh, empty registry would become the newest set, and the next
/// replacement would faithfully restore nothing.
/// </summary>
public static class NodeStateFile
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static void Write(string path, NodeState state)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + ".tmp";
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(state, Json));
        File.Move(temp, path, overwrite: true);
    }

    public static NodeState? Read(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<NodeState>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Null when backups may be written; otherwise why not, for the operator.</summary>
    public static string? WhyBackupsAreRefused(string path)
    {
        var state = Read(path);
        return state switch
        {
            null => $"the node state file {path} is missing or unreadable, so this node is not known to have restored a backup; a node that did not restore successfully must not write backups",
            { Status: NodeStatus.Restored or NodeStatus.FirstBoot } => null,
            _ => $"this node's state is {state.Status} ({path}, {state.At:u}{(state.Reason is null ? "" : ": " + state.Reason)}); a node that did not restore successfully must not write backups",
        };
    }
}
