using System.Runtime.InteropServices;

namespace RegistryDR.Secrets;

/// <summary>
/// Files and directories that can hold a secret (roles' SCRAM hashes, private keys in the config
/// archive, the node state), private from the moment they exist: created with mode 0600 or 0700
/// by open(2)/mkdir(2) themselves, never created open and chmod'ed after (the umask can only take
/// bits away from these). Also the atomic, fsync'd replacement of small state files.
/// </summary>
public static partial class PrivateFiles
{
    /// <summary>rw------- (0600).</summary>
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>rwx------ (0700).</summary>
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>rw-r--r-- (0644): for the few files that hold no secret and another user must read (see <see cref="WriteAtomically"/>).</summary>
    public const UnixFileMode ReadableFileMode = FileMode | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    /// <summary>rwxr-xr-x (0755): a directory that holds only such files.</summary>
    public const UnixFileMode ReadableDirectoryMode = DirectoryMode | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    /// <summary>
    /// Creates <paramref name="path"/> as a new 0700 directory (missing parents 0700 as well). Throws <see cref="IOException"/> when it already exists: a directory someone
    /// else made (with whatever mode) must not be taken for ours.
    /// </summary>
    public static void CreateNewDirectory(string path)
    {
        var parent = Path.GetDirectoryName(Path.GetFullPath(path));
        // Parents RegistryDR has to create (a staging root that does not exist yet) are 0700 too,
        // whatever the umask; an existing one keeps its owner's mode.
        if (parent is not null && !Directory.Exists(parent)) Directory.CreateDirectory(parent, DirectoryMode);
        if (Mkdir(path, (uint)DirectoryMode) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"Could not create the private directory '{path}': {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
        }
    }

    /// <summary>Creates the directory 0700 if it does not exist; an existing one is left with its mode (it may be the operator's).</summary>
    public static void EnsureDirectory(string path)
    {
        if (!Directory.Exists(path)) Directory.CreateDirectory(path, DirectoryMode);
    }

    /// <summary>Opens a new file, mode 0600 from its creation, for writing; fails if it exists.</summary>
    public static FileStream CreateNew(string path, int bufferSize = 4096, FileOptions options = FileOptions.None, UnixFileMode mode = FileMode) =>
        new(path, new FileStreamOptions
        {
            Mode = System.IO.FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
            BufferSize = bufferSize,
            Options = options,
            UnixCreateMode = mode,
        });

    /// <summary>
    /// Replaces <paramref name="path"/> with <paramref name="content"/> as one step a crash cannot
    /// tear: written to a new 0600 temporary beside it, fsync'd, renamed over it, and the
    /// directory fsync'd, so after a power cut the file is either the old one or the new one,
    /// whole. Its directory is created 0700 if missing.
    /// </summary>
    /// <param name="readable">The file holds no secret and another user must read it (0644, its new directory 0755).</param>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> content, bool readable = false)
    {
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(directory)) Directory.CreateDirectory(directory, readable ? ReadableDirectoryMode : DirectoryMode);
        var temp = $"{full}.tmp-{Guid.NewGuid():N}";
        try
        {
            using (var file = CreateNew(temp, mode: readable ? ReadableFileMode : FileMode))
            {
                file.Write(content);
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        SyncDirectory(directory);
    }

    /// <summary>fsync(2) of a directory, so a rename or unlink in it is on disk.</summary>
    public static void SyncDirectory(string directory)
    {
        var fd = Open(directory, ORdOnly | ODirectory | OCloexec);
        if (fd < 0) return; // not fatal: the data itself was fsync'd; the rename may be replayed by the journal
        try { _ = Fsync(fd); }
        finally { _ = Close(fd); }
    }

    /// <summary>Whether others (group or world) can read, write or enter <paramref name="path"/>.</summary>
    public static bool IsPrivate(string path) =>
        (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
                                        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute)) == 0;

    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;
    private const int OCloexec = 0x80000;

    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mkdir(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
