using Npgsql;
using RegistryDR.Configuration;
using RegistryDR.Postgres;
using RegistryDR.Progress;
using RegistryDR.Stores;

namespace RegistryDR.Backup;

/// <summary>
/// Dumps the split tables' rows as block ranges, <see cref="DatabaseOptions.DumpJobs"/> at a
/// time: each range is one binary COPY in the exported snapshot, compressed here
/// (<see cref="DatabaseOptions.RangeCompression"/>; so pg_dump's single-threaded compression is
/// off the critical path) and streamed to its own object.
/// </summary>
internal sealed class TableDataDump(IBackupStore store, PostgresConnectionFactory postgres, DatabaseOptions options, IOperationProgress progress)
{
    public const string ProgressName = "table data";

    public sealed record Output(IReadOnlyList<BackupManifest.TableData> Tables, IReadOnlyList<BackupManifest.Artifact> Artifacts);

    public async Task<Output> RunAsync(string backupId, string snapshotId, IReadOnlyList<SplitTable> tables, Action<string> written, CancellationToken cancellationToken)
    {
        var work = new List<(SplitTable Table, string Artifact, long From, long? To)>();
        var described = new List<BackupManifest.TableData>();
        for (var t = 0; t < tables.Count; t++)
        {
            var table = tables[t];
            var ranges = SplitTable.Ranges(table.Pages, Math.Max(1, (long)(options.RangeMiB * (1 << 20) / table.BlockSize)));
            var names = new List<string>();
            for (var r = 0; r < ranges.Count; r++)
            {
                var name = BackupLayout.TableDataArtifact(t, r);
                names.Add(name);
                work.Add((table, name, ranges[r].From, ranges[r].To));
            }
            described.Add(new BackupManifest.TableData { Schema = table.Schema, Name = table.Name, Columns = table.Columns, Ranges = names });
        }

        var compression = options.RangeCompression == RangeCompressionCodec.Gzip ? ArtifactCompression.Gzip : ArtifactCompression.Zstd;
        var artifacts = new BackupManifest.Artifact[work.Count];
        var transferred = new CombinedTransfer(progress, ProgressName);
        // Largest first: the jobs take the next item as they finish one, so the small tables fill
        // in behind the large ranges and no job is left with a big one at the end (LPT scheduling).
        var order = Enumerable.Range(0, work.Count).OrderByDescending(i => work[i].To is { } to ? to - work[i].From : work[i].Table.Pages - work[i].From).ThenBy(i => i).ToList();
        await Parallel.ForEachAsync(order,
            new ParallelOptions { MaxDegreeOfParallelism = options.DumpJobs, CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var (table, name, from, to) = work[i];
                var key = BackupLayout.ArtifactKey(backupId, name, compression);
                written(key);
                var result = await PipedUpload.PutAsync(store, key,
                    (output, token) => CopyRangeAsync(snapshotId, table.CopyOutSql(from, to), compression, output, token),
                    transferred.Part(), ct);
                if (result.Size != result.BytesProduced)
                    throw new InvalidOperationException($"the store took {result.Size} bytes of {result.BytesProduced} for {key}.");
                artifacts[i] = new BackupManifest.Artifact { Name = name, Key = key, Size = result.Size, Sha256 = result.Sha256, Compression = compression };
            });
        return new Output(described, artifacts);
    }

    private async Task<long> CopyRangeAsync(string snapshotId, string copySql, string compression, Stream output, CancellationToken cancellationToken)
    {
        await using var connection = await postgres.OpenAsync(cancellationToken: cancellationToken);
        await using var transaction = await ExportedSnapshot.ImportAsync(connection, snapshotId, cancellationToken);
        long raw = 0;
        await using (var compressor = ArtifactCompression.Compress(output, compression, options.RangeCompressionLevel))
        await using (var copy = await connection.BeginRawBinaryCopyAsync(copySql, cancellationToken))
        {
            // A bound on each wait for the next CopyData (Database:StallTimeout), not on the
            // whole COPY, which may rightly take long: a server that stops sending fails the range.
            copy.ReadTimeout = (int)Math.Min(int.MaxValue, options.StallTimeout.TotalMilliseconds);
            // A read returns at most one CopyData message, i.e. one row of a few hundred bytes;
            // the compressor is fed whole buffers, or its per-call overhead dominates.
            var buffer = new byte[1 << 17];
            var filled = 0;
            int n;
            while ((n = await copy.ReadAsync(buffer.AsMemory(filled), cancellationToken)) > 0)
            {
                filled += n;
                raw += n;
                if (filled < buffer.Length - 16384) continue;
                await compressor.WriteAsync(buffer.AsMemory(0, filled), cancellationToken);
                filled = 0;
            }
            if (filled > 0) await compressor.WriteAsync(buffer.AsMemory(0, filled), cancellationToken);
        }
        if (raw < SplitTable.BinaryCopySignature.Length)
            throw new InvalidOperationException($"the COPY of a block range returned only {raw} bytes.");
        return raw;
    }
}
