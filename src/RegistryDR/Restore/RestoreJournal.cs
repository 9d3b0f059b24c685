using System.Text.Json;
using RegistryDR.Configuration;

namespace RegistryDR.Restore;

/// <summary>
/// A restore's own record of how far it got, in a private file next to the node state
/// (<c>restore-journal.json</c> beside <c>Agent:StateFile</c>), so that a restore killed part-way
/// (SIGKILL, a power cut) is found by the next <c>restore</c>, by the worker at start and by
/// <c>status</c>, and rolled back or finished (<see cref="InterruptedRestore"/>).
/// </summary>
/// <remarks>
/// Each phase is recorded, fsync'd, <em>before</em> the restore does it: the journal may claim a
/// step that did not happen, never miss one that did; recovery checks the node itself (which
/// databases and directories exist) before undoing a step. A restore holds an exclusive lock
/// (flock(2) on <c>restore.lock</c>) from start to end, so two restores never run at once and
/// recovery never touches a restore that is still alive: the kernel drops the lock when the
/// process dies, whatever killed it.
/// </remarks>
public sealed class RestoreJournal : IDisposable
{
    /// <summary>
    /// The phases, in order. Recovery rolls back anything before <see cref="Healthy"/> and finishes the clean-up after it.
    /// A point-in-time restore (continuous mode) goes through the same phases: its <see cref="LoadDatabase"/> is the
    /// replay in a rehearsal server, <see cref="StopRegistry"/> also stops PostgreSQL, <see cref="SwapDatabase"/> swaps
    /// the data directory (<see cref="Entry.DataDirectory"/>) and <see cref="StartRegistry"/> starts PostgreSQL first.
    /// </summary>
    public static class Phases
    {
        public const string Download = "download";
        public const string Extract = "extract config";
        public const string LoadDatabase = "restore database";
        public const string StopRegistry = "stop registry";
        public const string SwapDatabase = "swap database";
        public const string SwapDirectories = "swap directories";
        public const string StartRegistry = "start registry";
        public const string Healthy = "healthy";

        internal static readonly string[] Order = [Download, Extract, LoadDatabase, StopRegistry, SwapDatabase, SwapDirectories, StartRegistry, Healthy];

        /// <summary>Whether <paramref name="phase"/> is <paramref name="other"/> or later.</summary>
        public static bool Reached(string phase, string other) => Array.IndexOf(Order, phase) >= Array.IndexOf(Order, other);
    }

    /// <summary>One config directory's way into place.</summary>
    /// <param name="StagingParent">The private (0700) directory beside the target holding the extracted tree as <c>tree</c>.</param>
    public sealed record DirectoryRecord(string Target, string StagingParent, string Previous)
    {
        public string StagingTree => Path.Combine(StagingParent, "tree");
    }

    public sealed record Entry
    {
        public required string BackupId { get; init; }
        public required int ProcessId { get; init; }
        public required string Host { get; init; }
        public required DateTimeOffset StartedAt { get; init; }
        public required string Phase { get; init; }
        public required string Staging { get; init; }
        public required string Database { get; init; }
        /// <summary>Logical restore: the database loaded beside the live one; null for a point-in-time restore.</summary>
        public string? ScratchDatabase { get; init; }
        /// <summary>Logical restore: the name the live database is renamed to; null for a point-in-time restore.</summary>
        public string? PreviousDatabase { get; init; }
        /// <summary>
        /// Point-in-time restore: the PostgreSQL data directory's swap (the whole cluster is the
        /// database swapped); null for a logical restore. PostgreSQL is stopped (Continuous:ServerStopCommand)
        /// before recovery moves it and started again after.
        /// </summary>
        public DirectoryRecord? DataDirectory { get; init; }
        public required bool KeepPrevious { get; init; }
        public IReadOnlyList<DirectoryRecord> Directories { get; init; } = [];
        /// <summary>Whether the live database (the data directory, for a point-in-time restore) existed when the swap began (known from <see cref="Phases.SwapDatabase"/> on).</summary>
        public bool? DatabaseExisted { get; init; }
        /// <summary>Per directory (same order), whether the target existed when the swap began.</summary>
        public IReadOnlyList<bool>? TargetsExisted { get; init; }
        /// <summary>The fencing generation taken just before the swap, if any.</summary>
        public long? Generation { get; init; }
    }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };
    private readonly FileStream _lock;

    private RestoreJournal(string path, FileStream held)
    {
        FilePath = path;
        _lock = held;
    }

    /// <summary>The journal file.</summary>
    public string FilePath { get; }

    public static string PathFor(RegistryDrOptions options) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(options.Agent.StateFile))!, "restore-journal.json");

    private static string LockPathFor(RegistryDrOptions options) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(options.Agent.StateFile))!, "restore.lock");

    /// <summary>
    /// Takes the restore lock; null when another process holds it (a restore is running). The
    /// directory is created 0700 if missing; the lock file itself holds nothing.
    /// </summary>
    public static RestoreJournal? TryAcquire(RegistryDrOptions options)
    {
        var lockPath = LockPathFor(options);
        Secrets.PrivateFiles.EnsureDirectory(Path.GetDirectoryName(lockPath)!);
        try
        {
            var held = new FileStream(lockPath, new FileStreamOptions
            {
                Mode = FileMode.OpenOrCreate,
                Access = FileAccess.ReadWrite,
                Share = FileShare.None,
                UnixCreateMode = Secrets.PrivateFiles.FileMode,
            });
            return new RestoreJournal(PathFor(options), held);
        }
        catch (IOException) when (File.Exists(lockPath))
        {
            return null;
        }
    }

    /// <summary>What another process's journal says, without the lock (for messages: which restore is running).</summary>
    public static Entry? Peek(RegistryDrOptions options) => ReadFile(PathFor(options));

    /// <summary>The interrupted (or current) restore's record, or null when there is none.</summary>
    public Entry? Read() => ReadFile(FilePath);

    private static Entry? ReadFile(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<Entry>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException)
        {
            return null; // written atomically, so only a hand edit gets here; treated as none
        }
    }

    /// <summary>Records <paramref name="entry"/> (0600, fsync'd, atomic).</summary>
    public void Write(Entry entry)
    {
        Secrets.PrivateFiles.WriteAtomically(FilePath, JsonSerializer.SerializeToUtf8Bytes(entry, Json));
        Current = entry;
    }

    /// <summary>What this process last recorded.</summary>
    public Entry? Current { get; private set; }

    /// <summary>Records a change to the current entry, before the step it describes is taken.</summary>
    public void Record(Func<Entry, Entry> change) => Write(change(Current ?? throw new InvalidOperationException("Nothing recorded yet.")));

    /// <summary>Records that the restore is entering <paramref name="phase"/>.</summary>
    public void Enter(string phase) => Record(e => e with { Phase = phase });

    /// <summary>The restore ended (done, or fully rolled back): nothing left to recover.</summary>
    public void Delete()
    {
        File.Delete(FilePath);
        Secrets.PrivateFiles.SyncDirectory(Path.GetDirectoryName(FilePath)!);
    }

    public void Dispose() => _lock.Dispose();
}
