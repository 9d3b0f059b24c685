using Npgsql;
using RegistryDR.Backup;
using RegistryDR.Postgres;
using RegistryDR.Processes;
using RegistryDR.Progress;
using RegistryDR.Stores;

namespace RegistryDR.Restore;

/// <summary>
/// Loads a backup set's database into an empty (scratch) database, always in pg_dump's own
/// sections, one after the other: pre-data (types, functions, tables — no indexes, constraints
/// other than CHECK/NOT NULL, triggers or rules yet), then the data (<c>pg_restore
/// --section=data --jobs</c>, with the split tables' block ranges streamed from the store straight
/// into <c>COPY ... FROM STDIN</c> <see cref="_jobs"/> at a time alongside), then post-data
/// (indexes, constraints, foreign keys, triggers, rules, event triggers) with <c>pg_restore --jobs</c>.
/// </summary>
/// <remarks>
/// The sections are what keeps triggers from acting on the rows being loaded: pg_dump puts every
/// trigger, rule and foreign key in post-data, so none exists while any row is loaded. A single
/// <c>pg_restore --jobs</c> gives no such guarantee: its scheduler starts an item once the items it
/// depends on are done, and a trigger declared on a partitioned parent depends on the parent, not
/// on its partitions' data, so it can be created (and cloned to every partition) while partitions
/// are still loading — the next COPY then fires it. Each range's SHA-256 is checked before its
/// COPY is committed; a range that fails the check fails the load.
/// </remarks>
internal sealed class DatabaseLoader(IBackupStore store, PostgresConnectionFactory postgres, PostgresTools tools, int jobs)
{
    /// <summary>Added to a failed pg_restore's message, before its stderr (e.g. what was left untouched).</summary>
    public string FailureNote { get; init; } = "";

    /// <summary>maintenance_work_mem (MiB) for pg_restore's sessions; 0 leaves the server's setting.</summary>
    public int MaintenanceWorkMemMiB { get; init; }

    private readonly int _jobs = jobs;

    /// <summary>
    /// The load's sessions (pg_restore's and the range COPYs) commit without waiting for their WAL
    /// to reach disk (PostgreSQL's <c>synchronous_commit = off</c>, a per-session setting any role
    /// may change). Every pg_restore item is its own transaction, and an index-heavy schema has
    /// thousands of them (the GitLab-like one: about 4,700 WAL flushes in post-data, 620 with this;
    /// docs/performance.md). Nothing is at risk: the database being loaded is a scratch (or drill)
    /// database that nothing uses, a crash loses at most its last few hundred milliseconds of
    /// commits, which fails the load anyway, and the restore's swap is an ordinary synchronous
    /// commit, whose flush takes every earlier WAL record — the whole load — to disk before the
    /// database is renamed into place.
    /// </summary>
    internal const string SynchronousCommit = "off";

    public async Task LoadAsync(BackupManifest manifest, string dumpPath, string database, IReadOnlyList<string> pgRestoreOptions, IOperationProgress progress, CancellationToken cancellationToken)
    {
        await PgRestoreAsync(dumpPath, database, pgRestoreOptions, ["--section=pre-data"], cancellationToken);
        using (var failFast = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            var rest = FailFast.CancelOthersOnFailure(PgRestoreAsync(dumpPath, database, pgRestoreOptions, ["--section=data", $"--jobs={_jobs}"], failFast.Token), failFast);
            var ranges = FailFast.CancelOthersOnFailure(LoadRangesAsync(manifest, database, progress, failFast.Token), failFast);
            await FailFast.WhenAllAsync(rest, ranges);
        }
        await PgRestoreAsync(dumpPath, database, pgRestoreOptions, ["--section=post-data", $"--jobs={_jobs}"], cancellationToken);
    }

    private async Task PgRestoreAsync(string dumpPath, string database, IReadOnlyList<string> options, IReadOnlyList<string> section, CancellationToken cancellationToken)
    {
        var args = new List<string> { "--exit-on-error", "--no-password" };
        args.AddRange(options);
        args.AddRange(section);
        args.Add("--dbname=" + database);
        args.Add(dumpPath);
        var environment = new Dictionary<string, string?>(await postgres.ToolEnvironmentAsync(database, cancellationToken));
        var sessionOptions = $"{environment.GetValueOrDefault("PGOPTIONS")} -c synchronous_commit={SynchronousCommit}";
        if (MaintenanceWorkMemMiB > 0) sessionOptions += $" -c maintenance_work_mem={MaintenanceWorkMemMiB}MB";
        environment["PGOPTIONS"] = sessionOptions.TrimStart();
        var result = await ProcessRunner.RunAsync(
            new ProcessSpec(tools.PgRestore, args) { Environment = environment, DisplayName = "pg_restore" },
            cancellationToken: cancellationToken);
        if (result.ExitCode != 0)
        {
            var what = section.FirstOrDefault(a => a.StartsWith("--section=", StringComparison.Ordinal)) is { } s ? $"pg_restore {s}" : "pg_restore";
            throw new ProcessFailedException($"{what} into '{database}' failed (exit {result.ExitCode}){FailureNote}.{ProcessRunner.FormatTail(result.StandardError)}", result.ExitCode, result.StandardError);
        }
    }

    private async Task LoadRangesAsync(BackupManifest manifest, string database, IOperationProgress progress, CancellationToken cancellationToken)
    {
        // Largest first (by stored size), for the same reason as the dump's order.
        var work = manifest.SplitTables
            .SelectMany(t => t.Ranges.Select(r => (Table: t, Artifact: manifest.Find(r)!)))
            .OrderByDescending(w => w.Artifact.Size)
            .ToList();
        var transferred = new CombinedTransfer(progress, TableDataDump.ProgressName);
        await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = _jobs, CancellationToken = cancellationToken },
            (item, ct) => new ValueTask(LoadRangeAsync(manifest.BackupId, item.Table, item.Artifact, database, transferred.Part(), ct)));
    }

    private async Task LoadRangeAsync(string backupId, BackupManifest.TableData table, BackupManifest.Artifact artifact, string database, Action<long> onProgress, CancellationToken cancellationToken)
    {
        var copySql = SplitTable.CopyIn(table.Schema, table.Name, table.Columns);
        await using var connection = await postgres.OpenAsync(database, cancellationToken);
        await using (var setting = new NpgsqlCommand($"SET synchronous_commit = {SynchronousCommit}", connection))
            await setting.ExecuteNonQueryAsync(cancellationToken);
        await using var source = await store.OpenReadAsync(artifact.Key, cancellationToken);
        using var hashing = new HashingStream(source, onProgress);
        var copy = await connection.BeginRawBinaryCopyAsync(copySql, cancellationToken);
        try
        {
            try
            {
                await using (var decompressed = ArtifactCompression.Decompress(hashing, artifact.RangeCompression))
                    await decompressed.CopyToAsync(copy, 1 << 16, cancellationToken);
                await hashing.CopyToAsync(Stream.Null, cancellationToken);
            }
            catch (Exception ex) when (ex is PostgresException || ArtifactCompression.IsInvalidData(ex))
            {
                // Bytes that are not what the manifest recorded explain any such failure best.
                await hashing.CopyToAsync(Stream.Null, cancellationToken);
                ArtifactIntegrity.Check(backupId, artifact, hashing.BytesRead, hashing.HashHex());
                if (ex is not PostgresException)
                    throw new ArtifactCorruptException(backupId, artifact.Name, $"{artifact.Key} is not valid {artifact.RangeCompression}: {ex.Message}");
                throw;
            }
            ArtifactIntegrity.Check(backupId, artifact, hashing.BytesRead, hashing.HashHex());
        }
        catch
        {
            try { await copy.CancelAsync(); } catch (Exception) { /* the connection is dropped with the scratch database */ }
            await copy.DisposeAsync();
            throw;
        }
        await copy.DisposeAsync(); // completes the COPY: only now do the rows count
    }
}
