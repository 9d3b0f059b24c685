using Microsoft.Extensions.Logging;
using RegistryDR.Agent;
using RegistryDR.Configuration;
using RegistryDR.Fencing;
using RegistryDR.Stores;

namespace RegistryDR.Continuous;

/// <summary>What <see cref="WalArchiver.PushAsync"/> did with one file.</summary>
public sealed record WalPushResult(string Name, string Key, bool AlreadyArchived, long Bytes, long StoredBytes);

/// <summary>
/// <c>registry-dr wal-push %p</c>, PostgreSQL's <c>archive_command</c>: stores one WAL file the
/// server has finished with, or refuses it (a non-zero exit, so PostgreSQL keeps the file and
/// tries again, and counts the failure in <c>pg_stat_archiver</c>). In order, a file is refused when:
/// <list type="number">
/// <item>this node may not write (<c>Schedule:RequireRestoredNode</c> and the node did not restore);</item>
/// <item>a newer node took over the store (fencing: the store's newest generation is not this node's) —
/// checked on every push, uncached, so a zombie's WAL never enters the chain of the node that replaced it;</item>
/// <item>it is not a WAL file name, or a segment whose header disagrees with its name and size;</item>
/// <item>it belongs to another PostgreSQL cluster than the store's archive (system identifier);</item>
/// <item>a file of the same name with different content is already stored: it is never overwritten.</item>
/// </list>
/// The same content pushed again (PostgreSQL retries after a crash between storing and recording
/// it) succeeds without writing anything.
/// </summary>
public sealed partial class WalArchiver(RegistryDrOptions options, IBackupStore store, ILogger logger, TimeProvider time)
{
    public async Task<WalPushResult> PushAsync(string path, CancellationToken cancellationToken)
    {
        var name = Path.GetFileName(path);
        if (!WalFileName.TryParse(name, out var file))
            throw new WalRefusedException(name, $"'{name}' is not the name of a file PostgreSQL archives (a WAL segment, a .history, .partial or .backup file); check archive_command passes %p");
        if (options.Schedule.RequireRestoredNode && NodeStateFile.WhyBackupsAreRefused(options.Agent.StateFile) is { } notRestored)
            throw new WalRefusedException(name, notRestored);
        var held = NodeStateFile.Read(options.Agent.StateFile)?.Generation;
        if (await new GenerationLedger(store, time).WhyWritingIsRefusedAsync(held, cancellationToken) is { } fenced)
        {
            LogFenced(name, fenced);
            throw new WalRefusedException(name, fenced);
        }

        var bytes = await File.ReadAllBytesAsync(path, cancellationToken);
        if (file!.Kind is WalFileKind.Segment or WalFileKind.Partial)
        {
            // A .partial file is a whole-sized segment too (its tail is zero).
            if (WalSegmentHeader.Check(file, bytes, out var header) is { } problem)
                throw new WalRefusedException(name, problem);
            await ClusterRecord.ClaimOrCheckAsync(store,
                new ClusterRecord(header!.SystemIdentifier.ToString(System.Globalization.CultureInfo.InvariantCulture), "", header.SegmentSize, Environment.MachineName, time.GetUtcNow()),
                cancellationToken).ConfigureAwait(false);
        }

        var sha = WalCodec.Sha256(bytes);
        var catalog = new ContinuousCatalog(store);
        var existing = await catalog.FindWalAsync(name, cancellationToken);
        if (existing.Any(e => e.Sha256 == sha))
        {
            LogAlreadyArchived(name);
            return new WalPushResult(name, ContinuousLayout.WalKey(name, sha), true, bytes.Length, existing.First(e => e.Sha256 == sha).StoredSize);
        }
        if (existing.Count > 0)
            throw new WalRefusedException(name,
                $"a different {name} is already archived ({existing[0].Key}, SHA-256 {existing[0].Sha256}; this one is {sha}). An archived file is never overwritten: " +
                "two servers are writing the same timeline (a node that should have been fenced, or a cluster restored without a new timeline). Find the other writer before anything else");

        var compressed = WalCodec.Compress(bytes, options.Continuous.CompressionLevel);
        var key = ContinuousLayout.WalKey(name, sha);
        // Created only if absent: the key names the content, so "already there" can only be this same file.
        await store.TryCreateAsync(key, compressed, cancellationToken);
        // Two writers racing with different content for one name both get here; neither is overwritten,
        // and a restore refuses the name, so say so now rather than at the next disaster.
        var after = await catalog.FindWalAsync(name, cancellationToken);
        if (after.Select(e => e.Sha256).Distinct().Count() > 1)
            throw new WalRefusedException(name, $"another server archived a different {name} at the same moment ({string.Join(", ", after.Select(e => e.Key))}); two servers are writing the same timeline");
        LogArchived(name, bytes.Length, compressed.Length);
        return new WalPushResult(name, key, false, bytes.Length, compressed.Length);
    }

    [LoggerMessage(9100, LogLevel.Information, "Archived {Name} ({Bytes} bytes, {Stored} stored)")]
    private partial void LogArchived(string name, long bytes, long stored);

    [LoggerMessage(9101, LogLevel.Information, "{Name} was already archived with the same content; nothing written")]
    private partial void LogAlreadyArchived(string name);

    [LoggerMessage(9102, LogLevel.Critical, "Refused to archive {Name}: {Reason}")]
    private partial void LogFenced(string name, string reason);
}

/// <summary>A WAL file was not archived, on purpose; the message says why and what to do.</summary>
public sealed class WalRefusedException(string name, string reason) : Exception($"Refused to archive {name}: {reason}.")
{
    public string Name { get; } = name;
}
