namespace RegistryDR.Continuous.Internal;

/// <summary>
/// One directory's way into place by renames on one file system: the target goes to
/// <see cref="PreviousPath"/>, the staged one to the target; <see cref="Undo"/> reverses both.
/// (The same scheme as the logical restore's config swap.)
/// </summary>
internal sealed class DirectoryMove
{
    public required string TargetPath { get; init; }
    public required string StagingPath { get; init; }
    public required string PreviousPath { get; init; }
    public string? EntryPrefix { get; init; }
    public bool Applied { get; private set; }
    private bool _hadPrevious;

    public static DirectoryMove For(string target, string entryPrefix, string tag)
    {
        target = Path.TrimEndingDirectorySeparator(target);
        var parent = Path.GetDirectoryName(target)!;
        var name = Path.GetFileName(target);
        return new DirectoryMove
        {
            TargetPath = target,
            EntryPrefix = entryPrefix,
            StagingPath = Path.Combine(parent, $".{name}.registry-dr-{tag}"),
            PreviousPath = Path.Combine(parent, $".{name}.registry-dr-prev-{tag[^6..]}"),
        };
    }

    public static DirectoryMove ForDataDirectory(string target, string staged)
    {
        var parent = Path.GetDirectoryName(target)!;
        return new DirectoryMove
        {
            TargetPath = target,
            StagingPath = staged,
            PreviousPath = Path.Combine(parent, $".{Path.GetFileName(target)}.registry-dr-prev-{staged[^6..]}"),
        };
    }

    public void PrepareStaging()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(TargetPath)!);
        if (Directory.Exists(StagingPath)) Directory.Delete(StagingPath, recursive: true);
        Directory.CreateDirectory(StagingPath);
    }

    public void Apply()
    {
        if (Directory.Exists(PreviousPath)) Directory.Delete(PreviousPath, recursive: true);
        _hadPrevious = Directory.Exists(TargetPath) || File.Exists(TargetPath);
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
        if (_hadPrevious && Directory.Exists(PreviousPath)) Directory.Delete(PreviousPath, recursive: true);
    }

    public void DeleteStaging()
    {
        try { if (Directory.Exists(StagingPath)) Directory.Delete(StagingPath, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
