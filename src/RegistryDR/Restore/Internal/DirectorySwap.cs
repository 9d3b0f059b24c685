using RegistryDR.Archive.Internal;

namespace RegistryDR.Restore.Internal;

/// <summary>
/// One directory's way into place by renames on one file system, shared by the logical restore
/// (each config directory) and the point-in-time restore (the config directories and the
/// PostgreSQL data directory): the target goes to <see cref="PreviousPath"/>, the staged tree
/// (<see cref="StagingPath"/>, inside the private <see cref="StagingParent"/> beside the target) to
/// the target; <see cref="Undo"/> reverses both. <see cref="Record"/> is what the
/// <see cref="RestoreJournal"/> keeps of it, so that <see cref="InterruptedRestore"/> can judge and
/// undo a swap whose process was killed between (or after) the two renames.
/// </summary>
internal sealed class DirectorySwap
{
    public required string TargetPath { get; init; }
    /// <summary>The archive entry prefix extracted into it (config directories; null for a data directory).</summary>
    public string? EntryPrefix { get; init; }
    /// <summary>Private (0700) directory beside the target; the staged tree is <see cref="StagingPath"/> inside it, so nobody else can reach the tree before the swap, and the tree itself keeps its own modes.</summary>
    public required string StagingParent { get; init; }
    public string StagingPath => Record.StagingTree;
    public required string PreviousPath { get; init; }
    public bool Applied { get; private set; }
    private bool _hadPrevious;

    public RestoreJournal.DirectoryRecord Record => new(TargetPath, StagingParent, PreviousPath);

    /// <summary>Whether the target exists now (recorded before the swap: recovery must know whether a tree there is the restored one).</summary>
    public bool TargetExists => Directory.Exists(TargetPath) || File.Exists(TargetPath);

    /// <summary>
    /// A config directory's swap: staging <c>.&lt;name&gt;.registry-dr-restore-&lt;tag&gt;</c> and previous
    /// <c>.&lt;name&gt;.registry-dr-prev-&lt;tag&gt;</c> beside <paramref name="target"/> (names
    /// <see cref="RestoreLeftovers"/> knows).
    /// </summary>
    public static DirectorySwap For(string target, string? entryPrefix, string tag)
    {
        target = Path.TrimEndingDirectorySeparator(target);
        var parent = Path.GetDirectoryName(target)!;
        var name = Path.GetFileName(target);
        return new DirectorySwap
        {
            TargetPath = target,
            EntryPrefix = entryPrefix,
            StagingParent = Path.Combine(parent, $".{name}{RestoreLeftovers.ConfigStagingMarker}{tag}"),
            PreviousPath = Path.Combine(parent, $".{name}{RestoreLeftovers.ConfigPreviousMarker}{tag}"),
        };
    }

    /// <summary>Creates the private staging parent and the empty tree to extract into (removing a leftover of the same name first).</summary>
    public void PrepareStaging()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(TargetPath)!);
        UnixFileSystem.DeleteTree(StagingParent); // names need not be UTF-8
        Secrets.PrivateFiles.CreateNewDirectory(StagingParent);
        Directory.CreateDirectory(StagingPath);
    }

    public void Apply()
    {
        UnixFileSystem.DeleteTree(PreviousPath);
        _hadPrevious = TargetExists;
        if (_hadPrevious) Directory.Move(TargetPath, PreviousPath);
        try
        {
            Directory.Move(StagingPath, TargetPath);
        }
        catch
        {
            if (_hadPrevious) Directory.Move(PreviousPath, TargetPath);
            throw;
        }
        Applied = true;
    }

    public void Undo()
    {
        if (!Applied) return;
        Directory.Move(TargetPath, StagingPath);
        if (_hadPrevious) Directory.Move(PreviousPath, TargetPath);
        Applied = false;
    }

    public void DeletePrevious()
    {
        if (_hadPrevious) UnixFileSystem.DeleteTree(PreviousPath);
    }

    public void DeleteStaging()
    {
        try { UnixFileSystem.DeleteTree(StagingParent); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
