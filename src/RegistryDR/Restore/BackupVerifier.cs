using Microsoft.Extensions.Logging;
using RegistryDR.Archive;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Postgres;
using RegistryDR.Processes;
using RegistryDR.Progress;
using RegistryDR.Stores;

namespace RegistryDR.Restore;

public sealed record ArtifactCheck(string Name, string Key, long Size, string Sha256, string Detail);

public sealed record VerificationReport(string BackupId, IReadOnlyList<ArtifactCheck> Artifacts);

/// <summary>
/// Reads every artifact of a set back from the store and proves it is what the manifest says
/// and that the tools can read it: SHA-256 and size for all, <c>pg_restore --list</c> for the
/// dump, every safety rule of extraction for the config archive.
/// </summary>
public sealed class BackupVerifier
{
    private readonly IBackupStore _store;
    private readonly PostgresTools _tools;
    private readonly ILogger _logger;

    public BackupVerifier(IBackupStore store, DatabaseOptions database, ILogger logger)
    {
        _store = store;
        _tools = new PostgresTools(database);
        _logger = logger;
    }

    /// <summary>Streams each artifact once, checking it on the way; nothing is written to disk.</summary>
    public async Task<VerificationReport> VerifyAsync(BackupManifest manifest, IOperationProgress? progress = null, CancellationToken cancellationToken = default)
    {
        progress ??= NullProgress.Instance;
        var roots = manifest.ConfigDirectories.Select(d => new ArchiveRoot(d.Path, d.EntryPrefix)).ToList();
        var checks = new List<ArtifactCheck>();
        foreach (var artifact in manifest.Artifacts)
        {
            progress.Phase("verify " + artifact.Name);
            await using var source = await _store.OpenReadAsync(artifact.Key, cancellationToken);
            using var hashing = new HashingStream(source, b => progress.Transferred(artifact.Name, b));
            var detail = artifact.Name switch
            {
                BackupLayout.DatabaseArtifact => await ListDumpAsync(hashing, manifest.BackupId, cancellationToken),
                BackupLayout.ConfigArtifact => await ValidateArchiveAsync(hashing, roots, manifest.BackupId, cancellationToken)
                    + (manifest.DescribeNotKept() is { Count: > 0 } notKept ? $"; not kept: {string.Join("; ", notKept)}" : ""),
                var name when BackupLayout.IsTableDataArtifact(name) => await ValidateRangeAsync(hashing, artifact, manifest.BackupId, cancellationToken),
                _ => await DrainAsync(hashing, cancellationToken),
            };
            ArtifactIntegrity.Check(manifest.BackupId, artifact, hashing.BytesRead, hashing.HashHex());
            checks.Add(new ArtifactCheck(artifact.Name, artifact.Key, artifact.Size, artifact.Sha256, detail));
            _logger.LogInformation("Backup {BackupId}: artifact {Artifact} verified ({Bytes} bytes, {Detail})", manifest.BackupId, artifact.Name, artifact.Size, detail);
        }
        return new VerificationReport(manifest.BackupId, checks);
    }

    private static async Task<string> DrainAsync(Stream stream, CancellationToken cancellationToken)
    {
        await stream.CopyToAsync(Stream.Null, cancellationToken);
        return "checksum";
    }

    /// <summary>
    /// A split table's block range must decompress completely and be a whole binary COPY stream:
    /// PostgreSQL's signature first, the -1 field-count trailer last. A corrupt range is caught
    /// here rather than half-way through a restore.
    /// </summary>
    private static async Task<string> ValidateRangeAsync(HashingStream stream, BackupManifest.Artifact artifact, string backupId, CancellationToken cancellationToken)
    {
        var head = new byte[Postgres.SplitTable.BinaryCopySignature.Length];
        var tail = new byte[2];
        long total = 0;
        try
        {
            await using var decompressed = ArtifactCompression.Decompress(stream, artifact.RangeCompression);
            var buffer = new byte[1 << 16];
            int n;
            while ((n = await decompressed.ReadAsync(buffer, cancellationToken)) > 0)
            {
                if (total < head.Length) buffer.AsSpan(0, (int)Math.Min(n, head.Length - total)).CopyTo(head.AsSpan((int)total));
                if (n >= 2) buffer.AsSpan(n - 2, 2).CopyTo(tail);
                else { tail[0] = tail[1]; tail[1] = buffer[0]; }
                total += n;
            }
        }
        catch (Exception ex) when (ArtifactCompression.IsInvalidData(ex))
        {
            await stream.CopyToAsync(Stream.Null, cancellationToken);
            ArtifactIntegrity.Check(backupId, artifact, stream.BytesRead, stream.HashHex()); // a checksum mismatch says more
            throw new ArtifactCorruptException(backupId, artifact.Name, $"{artifact.Key} is not valid {artifact.RangeCompression}: {ex.Message}");
        }
        await stream.CopyToAsync(Stream.Null, cancellationToken);
        if (total < head.Length + 2 || !head.AsSpan().SequenceEqual(Postgres.SplitTable.BinaryCopySignature) || tail[0] != 0xff || tail[1] != 0xff)
            throw new ArtifactCorruptException(backupId, artifact.Name, $"{artifact.Key} does not hold a whole binary COPY stream ({total} bytes after {artifact.RangeCompression} decompression).");
        return $"binary COPY, {total:N0} bytes ({artifact.RangeCompression})";
    }

    private static async Task<string> ValidateArchiveAsync(HashingStream stream, IReadOnlyList<ArchiveRoot> roots, string backupId, CancellationToken cancellationToken)
    {
        ArchiveStats stats;
        try
        {
            stats = await ConfigArchiveReader.ValidateAsync(stream, roots, cancellationToken);
        }
        catch (Exception ex) when (ex is InvalidDataException or UnsafeArchiveException or ICSharpCode.SharpZipLib.SharpZipBaseException or EndOfStreamException)
        {
            throw new ArtifactCorruptException(backupId, BackupLayout.ConfigArtifact, $"the archive is unreadable or unsafe: {ex.Message}");
        }
        await stream.CopyToAsync(Stream.Null, cancellationToken); // gzip trailer padding
        return $"{stats.Files} files, {stats.Directories} directories, {stats.Symlinks} symlinks, {stats.HardLinks} hard links";
    }

    /// <summary>
    /// Feeds the dump to <c>pg_restore --list</c> while hashing it. pg_restore stops reading once
    /// it has the table of contents, so the rest is still read (and hashed) after its stdin closes.
    /// </summary>
    private async Task<string> ListDumpAsync(HashingStream stream, string backupId, CancellationToken cancellationToken)
    {
        var entries = 0;
        ProcessResult result;
        try
        {
            result = await ProcessRunner.RunAsync(
                new ProcessSpec(_tools.PgRestore, ["--list"]) { DisplayName = "pg_restore" },
                writeStdin: async (stdin, ct) =>
                {
                    var buffer = new byte[1 << 16];
                    var open = true;
                    int n;
                    while ((n = await ReadSourceAsync(stream, buffer, ct)) > 0)
                    {
                        if (!open) continue;
                        try { await stdin.WriteAsync(buffer.AsMemory(0, n), ct); }
                        catch (IOException) { open = false; }
                    }
                },
                readStdout: async (stdout, ct) =>
                {
                    using var reader = new StreamReader(stdout, leaveOpen: true);
                    while (await reader.ReadLineAsync(ct) is { } line)
                        if (line.Length > 0 && line[0] != ';') entries++;
                },
                cancellationToken);
        }
        catch (ProcessFailedException ex) when (ex.ExitCode == -1)
        {
            throw; // pg_restore missing: not the artifact's fault
        }
        if (result.ExitCode != 0 || entries == 0)
            throw new ArtifactCorruptException(backupId, BackupLayout.DatabaseArtifact,
                $"pg_restore --list cannot read it (exit {result.ExitCode}, {entries} entries).{ProcessRunner.FormatTail(result.StandardError)}");
        return $"pg_restore --list: {entries} entries";
    }

    // A read error from the store must not look like pg_restore closing its stdin (which the
    // process runner tolerates), or a network fault would be reported as a corrupt artifact.
    private async Task<int> ReadSourceAsync(Stream source, byte[] buffer, CancellationToken cancellationToken)
    {
        try
        {
            return await source.ReadAsync(buffer, cancellationToken);
        }
        catch (IOException ex)
        {
            throw new StoreUnavailableException($"Reading from {_store.Description} failed: {ex.Message}", ex);
        }
    }
}

/// <summary>An artifact's bytes are not what its manifest recorded, or a tool cannot read them.</summary>
public sealed class ArtifactCorruptException(string backupId, string artifact, string reason)
    : Exception($"Backup {backupId}: artifact '{artifact}' is corrupt: {reason}")
{
    public string BackupId { get; } = backupId;
    public string Artifact { get; } = artifact;
}

internal static class ArtifactIntegrity
{
    public static void Check(string backupId, BackupManifest.Artifact artifact, long size, string sha256)
    {
        if (size != artifact.Size)
            throw new ArtifactCorruptException(backupId, artifact.Name, $"{artifact.Key} is {size} bytes; the manifest says {artifact.Size}.");
        if (!string.Equals(sha256, artifact.Sha256, StringComparison.Ordinal))
            throw new ArtifactCorruptException(backupId, artifact.Name, $"{artifact.Key} has SHA-256 {sha256}; the manifest says {artifact.Sha256}.");
    }
}
