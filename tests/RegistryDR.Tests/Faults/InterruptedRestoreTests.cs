using RegistryDR.Secrets;
using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using RegistryDR.Agent;
using RegistryDR.Backup;
using RegistryDR.Fencing;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Worker;
using Microsoft.Extensions.Logging;

namespace RegistryDR.Tests.Faults;

/// <summary>
/// A real <c>registry-dr restore</c> killed with SIGKILL at each phase (it pauses at the phase
/// through the test-only REGISTRYDR_TEST_PAUSE_AT hook, so the kill lands exactly there). The
/// next run finds the interrupted restore and rolls it back or finishes it: the node ends with
/// either its own data or the restored data, whole, nothing left behind, and it backs up again.
/// </summary>
[TestClass]
public sealed class InterruptedRestoreTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(3);

    private sealed record Run(int ExitCode, string Stdout, string Stderr);

    private static ProcessStartInfo Cli(string config, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(config);
        return psi;
    }

    private static async Task<Run> RunCliAsync(string config, params string[] args)
    {
        using var p = Process.Start(Cli(config, args))!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(Bound);
        return new Run(p.ExitCode, await stdout, await stderr);
    }

    internal static string WriteConfig(TestNode node, bool keepPrevious = false)
    {
        var path = Path.Combine(node.Root, "registry-dr.json");
        var o = node.Options;
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            Database = new { o.Database.Host, o.Database.Port, o.Database.Name, o.Database.User, o.Database.PasswordFile, o.Database.BinDirectory },
            Config = new { o.Config.Directories, o.Config.Exclude },
            Store = new { o.Store.Url },
            Restore = new { o.Restore.StagingDirectory, KeepPrevious = keepPrevious },
            Agent = new { o.Agent.StateFile },
            Monitoring = new { Enabled = false, EmfLogPath = "" },
        }));
        return path;
    }

    /// <summary>Changes the node after the backup, so its own data and the backup's differ everywhere a restore writes.</summary>
    private static async Task ChangeTheNodeAsync(TestNode node)
    {
        await using (var connection = new NpgsqlConnection(node.ConnectionString))
        {
            await connection.OpenAsync();
            await using var cmd = connection.CreateCommand();
            cmd.CommandText = "INSERT INTO users (username, email) VALUES ('after-the-backup', 'late@example.com'); DELETE FROM tags WHERE id IN (SELECT id FROM tags ORDER BY id LIMIT 3);";
            await cmd.ExecuteNonQueryAsync();
        }
        File.WriteAllText(Path.Combine(node.ConfigDirectories[0], "license.json"), "{\"key_id\":\"changed after the backup\"}\n");
        File.WriteAllText(Path.Combine(node.ConfigDirectories[1], "added-after-backup.yml"), "x: 1\n");
    }

    private sealed record NodeImage(DatabaseSnapshot Database, IReadOnlyList<DirectorySnapshot> Directories);

    private static async Task<NodeImage> ImageAsync(TestNode node) =>
        new(await RegistrySchema.SnapshotAsync(node.ConnectionString), node.ConfigDirectories.Select(DirectorySnapshot.Take).ToList());

    private static async Task<string?> DifferenceAsync(TestNode node, NodeImage expected)
    {
        if (expected.Database.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)) is { } db) return "database: " + db;
        for (var i = 0; i < node.ConfigDirectories.Count; i++)
            if (expected.Directories[i].FirstDifference(DirectorySnapshot.Take(node.ConfigDirectories[i])) is { } dir) return node.ConfigDirectories[i] + ": " + dir;
        return null;
    }

    /// <summary>Everything a restore may leave on the node: staging, extracted and previous directories, scratch and previous databases.</summary>
    internal static async Task<IReadOnlyList<string>> LeftoversAsync(TestNode node)
    {
        var found = new List<string>();
        found.AddRange(Directory.GetDirectories(node.Options.Restore.StagingDirectory!).Select(Path.GetFileName).Where(n => n!.StartsWith("registry-dr-", StringComparison.Ordinal))!);
        foreach (var dir in node.ConfigDirectories)
            found.AddRange(Directory.GetDirectories(Path.GetDirectoryName(dir)!).Select(Path.GetFileName).Where(n => n!.Contains(".registry-dr-", StringComparison.Ordinal))!);
        await using var connection = new NpgsqlConnection(node.Cluster.ConnectionString());
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT datname FROM pg_database WHERE datname LIKE @p", connection);
        cmd.Parameters.AddWithValue("p", node.Database + "\\_rdr\\_%");
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync()) found.Add(reader.GetString(0));
        if (File.Exists(Path.Combine(Path.GetDirectoryName(node.Options.Agent.StateFile)!, "restore-journal.json"))) found.Add("restore-journal.json");
        return found;
    }

    private static string ModeOf(string path) => Convert.ToString((int)File.GetUnixFileMode(path), 8);

    /// <summary>Starts the restore paused at <paramref name="point"/>, lets <paramref name="whilePaused"/> look at the node, then kills it with SIGKILL.</summary>
    private static Task KillRestoreAtAsync(TestNode node, string config, string point, Action? whilePaused = null) =>
        PausePoint.KillAtAsync(Cli(config, "restore", "--terminate-sessions"), point, Path.Combine(node.Root, "paused-" + point), Bound, whilePaused);

    [TestMethod]
    [DataRow("download", false)]
    [DataRow("extract", false)]
    [DataRow("scratch-load", false)]
    [DataRow("after-db-swap", false)]
    [DataRow("after-dir-swap", false)]
    [DataRow("before-cleanup", true)]
    public async Task RestoreKilledAtAPhase_TheNextRunRollsItBackOrFinishesIt_AndTheNodeBacksUpAgain(string point, bool restoredDataWins)
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 20);
        var store = node.CreateStore();
        // Excluded from backups (Config:Exclude *.sock): gone, so the tree is exactly what a restore brings back.
        File.Delete(Path.Combine(node.ConfigDirectories[0], "registry.sock"));
        var backup = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var restored = await ImageAsync(node);
        await ChangeTheNodeAsync(node);
        var own = await ImageAsync(node);
        Assert.IsNotNull(await DifferenceAsync(node, restored), "the node's own data differs from the backup's");
        var config = WriteConfig(node);

        await KillRestoreAtAsync(node, config, point);
        Assert.IsNotEmpty(await LeftoversAsync(node), "the killed restore left something to recover");

        // `status` finds the interrupted restore and says what it did.
        var status = await RunCliAsync(config, "status");
        StringAssert.Contains(status.Stdout, $"Interrupted:     Restore of backup {backup.BackupId} (pid ", status.Stdout + status.Stderr);
        StringAssert.Contains(status.Stdout, restoredDataWins
            ? "was killed after the registry answered healthy on the restored data; its clean-up was finished: "
            : "and was rolled back: ");

        Assert.IsNull(await DifferenceAsync(node, restoredDataWins ? restored : own));
        CollectionAssert.AreEqual(Array.Empty<string>(), (await LeftoversAsync(node)).ToArray());
        var generationTaken = point is "after-db-swap" or "after-dir-swap" or "before-cleanup";
        var state = NodeStateFile.Read(node.Options.Agent.StateFile);
        var current = await new GenerationLedger(store, TimeProvider.System).CurrentAsync(CancellationToken.None);
        Assert.AreEqual(generationTaken ? 1L : null, current?.Number);
        Assert.AreEqual(generationTaken ? 1L : null, state?.Generation);
        if (restoredDataWins) Assert.AreEqual(NodeStatus.Restored, state!.Status);
        else if (generationTaken) Assert.AreEqual(NodeStatus.Manual, state!.Status);

        // The node backs up again, and what it backs up is the data it ended with.
        var after = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        Assert.AreNotEqual(backup.BackupId, after.BackupId);
        CollectionAssert.AreEqual(Array.Empty<string>(), (await LeftoversAsync(node)).ToArray());
    }

    [TestMethod]
    public async Task TheWorkerAtStart_RollsBackAKilledRestore_AndRemovesItsStaging()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 5);
        var store = node.CreateStore();
        await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        await ChangeTheNodeAsync(node);
        var own = await ImageAsync(node);
        await KillRestoreAtAsync(node, WriteConfig(node), "after-dir-swap");
        Assert.IsNotNull(await DifferenceAsync(node, own), "killed after the swap: the restored data is in place");

        node.Options.Schedule.CatchUpOnStart = false;
        node.Options.Schedule.Cron = "0 0 0 1 1 ? *";
        node.Options.Schedule.DrillCron = null;
        var logs = new RegistryDR.Tests.Worker.WorkerTests.RecordingLoggerProvider();
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new Microsoft.Extensions.Hosting.HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.AddProvider(logs);
        builder.Services.AddRegistryDrWorker(node.Options, store);
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var deadline = DateTime.UtcNow + Bound;
            while (!logs.Lines.Any(l => l.Id == 8020))
            {
                if (DateTime.UtcNow > deadline) Assert.Fail("the worker did not recover the restore:\n" + string.Join("\n", logs.Lines.Select(l => l.Message)));
                await Task.Delay(100);
            }
        }
        finally
        {
            await host.StopAsync();
        }
        StringAssert.Contains(logs.Lines.First(l => l.Id == 8020).Message, "was interrupted during 'swap directories' and was rolled back: ");
        Assert.IsNull(await DifferenceAsync(node, own));
        CollectionAssert.AreEqual(Array.Empty<string>(), (await LeftoversAsync(node)).ToArray());
    }

    [TestMethod]
    public async Task WhatARestoreStages_IsPrivateFromCreation_AndAKilledRestoresStagingIsRemovedByTheNextRun()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 5);
        var store = node.CreateStore();
        await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var config = WriteConfig(node);
        var seen = new List<string>();

        await KillRestoreAtAsync(node, config, "download", () =>
        {
            var staging = Directory.GetDirectories(node.Options.Restore.StagingDirectory!, "registry-dr-restore-*").Single();
            seen.Add($"staging {ModeOf(staging)}");
            foreach (var file in Directory.GetFiles(staging).Order(StringComparer.Ordinal))
                seen.Add($"{Path.GetFileName(file)} {ModeOf(file)}");
            var journal = Path.Combine(Path.GetDirectoryName(node.Options.Agent.StateFile)!, "restore-journal.json");
            seen.Add($"journal {ModeOf(journal)}");
            seen.Add($"state directory {ModeOf(Path.GetDirectoryName(journal)!)}");
        });
        // The first artifact is downloaded when the restore pauses: globals.sql, with the roles' password hashes.
        CollectionAssert.AreEqual(new[] { "staging 700", ".registry-dr-owner.lock 600", "globals.sql 600", "journal 600", "state directory 700" }, seen.ToArray());
        Assert.HasCount(1, Directory.GetDirectories(node.Options.Restore.StagingDirectory!, "registry-dr-restore-*"), "the killed restore's staging is still there");

        seen.Clear();
        await KillRestoreAtAsync(node, config, "extract", () =>
        {
            foreach (var dir in node.ConfigDirectories)
            {
                var parent = Directory.GetDirectories(Path.GetDirectoryName(dir)!, $".{Path.GetFileName(dir)}.registry-dr-restore-*").Single();
                seen.Add($"{Path.GetFileName(dir)} staging {ModeOf(parent)}");
            }
            seen.Add($"restore staging dirs {Directory.GetDirectories(node.Options.Restore.StagingDirectory!, "registry-dr-restore-*").Length}");
        });
        // The second restore removed the first one's staging before it began: only its own is there.
        CollectionAssert.AreEqual(new[] { "dtr staging 700", "dtr staging 700", "restore staging dirs 1" }, seen.ToArray());

        // A restore run to the end cleans up after the killed one and leaves nothing of its own.
        await node.WipeAsync();
        var run = await RunCliAsync(config, "restore", "--terminate-sessions");
        Assert.AreEqual(0, run.ExitCode, run.Stderr);
        CollectionAssert.AreEqual(Array.Empty<string>(), (await LeftoversAsync(node)).ToArray());
        // The node state itself is 0644 by design (it holds no secret, and continuous mode's
        // wal-push reads it as PostgreSQL's user); everything else beside it stays private.
        Assert.AreEqual(PrivateFiles.ReadableFileMode, File.GetUnixFileMode(node.Options.Agent.StateFile));
        Assert.IsTrue(SecretsAreNotWorldReadable(Path.GetDirectoryName(node.Options.Agent.StateFile)!, except: node.Options.Agent.StateFile), "the journal beside the node state stays private");
    }

    private static bool SecretsAreNotWorldReadable(string dir, string? except = null) =>
        Directory.GetFiles(dir).Where(f => f != except).All(f => (File.GetUnixFileMode(f) & (UnixFileMode.OtherRead | UnixFileMode.GroupRead)) == 0);

    [TestMethod]
    public async Task Status_ListsTheLeftoversItLeavesAlone_WithTheirSizes()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 5);
        var store = node.CreateStore();
        var backup = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        node.Options.Restore.KeepPrevious = true;
        await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest", TerminateSessions: true));
        var config = WriteConfig(node, keepPrevious: true);

        var previousDb = node.Database + "_rdr_prev_" + backup.BackupId[^6..];
        async Task<long> DatabaseBytesAsync()
        {
            await using var connection = new NpgsqlConnection(node.Cluster.ConnectionString());
            await connection.OpenAsync();
            await using var cmd = new NpgsqlCommand("SELECT pg_database_size(@d)", connection);
            cmd.Parameters.AddWithValue("d", previousDb);
            return (long)(await cmd.ExecuteScalarAsync())!;
        }
        // Autovacuum may still add a visibility map or free space map to the renamed database, so
        // its size is read before and after status, which must report a size between the two.
        var previousDbBytes = await DatabaseBytesAsync();
        var previousDir = Path.Combine(Path.GetDirectoryName(node.ConfigDirectories[0])!, $".dtr.registry-dr-prev-{backup.BackupId}");
        static long Bytes(string dir) => Directory.GetFiles(dir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
            .Where(f => new FileInfo(f).LinkTarget is null).Sum(f => new FileInfo(f).Length);
        var previousDirBytes = Bytes(previousDir);

        var status = await RunCliAsync(config, "status", "--json");
        var previousDbBytesAfter = await DatabaseBytesAsync();
        using var json = JsonDocument.Parse(status.Stdout);
        var leftovers = json.RootElement.GetProperty("leftovers").EnumerateArray()
            .Select(l => $"{l.GetProperty("kind").GetString()} {l.GetProperty("location").GetString()} {l.GetProperty("bytes").GetInt64()}")
            .Order(StringComparer.Ordinal).ToList();
        var previousEtc = Path.Combine(Path.GetDirectoryName(node.ConfigDirectories[1])!, $".dtr.registry-dr-prev-{backup.BackupId}");
        var expected = new List<string>
        {
            $"previous config directory {previousDir} {previousDirBytes}",
            $"previous config directory {previousEtc} {Bytes(previousEtc)}",
            $"previous database {previousDb} BYTES",
        }.Order(StringComparer.Ordinal).ToList();
        var reported = leftovers.Single(l => l.StartsWith($"previous database {previousDb} ", StringComparison.Ordinal));
        var reportedBytes = long.Parse(reported[(reported.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.IsTrue(reportedBytes >= Math.Min(previousDbBytes, previousDbBytesAfter) && reportedBytes <= Math.Max(previousDbBytes, previousDbBytesAfter),
            $"status reported {reportedBytes} bytes; pg_database_size read {previousDbBytes} before and {previousDbBytesAfter} after");
        CollectionAssert.AreEqual(expected, leftovers.Select(l => l == reported ? $"previous database {previousDb} BYTES" : l).ToList(), status.Stdout);
        Assert.IsGreaterThan(0, previousDirBytes);
        StringAssert.Contains((await RunCliAsync(config, "status")).Stdout, $"Leftover:        previous database {previousDb}, ");
    }
}
