using System.Security.Cryptography;
using RegistryDR.Archive.Internal;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>Everything a restore must reproduce about a tree: paths, types, modes, owners, mtimes, contents and link targets.</summary>
internal sealed record DirectorySnapshot(IReadOnlyList<string> Entries)
{
    public static DirectorySnapshot Take(string root)
    {
        var entries = new List<string>();
        foreach (var path in Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }).Order(StringComparer.Ordinal))
        {
            var relative = Path.GetRelativePath(root, path);
            var st = UnixFileSystem.GetStatus(path);
            var detail = st.Kind switch
            {
                UnixFileKind.Regular => $"sha256={Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)))} size={st.Size} mtime={st.ModifiedSeconds}",
                UnixFileKind.Symlink => $"-> {new FileInfo(path).LinkTarget}",
                UnixFileKind.Directory => $"mtime={st.ModifiedSeconds}",
                _ => "",
            };
            entries.Add($"{relative} {st.Kind} mode={Convert.ToString(st.Permissions, 8)} owner={st.UserId}:{st.GroupId} {detail}");
        }
        return new DirectorySnapshot(entries);
    }

    public string? FirstDifference(DirectorySnapshot other)
    {
        for (var i = 0; i < Math.Max(Entries.Count, other.Entries.Count); i++)
        {
            var a = i < Entries.Count ? Entries[i] : "(nothing)";
            var b = i < other.Entries.Count ? other.Entries[i] : "(nothing)";
            if (a != b) return $"expected {a}\n  actual {b}";
        }
        return null;
    }
}
