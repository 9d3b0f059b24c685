using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using ICSharpCode.SharpZipLib.GZip;
using ICSharpCode.SharpZipLib.Tar;
using RegistryDR.Archive;
using RegistryDR.Backup;

namespace RegistryDR.Restore;

/// <summary>The disk a restore would write to has too little room; checked before anything is written there.</summary>
public sealed class InsufficientSpaceException(string message) : IOException(message);

/// <summary>
/// Checks, before a byte is written, that a restore fits: the artifacts it downloads in the
/// staging directory, and the config archive's whole uncompressed tree beside each target
/// (the archive has a limit per entry, not on its total). Free space is what an unprivileged
/// writer may use (statvfs f_bavail); each file is counted in whole 4 KiB blocks plus one block
/// per entry, so the need is an upper bound, not a guess.
/// </summary>
internal static partial class SpaceCheck
{
    private const long Block = 4096;

    /// <summary>Room in <paramref name="stagingRoot"/> for every artifact downloaded to staging.</summary>
    public static void CheckStaging(string stagingRoot, BackupManifest manifest, IEnumerable<BackupManifest.Artifact> staged)
    {
        var artifacts = staged.ToList();
        var need = StagingNeed(artifacts);
        var free = Free(stagingRoot);
        if (free < need)
            throw new InsufficientSpaceException(
                $"The staging directory {stagingRoot} (Restore:StagingDirectory) has {free} bytes free; backup {manifest.BackupId} needs {need} bytes there " +
                $"for {string.Join(", ", artifacts.Select(a => $"{a.Name} ({a.Size} bytes)"))}. Free space there or set Restore:StagingDirectory to a larger disk; nothing on the node was changed.");
    }

    /// <summary>
    /// Room beside each target for its part of the config archive (read from the staged archive's
    /// headers: one decompression pass, nothing written). Targets on one filesystem add up.
    /// </summary>
    public static void CheckConfig(string archivePath, BackupManifest manifest, IReadOnlyList<(string Target, string EntryPrefix)> targets)
    {
        var need = targets.ToDictionary(t => t.EntryPrefix, _ => Block, StringComparer.Ordinal);
        using (var file = File.OpenRead(archivePath))
        using (var gzip = new GZipInputStream(file))
        using (var tar = new TarInputStream(gzip, Encoding.UTF8))
        {
            TarEntry? entry;
            while ((entry = tar.GetNextEntry()) is not null)
            {
                var name = entry.Name.TrimStart('.', '/');
                var bytes = (entry.TarHeader.TypeFlag is TarHeader.LF_NORMAL or TarHeader.LF_OLDNORM or TarHeader.LF_CONTIG ? RoundUp(entry.Size) : 0) + Block;
                var owner = targets.FirstOrDefault(t => name == t.EntryPrefix || name.StartsWith(t.EntryPrefix + "/", StringComparison.Ordinal));
                if (owner.EntryPrefix is null)
                    foreach (var t in targets) need[t.EntryPrefix] += bytes; // unsure whose: counted for all
                else
                    need[owner.EntryPrefix] += bytes;
            }
        }
        // The extracted tree is staged in the target's parent directory (same filesystem, so the swap is a rename).
        static string Beside(string target) => ExistingParent(Path.GetDirectoryName(Path.GetFullPath(target)) ?? "/");
        foreach (var group in targets.GroupBy(t => Device(Beside(t.Target))))
        {
            var parent = Beside(group.First().Target);
            var total = group.Sum(t => need[t.EntryPrefix]);
            var free = Free(parent);
            if (free < total)
                throw new InsufficientSpaceException(
                    $"The config archive of backup {manifest.BackupId} expands to {total} bytes beside {string.Join(" and ", group.Select(t => t.Target))}, " +
                    $"and the filesystem of {parent} has {free} bytes free. Free space there; nothing on the node was changed.");
        }
    }

    /// <summary>Bytes the staged artifacts take on disk at most: whole 4 KiB blocks each, one more for the directory.</summary>
    public static long StagingNeed(IEnumerable<BackupManifest.Artifact> staged) => staged.Sum(a => RoundUp(a.Size)) + Block;

    private static long RoundUp(long size) => (size + Block - 1) / Block * Block;

    /// <summary>Bytes an unprivileged writer may use on the filesystem of the path (or of its nearest existing parent).</summary>
    public static long Free(string path) => new DriveInfo(ExistingParent(path)).AvailableFreeSpace;

    /// <summary>The path itself if it exists, else its nearest existing parent (a target may not exist yet).</summary>
    private static string ExistingParent(string path)
    {
        var p = Path.GetFullPath(path);
        while (!Directory.Exists(p) && Path.GetDirectoryName(p) is { } up) p = up;
        return p;
    }

    /// <summary>The filesystem (st_dev as "major:minor") a path is on, from statx(2).</summary>
    private static string Device(string path)
    {
        var buffer = new byte[256];
        if (Statx(-100 /* AT_FDCWD */, path, 0, 0x7ff /* STATX_BASIC_STATS */, buffer) != 0) return path; // unknown: judged on its own
        return string.Create(CultureInfo.InvariantCulture, $"{BitConverter.ToUInt32(buffer, 136)}:{BitConverter.ToUInt32(buffer, 140)}");
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirFd, string path, int flags, uint mask, byte[] buffer);
}
