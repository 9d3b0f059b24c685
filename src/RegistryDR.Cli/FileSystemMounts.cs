namespace RegistryDR.Cli;

/// <summary>Which mounted file system a path is on (from /proc/self/mounts), so that init-store can show it: "/" where an NFS share was expected is the mistake the store marker exists for.</summary>
internal static class FileSystemMounts
{
    public sealed record Mount(string Source, string MountPoint, string Type);

    public static Mount? Find(string path, string mountsFile = "/proc/self/mounts")
    {
        if (!File.Exists(mountsFile)) return null;
        var full = Path.GetFullPath(path);
        Mount? best = null;
        foreach (var line in File.ReadLines(mountsFile))
        {
            var fields = line.Split(' ');
            if (fields.Length < 3) continue;
            var mountPoint = Unescape(fields[1]);
            var inside = mountPoint == "/" || full == mountPoint || full.StartsWith(mountPoint.TrimEnd('/') + "/", StringComparison.Ordinal);
            // The last matching entry of the longest mount point wins: later mounts cover earlier ones.
            if (inside && (best is null || mountPoint.Length >= best.MountPoint.Length))
                best = new Mount(Unescape(fields[0]), mountPoint, fields[2]);
        }
        return best;
    }

    /// <summary>The kernel writes space, tab, newline and backslash in mount paths as octal escapes (\040...).</summary>
    private static string Unescape(string field) => System.Text.RegularExpressions.Regex.Replace(field, @"\\([0-7]{3})",
        m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString());
}
