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
    /// <summary>
    /// No restore or first boot was recorded here: a node set up by hand that has since taken a
    /// fencing generation (a restore by hand that was rolled back, say). Backups are allowed only
    /// where a missing state file would allow them (without <c>Schedule:RequireRestoredNode</c>).
    /// </summary>
    Manual,
}

public sealed record NodeState(NodeStatus Status, DateTimeOffset At, string? BackupId, string? InstanceId, string? Reason)
{
    /// <summary>The fencing generation this node took when it restored or first-booted (see <see cref="Fencing.GenerationLedger"/>).</summary>
    public long? Generation { get; init; }

    /// <summary>
    /// A generation this node is taking: recorded here (fsync'd) before it is created in the store,
    /// with <see cref="PendingClaim"/>, the token the store's copy carries. If the node died in
    /// between, the store tells which way it went: the generation there with this claim is this
    /// node's (<see cref="Fencing.GenerationLedger.HeldAsync"/>); otherwise it never took it.
    /// </summary>
    public long? PendingGeneration { get; init; }

    /// <inheritdoc cref="PendingGeneration"/>
    public string? PendingClaim { get; init; }

    /// <summary>What the agent's registry check after the restore found (Agent:CheckRegistryAfterRestore); null when none ran.</summary>
    public RegistryCheckSummary? RegistryCheck { get; init; }
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

    /// <summary>
    /// Replaces the file as one step (0600 from creation, fsync'd, renamed, directory fsync'd): a
    /// crash leaves the old state or the new one, never a torn or empty file.
    /// </summary>
    public static void Write(string path, NodeState state) =>
        // 0644: it holds no secret, and in continuous mode PostgreSQL's archive_command
        // (registry-dr wal-push, as the server's user) reads the generation in it.
        Secrets.PrivateFiles.WriteAtomically(path, JsonSerializer.SerializeToUtf8Bytes(state, Json), readable: true);

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
            { Status: NodeStatus.Manual } => $"the node state file {path} records no restore on this node (a node set up by hand; {state.Reason ?? "no reason recorded"}); with Schedule:RequireRestoredNode only a node that restored or first-booted writes backups",
            { Status: NodeStatus.Restored or NodeStatus.FirstBoot } => null,
            _ => $"this node's state is {state.Status} ({path}, {state.At:u}{(state.Reason is null ? "" : ": " + state.Reason)}); a node that did not restore successfully must not write backups",
        };
    }
}
