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

    /// <summary>Asserts the two trees match path for path, attribute for attribute, byte for byte.</summary>
    public static void AssertSame(string expectedRoot, string actualRoot, bool compareDirectoryMtimes = true)
    {
        var expected = Take(expectedRoot);
        var actual = Take(actualRoot);
        CollectionAssert.AreEqual(expected.Keys.ToList(), actual.Keys.ToList(), "The restored tree has different paths.");
        foreach (var (path, node) in expected)
        {
            var restored = actual[path];
            var comparable = compareDirectoryMtimes || node.Kind != UnixFileKind.Directory
                ? node
                : node with { ModifiedSeconds = restored.ModifiedSeconds };
            if (node.Kind == UnixFileKind.Symlink)
            {
                // Links have no mode of their own on Linux and their mtime is not restored.
                comparable = comparable with { Permissions = restored.Permissions, ModifiedSeconds = restored.ModifiedSeconds };
            }

            Assert.AreEqual(comparable, restored, $"Restored '{path}' differs.");
        }
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
