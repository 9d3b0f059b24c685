using System.IO.Compression;
using Npgsql;
using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Backup;

/// <summary>
/// Large tables are dumped as parallel block ranges (binary COPY in pg_dump's snapshot) and
/// loaded back range by range. These tests shrink the thresholds so that the small test
/// databases split into many ranges, and use the tables that break naive COPY code: names
/// that need quoting and hold pattern characters, generated and dropped columns, inheritance,
/// partitions, arrays, domains, jsonb, NULLs and non-ASCII text.
/// </summary>
[TestClass]
public sealed class SplitTableTests
{
    private const string AwkwardSchema = """
        CREATE DOMAIN public.positive AS bigint CHECK (VALUE > 0);
        CREATE TABLE public."Audit.Log*?""x" (
            id bigserial PRIMARY KEY,
            "Actor Name" text NOT NULL,
            gone int,
            payload jsonb NOT NULL,
            addr inet,
            tags text[],
            weight public.positive,
            twice bigint GENERATED ALWAYS AS (id * 2) STORED,
            note text);
        ALTER TABLE public."Audit.Log*?""x" DROP COLUMN gone;
        INSERT INTO public."Audit.Log*?""x" ("Actor Name", payload, addr, tags, weight, note)
        SELECT 'user ' || g || ' ünïcödé ' || repeat('x', g % 50), jsonb_build_object('g', g, 'a', jsonb_build_array(g, 'two')),
               ('10.0.' || (g % 250) || '.' || (g % 7))::inet, ARRAY['t' || g, NULL, 'q"uote'],
               CASE WHEN g % 3 = 0 THEN NULL ELSE g END, CASE WHEN g % 5 = 0 THEN NULL ELSE E'tab\there\nnewline' END
        FROM generate_series(1, 3000) g;
        CREATE INDEX ON public."Audit.Log*?""x" (addr);

        CREATE TABLE public.history_parent (id int NOT NULL, body text NOT NULL);
        CREATE TABLE public.history_child (extra int) INHERITS (public.history_parent);
        INSERT INTO public.history_parent SELECT g, repeat('p', 200) FROM generate_series(1, 500) g;
        INSERT INTO public.history_child SELECT g, repeat('c', 200), g FROM generate_series(1, 700) g;

        CREATE TABLE public.pulls (day date NOT NULL, repo text NOT NULL, n int NOT NULL) PARTITION BY RANGE (day);
        CREATE TABLE public.pulls_2025 PARTITION OF public.pulls FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE public.pulls_2026 PARTITION OF public.pulls FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        INSERT INTO public.pulls SELECT date '2025-01-01' + (g % 700), 'repo-' || g, g FROM generate_series(1, 4000) g;

        CREATE SCHEMA "Other Schema";
        CREATE TABLE "Other Schema".blobs (id int PRIMARY KEY, data bytea NOT NULL);
        INSERT INTO "Other Schema".blobs SELECT g, decode(repeat(md5(g::text), 20), 'hex') FROM generate_series(1, 2000) g;
        """;

    private static async Task<TestNode> CreateSplittingNodeAsync(string storeUrl, Action<RegistryDR.Configuration.StoreOptions>? store = null)
    {
        var node = await TestNode.CreateAsync(storeUrl, store);
        await ExecuteAsync(node.ConnectionString, AwkwardSchema);
        // Every table of 8 kB or more is split, in ranges of 4 pages: dozens of ranges.
        node.Options.Database.SplitTablesFromMiB = 8.0 / 1024;
        node.Options.Database.RangeMiB = 32.0 / 1024;
        node.Options.Database.DumpJobs = 3;
        node.Options.Restore.Jobs = 3;
        return node;
    }

    [TestMethod]
    public async Task FileSystemStore_SplitTables_RestoreEveryRowOfAwkwardTables()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await CreateSplittingNodeAsync("file://" + storeDir.Path);
        var store = node.CreateStore();
        var before = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        var otherBefore = await DigestAsync(node.ConnectionString, "\"Other Schema\".blobs");

        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();

        Assert.AreEqual(BackupManifest.CurrentFormatVersion, manifest.FormatVersion);
        var split = manifest.SplitTables.Select(t => t.Schema + "." + t.Name).ToList();
        CollectionAssert.IsSubsetOf(new[] { "public.Audit.Log*?\"x", "public.history_parent", "public.history_child", "public.pulls_2025", "public.pulls_2026", "Other Schema.blobs" }, split);
        var audit = manifest.SplitTables.Single(t => t.Name == "Audit.Log*?\"x");
        Assert.IsGreaterThan(3, audit.Ranges.Count, "the awkward table should span several ranges");
        CollectionAssert.AreEqual(new[] { "id", "Actor Name", "payload", "addr", "tags", "weight", "note" }, audit.Columns.ToArray(), "generated and dropped columns are not dumped");
        Assert.AreEqual(manifest.SplitTables.Sum(t => t.Ranges.Count), manifest.Artifacts.Count(a => BackupLayout.IsTableDataArtifact(a.Name)));

        // The pg_dump archive holds no rows of a split table (or the restore would load them twice).
        var dump = Path.Combine(storeDir.Path, manifest.Find(BackupLayout.DatabaseArtifact)!.Key);
        var list = await RunAsync(Path.Combine(node.Cluster.BinDirectory, "pg_restore"), "--list", dump);
        var dataEntries = list.Split('\n').Where(l => l.Contains(" TABLE DATA ", StringComparison.Ordinal)).ToList();
        foreach (var t in manifest.SplitTables)
            Assert.IsFalse(dataEntries.Any(l => l.Contains($" TABLE DATA {t.Schema} {t.Name} ", StringComparison.Ordinal)), $"{t.Name}'s rows are in the pg_dump archive too");

        var report = await new BackupVerifier(store, node.Options.Database, TestNode.Logger<BackupVerifier>()).VerifyAsync(manifest);
        Assert.IsTrue(report.Artifacts.Where(a => BackupLayout.IsTableDataArtifact(a.Name)).All(a => a.Detail.StartsWith("binary COPY", StringComparison.Ordinal)));

        await node.WipeAsync();
        await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest"));

        Assert.IsNull(before.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)), "database after restore differs");
        Assert.AreEqual(otherBefore, await DigestAsync(node.ConnectionString, "\"Other Schema\".blobs"));

        var drill = await new DrillService(node.Options, store, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System).RunAsync(manifest.BackupId);
        Assert.IsTrue(drill.Succeeded, drill.Failure);
    }

    [TestMethod]
    public async Task S3Store_SplitTables_RoundTrip()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-split-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        await using var node = await CreateSplittingNodeAsync($"s3://{bucket}/site-a", s => s.ConfigureFor(s3, partSizeMiB: 5));
        using var store = (S3Store)node.CreateStore(s3);
        var before = await RegistrySchema.SnapshotAsync(node.ConnectionString);

        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        Assert.IsGreaterThan(10, manifest.SplitTables.Sum(t => t.Ranges.Count));

        await node.WipeAsync();
        await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest"));
        Assert.IsNull(before.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)), "database after restore differs");
    }

    [TestMethod]
    public async Task CorruptRange_FailsVerifyAndRestore_LiveDatabaseUntouched()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await CreateSplittingNodeAsync("file://" + storeDir.Path);
        var store = node.CreateStore();
        var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var range = manifest.Artifacts.Last(a => BackupLayout.IsTableDataArtifact(a.Name));
        var path = Path.Combine(storeDir.Path, range.Key);
        var bytes = await File.ReadAllBytesAsync(path);
        bytes[bytes.Length / 2] ^= 0x55;
        await File.WriteAllBytesAsync(path, bytes);

        var verify = await Assert.ThrowsExactlyAsync<ArtifactCorruptException>(() =>
            new BackupVerifier(store, node.Options.Database, TestNode.Logger<BackupVerifier>()).VerifyAsync(manifest));
        Assert.AreEqual(range.Name, verify.Artifact);

        // The live database changes after the backup; a failed restore must leave it as it is now.
        await ExecuteAsync(node.ConnectionString, "INSERT INTO public.history_parent VALUES (-1, 'written after the backup')");
        var live = await RegistrySchema.SnapshotAsync(node.ConnectionString);
        var failed = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() =>
            new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest(manifest.BackupId, TerminateSessions: true)));
        StringAssert.Contains(failed.Message, range.Name);
        Assert.IsNull(live.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)), "the failed restore changed the live database");
    }

    [TestMethod]
    public async Task SplittingOff_OneArchiveHoldsEverything()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await CreateSplittingNodeAsync("file://" + storeDir.Path);
        node.Options.Database.SplitTablesFromMiB = 0;
        var manifest = await new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        Assert.IsEmpty(manifest.SplitTables);
        Assert.AreEqual(3, manifest.Artifacts.Count);
    }

    [TestMethod]
    public async Task RowsWrittenDuringTheBackup_AreNotInIt_AndTheFingerprintHolds()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await CreateSplittingNodeAsync("file://" + storeDir.Path);
        var store = node.CreateStore();
        using var stop = new CancellationTokenSource();
        var firstWrite = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // A writer appends (new pages, past the ranges' planned end) and updates (new row versions) throughout.
        var writer = Task.Run(async () =>
        {
            await using var connection = new NpgsqlConnection(node.ConnectionString);
            await connection.OpenAsync();
            var i = 0;
            while (!stop.IsCancellationRequested)
            {
                await using var cmd = new NpgsqlCommand("""
                    INSERT INTO public.history_parent SELECT 100000 + @i * 100 + g, repeat('w', 300) FROM generate_series(1, 50) g;
                    UPDATE public."Audit.Log*?""x" SET note = 'updated' WHERE id % 97 = @i % 97;
                    """, connection);
                cmd.Parameters.AddWithValue("i", i++);
                await cmd.ExecuteNonQueryAsync();
                firstWrite.TrySetResult();
            }
        });
        await firstWrite.Task.WaitAsync(TimeSpan.FromSeconds(30));
        BackupManifest manifest;
        try
        {
            manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        }
        finally
        {
            await stop.CancelAsync();
            await writer;
        }
        await node.WipeAsync();
        // The restore checks every table's row count against the counts taken in the snapshot.
        await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest"));
        await using var check = new NpgsqlConnection(node.ConnectionString);
        await check.OpenAsync();
        await using var count = new NpgsqlCommand("SELECT count(DISTINCT id) = count(*) FROM ONLY public.history_parent", check);
        Assert.IsTrue((bool)(await count.ExecuteScalarAsync())!, "a row came back twice");
        // The fingerprint counts a parent with its inheritance children, as a plain SELECT does.
        Assert.AreEqual(manifest.Fingerprint!.RowCounts["public.history_parent"], await CountAsync(check, "public.history_parent"));
        Assert.IsGreaterThan(500L + 700L, manifest.Fingerprint.RowCounts["public.history_parent"], "the writer should have added rows before the snapshot");
    }

    private static async Task<long> CountAsync(NpgsqlConnection connection, string table)
    {
        await using var cmd = new NpgsqlCommand($"SELECT count(*) FROM {table}", connection);
        return (long)(await cmd.ExecuteScalarAsync())!;
    }

    private static async Task<string> DigestAsync(string connectionString, string table)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand($"SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t", connection);
        return (string)(await cmd.ExecuteScalarAsync())!;
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        await cmd.ExecuteNonQueryAsync();
    }

    private static async Task<string> RunAsync(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.AreEqual(0, p.ExitCode, $"{file} failed");
        return output;
    }
}
