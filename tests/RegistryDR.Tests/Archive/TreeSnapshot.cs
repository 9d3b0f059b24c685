using System.Security.Cryptography;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Tests.Archive;

/// <summary>Everything a restore must reproduce about one path, as lstat/readlink report it.</summary>
internal sealed record NodeSnapshot(UnixFileKind Kind, int Permissions, uint UserId, uint GroupId, long ModifiedSeconds, string? LinkTarget, string? ContentSha256)
{
    public override string ToString() =>
        $"{Kind} mode={Convert.ToString(Permissions, 8)} owner={UserId}:{GroupId} mtime={ModifiedSeconds} link={LinkTarget} sha256={ContentSha256}";
}

internal static class TreeSnapshot
{
    /// <summary>Every path below <paramref name="root"/> (and "" for the root itself), without following links.</summary>
    public static SortedDictionary<string, NodeSnapshot> Take(string root)
    {
        var result = new SortedDictionary<string, NodeSnapshot>(StringComparer.Ordinal);
        Add(result, root, string.Empty);
        return result;
    }

    /// <summary>
    /// Asserts the two trees match path for path, attribute for attribute, byte for byte, as the
    /// exact oracle (<see cref="Infrastructure.DirectorySnapshot"/>) sees them: names as bytes,
    /// nanosecond mtimes (directories' and symlinks' too), hard-link groups, ACLs and xattrs.
    /// </summary>
    public static void AssertSame(string expectedRoot, string actualRoot)
    {
        var difference = Infrastructure.DirectorySnapshot.Take(expectedRoot).FirstDifference(Infrastructure.DirectorySnapshot.Take(actualRoot));
        Assert.IsNull(difference, $"The restored tree {actualRoot} differs from {expectedRoot}:\n{difference}");
    }

    private static void Add(SortedDictionary<string, NodeSnapshot> result, string path, string relative)
    {
        var status = UnixFileSystem.GetStatus(path);
        string? link = null;
        string? hash = null;
        if (status.Kind == UnixFileKind.Symlink)
        {
            link = new FileInfo(path).LinkTarget;
        }
        else if (status.Kind == UnixFileKind.Regular)
        {
            using var stream = File.OpenRead(path);
            hash = Convert.ToHexString(SHA256.HashData(stream));
        }

        result[relative] = new NodeSnapshot(status.Kind, status.Permissions, status.UserId, status.GroupId, status.ModifiedSeconds, link, hash);
        if (status.Kind == UnixFileKind.Directory)
        {
            foreach (var child in Directory.EnumerateFileSystemEntries(path, "*", new EnumerationOptions { AttributesToSkip = 0 }))
            {
                var name = Path.GetFileName(child);
                Add(result, child, relative.Length == 0 ? name : relative + "/" + name);
            }
        }
    }
}
