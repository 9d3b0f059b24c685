using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RegistryDR.Archive;
using RegistryDR.Backup;
using RegistryDR.Progress;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Continuous;

/// <summary>What <c>verify</c> found for a base backup and the WAL a restore from it to "latest" would replay.</summary>
public sealed record ContinuousVerificationReport(string BackupId, IReadOnlyList<ArtifactCheck> Artifacts, int WalFiles, long WalStoredBytes, string? FirstSegment, string? LastSegment, DateTimeOffset ResultingPoint);

/// <summary>
/// <c>verify</c> in continuous mode: streams the base backup back (SHA-256, and every tar entry
/// read to its end), validates the config archive with every extraction rule, and reads every WAL
/// file a restore from this base to "latest" would replay, each gunzip'd and checked against the
/// SHA-256 it was archived with. Nothing is written to disk. A corrupt WAL file is named.
/// </summary>
public static class ContinuousVerifier
{
    public static async Task<ContinuousVerificationReport> VerifyAsync(IBackupStore store, string? backupIdOrLatest, ILogger logger, TimeProvider time,
        IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        progress ??= NullProgress.Instance;
        var catalog = new ContinuousCatalog(store);
        var sets = await catalog.ListBaseBackupsAsync(cancellationToken);
        var id = string.IsNullOrEmpty(backupIdOrLatest) || backupIdOrLatest == "latest"
            ? sets.FirstOrDefault(s => s.IsComplete)?.BackupId ?? throw new BackupNotFoundException($"There is no complete base backup in {store.Description}.")
            : sets.FirstOrDefault(s => s.BackupId == backupIdOrLatest && s.IsComplete)?.BackupId ?? throw new BackupNotFoundException($"Base backup '{backupIdOrLatest}' is not a complete base backup in {store.Description}; `registry-dr list` shows them.");
        var manifest = await catalog.ReadManifestAsync(id, cancellationToken);
        var checks = new List<ArtifactCheck>();

        progress.Phase("verify base backup");
        var baseArtifact = manifest.Get(ContinuousLayout.BaseArtifact);
        await using (var source = await store.OpenReadAsync(baseArtifact.Key, cancellationToken))
        using (var hashing = new HashingStream(source, b => progress.Transferred(ContinuousLayout.BaseArtifact, b)))
        {
            var entries = 0;
            var sawManifest = false;
            try
            {
                await using var gunzip = new GZipStream(hashing, CompressionMode.Decompress, leaveOpen: true);
                await using var reader = new TarReader(gunzip, leaveOpen: true);
                while (await reader.GetNextEntryAsync(copyData: false, cancellationToken) is { } entry)
                {
                    entries++;
                    if (entry.Name is "backup_manifest" or "./backup_manifest") sawManifest = true;
                    if (entry.DataStream is { } data) await data.CopyToAsync(Stream.Null, cancellationToken);
                }
                await hashing.CopyToAsync(Stream.Null, cancellationToken);
            }
            catch (Exception ex) when (ex is InvalidDataException or FormatException or EndOfStreamException)
            {
                await hashing.CopyToAsync(Stream.Null, cancellationToken);
                ArtifactIntegrity.Check(id, baseArtifact, hashing.BytesRead, hashing.HashHex());
                throw new ArtifactCorruptException(id, ContinuousLayout.BaseArtifact, $"{baseArtifact.Key} is not a readable gzip'd tar: {ex.Message}");
            }
            ArtifactIntegrity.Check(id, baseArtifact, hashing.BytesRead, hashing.HashHex());
            if (!sawManifest) throw new ArtifactCorruptException(id, ContinuousLayout.BaseArtifact, $"{baseArtifact.Key} has no backup_manifest.");
            checks.Add(new ArtifactCheck(baseArtifact.Name, baseArtifact.Key, baseArtifact.Size, baseArtifact.Sha256, $"tar with {entries} entries and pg_basebackup's backup_manifest"));
        }

        progress.Phase("verify config");
        var config = manifest.Get(ContinuousLayout.ConfigArtifact);
        var roots = manifest.ConfigDirectories.Select(d => new ArchiveRoot(d.Path, d.EntryPrefix)).ToList();
        await using (var source = await store.OpenReadAsync(config.Key, cancellationToken))
        using (var hashing = new HashingStream(source, b => progress.Transferred(ContinuousLayout.ConfigArtifact, b)))
        {
            ArchiveStats stats;
            try
            {
                stats = await ConfigArchiveReader.ValidateAsync(hashing, roots, cancellationToken);
            }
            catch (Exception ex) when (ex is InvalidDataException or UnsafeArchiveException or ICSharpCode.SharpZipLib.SharpZipBaseException or EndOfStreamException)
            {
                throw new ArtifactCorruptException(id, ContinuousLayout.ConfigArtifact, $"the archive is unreadable or unsafe: {ex.Message}");
            }
            await hashing.CopyToAsync(Stream.Null, cancellationToken);
            ArtifactIntegrity.Check(id, config, hashing.BytesRead, hashing.HashHex());
            checks.Add(new ArtifactCheck(config.Name, config.Key, config.Size, config.Sha256, $"{stats.Files} files, {stats.Directories} directories, {stats.Symlinks} symlinks"));
        }

        progress.Phase("verify WAL");
        var view = await catalog.ReadArchiveAsync(null, cancellationToken);
        var plan = RecoveryPlanner.Plan([manifest], view.Wal, view.Histories, RecoveryTarget.Latest, id);
        long done = 0;
        await Parallel.ForEachAsync(plan.Segments, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = cancellationToken }, async (segment, ct) =>
        {
            await WalCodec.ReadVerifiedAsync(store, segment, ct);
            progress.Transferred("wal", Interlocked.Add(ref done, segment.StoredSize));
        });
        await WriteVerifiedAsync(store, id, "verify", time, cancellationToken);
        logger.LogInformation("Base backup {BackupId} and {Segments} WAL segment(s) to {Last} verified", id, plan.Segments.Count, plan.LastSegment?.File.Name ?? "-");
        return new ContinuousVerificationReport(id, checks, plan.Segments.Count + plan.HistoryFiles.Count, plan.WalStoredBytes,
            plan.Segments.FirstOrDefault()?.File.Name, plan.LastSegment?.File.Name, plan.ResultingPoint);
    }

    /// <summary><c>continuous/base/&lt;id&gt;/verified.json</c>, as a logical set's: retention keeps the newest verified base backup.</summary>
    internal static async Task WriteVerifiedAsync(IBackupStore store, string backupId, string by, TimeProvider time, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new { backupId, verifiedAt = time.GetUtcNow(), by }, new JsonSerializerOptions(JsonSerializerDefaults.Web));
        await store.PutAsync(ContinuousLayout.VerifiedKey(backupId), new MemoryStream(body, writable: false), cancellationToken);
    }
}
