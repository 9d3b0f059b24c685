using System.Security.Cryptography;
using RegistryDR.Backup;
using RegistryDR.Stores;

namespace RegistryDR.Tests.Backup;

/// <summary>
/// Backup sets written straight into a store, without a database: the three artifacts with
/// made-up bytes and a manifest that validates, for tests about what the store shows (status,
/// list, retention), not about restoring.
/// </summary>
internal static class SyntheticSets
{
    /// <summary>Writes a set taken at <paramref name="time"/>: its artifacts, and unless <paramref name="complete"/> is false its manifest. Returns its id.</summary>
    /// <param name="generation">The fencing generation the manifest says its writer held (null: none).</param>
    public static async Task<string> WriteAsync(IBackupStore store, DateTimeOffset time, bool complete = true, int databaseBytes = 1000, long? generation = null)
    {
        var id = BackupLayout.NewBackupId(time);
        var artifacts = new List<BackupManifest.Artifact>();
        foreach (var (name, size) in new[] { (BackupLayout.DatabaseArtifact, databaseBytes), (BackupLayout.GlobalsArtifact, 10), (BackupLayout.ConfigArtifact, 300) })
        {
            var bytes = new byte[size];
            new Random(size).NextBytes(bytes);
            var key = BackupLayout.ArtifactKey(id, name);
            await store.PutAsync(key, new MemoryStream(bytes), CancellationToken.None);
            artifacts.Add(new BackupManifest.Artifact { Name = name, Key = key, Size = size, Sha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)) });
        }
        if (complete) await store.PutAsync(BackupLayout.ManifestKey(id), new MemoryStream((Manifest(id, time, artifacts) with { Generation = generation }).ToJson()), CancellationToken.None);
        return id;
    }

    public static BackupManifest Manifest(string id, DateTimeOffset time, IReadOnlyList<BackupManifest.Artifact> artifacts) => new()
    {
        FormatVersion = BackupManifest.CurrentFormatVersion,
        BackupId = id,
        StartedAt = time,
        CompletedAt = time.AddSeconds(5),
        Host = "synthetic",
        RegistryDrVersion = "0.0.0",
        Postgres = new BackupManifest.PostgresInfo
        {
            ServerVersion = "15.0", PgDumpVersion = "15.0", Database = "dtr", Owner = "postgres",
            Encoding = "UTF8", Collate = "C", Ctype = "C", DumpFormat = "custom",
        },
        ConfigDirectories = [new BackupManifest.ConfigDirectory { Path = "/var/local/dtr", EntryPrefix = "var/local/dtr" }],
        Artifacts = artifacts,
    };
}
