using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using RegistryDR.Backup;
using RegistryDR.Monitoring;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Worker;

namespace RegistryDR.Tests.Faults;

/// <summary>Faults in the processes around a backup: each is injected for real, and afterwards the newest complete set still restores.</summary>
[TestClass]
public sealed class ProcessFaultTests
{
    private static async Task AddIncompressibleRowsAsync(string connectionString, int megabytes)
    {
        await using var connection = new Npgsql.NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = $"""
            CREATE TABLE layer_blobs (id int PRIMARY KEY, data bytea NOT NULL);
            INSERT INTO layer_blobs SELECT g, decode(string_agg(md5(g::text || ':' || s::text), ''), 'hex')
            FROM generate_series(1, {megabytes * 64}) g, generate_series(1, 1024) s GROUP BY g;
            """;
        await cmd.ExecuteNonQueryAsync();
    }

    private static string WriteConfig(TestNode node, object schedule)
    {
        var path = Path.Combine(node.Root, "registry-dr.json");
        var o = node.Options;
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            Database = new { o.Database.Host, o.Database.Port, o.Database.Name, o.Database.User, o.Database.PasswordFile, o.Database.BinDirectory, CompressionLevel = 9 },
            Config = new { o.Config.Directories },
            Store = new { o.Store.Url },
            Schedule = schedule,
            Restore = new { o.Restore.StagingDirectory },
            Agent = new { o.Agent.StateFile },
            Monitoring = new { Enabled = false, EmfLogPath = "" },
        }));
        return path;
    }

    private static Process StartWorker(string config, string log)
    {
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("exec dotnet \"$0\" worker --config \"$1\" >>\"$2\" 2>&1");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        psi.ArgumentList.Add(config);
        psi.ArgumentList.Add(log);
        return Process.Start(psi)!;
    }

    private static async Task DrillPassesAsync(TestNode node)
    {
        var report = await new DrillService(node.Options, node.CreateStore(), Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System).RunAsync();
        Assert.IsTrue(report.Succeeded, report.Failure);
    }

    [TestMethod]
    public async Task KillDashNineMidBackup_ThenRestart_NextBackupSucceeds_AndNoPartialSetIsLeft()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        await AddIncompressibleRowsAsync(node.ConnectionString, 48);
        var config = WriteConfig(node, new { Cron = "0 0 0 1 1 ? *", CatchUpOnStart = true, DrillCron = "" });
        await node.InitializeStoreAsync(); // the worker refuses a store without its marker
        var log = Path.Combine(node.Root, "worker.log");

        using (var worker = StartWorker(config, log))
        {
            // The catch-up backup starts at once; wait until it is writing, then kill -9.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            var probe = node.CreateStore();
            while (!(await new BackupCatalog(probe).ListAsync(CancellationToken.None)).Any(s => !s.IsComplete))
            {
                if (DateTime.UtcNow > deadline || worker.HasExited)
                    Assert.Fail("the worker never started a backup: " + string.Join("\n", Directory.GetFiles(storeDir, "*", SearchOption.AllDirectories)) + "\n" + File.ReadAllText(log));
                await Task.Delay(50);
            }
            worker.Kill(); // SIGKILL: no clean-up code runs
            await worker.WaitForExitAsync();
        }
        var killed = await new BackupCatalog(node.CreateStore()).ListAsync(CancellationToken.None);
        Assert.AreEqual(1, killed.Count);
        Assert.IsFalse(killed[0].IsComplete, "a killed backup is never complete");

        using (var worker = StartWorker(config, log))
        {
            var deadline = DateTime.UtcNow.AddSeconds(120);
            IReadOnlyList<BackupSetInfo> sets;
            while (!(sets = await new BackupCatalog(node.CreateStore()).ListAsync(CancellationToken.None)).Any(s => s.IsComplete))
            {
                if (DateTime.UtcNow > deadline || worker.HasExited) Assert.Fail("the restarted worker took no backup: " + File.ReadAllText(log));
                await Task.Delay(200);
            }
            worker.Kill(entireProcessTree: true);
            await worker.WaitForExitAsync();
            Assert.IsFalse(sets.Any(s => s.BackupId == killed[0].BackupId), "the killed backup's partial set was removed at restart");
        }
        var final = await new BackupCatalog(node.CreateStore()).ListAsync(CancellationToken.None);
        Assert.IsTrue(final.All(s => s.IsComplete), string.Join(", ", final.Select(s => $"{s.BackupId}:{s.State}")));
        StringAssert.Contains(File.ReadAllText(log), $"Removed the partial set {killed[0].BackupId}");
        await DrillPassesAsync(node);
    }

    [TestMethod]
    public async Task DiskTooSmallForTheRestore_IsAClearError_TheNodeIsUntouched_AndTheRestoreWorksOnceSpaceIsFreed()
    {
        if (!Environment.IsPrivilegedProcess) Assert.Inconclusive("mounting a small tmpfs needs root");
        var storeDir = Directory.CreateTempSubdirectory("rdr-store-").FullName;
        var small = Directory.CreateTempSubdirectory("rdr-small-").FullName;
        var mounted = false;
        try
        {
            await using var node = await TestNode.CreateAsync("file://" + storeDir);
            node.Options.Database.CompressionLevel = 0;
            await AddIncompressibleRowsAsync(node.ConnectionString, 8);
            var store = node.CreateStore();
            await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
            var live = await RegistrySchema.SnapshotAsync(node.ConnectionString);

            var mount = Process.Start("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", small])!;
            await mount.WaitForExitAsync();
            if (mount.ExitCode != 0) Assert.Inconclusive("tmpfs could not be mounted here");
            mounted = true;
            var roomy = node.Options.Restore.StagingDirectory;
            node.Options.Restore.StagingDirectory = small;

            // The restore's preflight sees that the set does not fit before downloading anything.
            var ex = await Assert.ThrowsExactlyAsync<RestorePreflightException>(() =>
                new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)));
            StringAssert.Contains(ex.Message, "nothing was downloaded or changed");
            StringAssert.Contains(ex.Message, $"  - staging space: ");
            StringAssert.Contains(ex.Message, $"must be staged in {small} but only ");
            StringAssert.Contains(ex.Message, "free space or set Restore:StagingDirectory");
            Assert.HasCount(1, ex.Report.Checks.Where(c => !c.Passed), ex.Message);
            Assert.IsNull(live.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)));
            Assert.IsEmpty(Directory.GetFileSystemEntries(small), "the failed download's staging is removed");

            node.Options.Restore.StagingDirectory = roomy;
            await node.WipeAsync();
            await new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest"));
            Assert.IsNull(live.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)));
        }
        finally
        {
            if (mounted) (await Task.FromResult(Process.Start("umount", [small])!)).WaitForExit();
            Directory.Delete(small, recursive: true);
            Directory.Delete(storeDir, recursive: true);
        }
    }

    private sealed class RecordingEvents : IOperationEvents
    {
        public readonly List<string> Events = [];
        private void Add(string e) { lock (Events) Events.Add(e); }
        public string[] Snapshot() { lock (Events) return [.. Events]; }
        public void BackupStarted(string backupId) => Add("started");
        public void BackupSucceeded(BackupManifest manifest, TimeSpan duration) => Add("succeeded");
        public void BackupFailed(string backupId, BackupFailureReason reason, TimeSpan duration) => Add("failed:" + reason);
        public void RestoreStarted(string backupId) { }
        public void RestoreFinished(string backupId, bool succeeded, TimeSpan duration) { }
        public void ScheduleMissed() { }
        public void StoreRetry(string operation) { }
    }

    [TestMethod]
    public async Task PostgresDownAtAScheduledRun_IsAFailureWithItsReason_AndTheNextRunSucceeds()
    {
        await using var cluster = await PostgresCluster.StartAsync();
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        var database = await cluster.CreateDatabaseAsync();
        await RegistrySchema.CreateAndSeedAsync(cluster.ConnectionString(database));
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        node.Options.Database.Port = cluster.Port;
        node.Options.Database.Name = database;
        File.WriteAllText(node.Options.Database.PasswordFile!, cluster.SuperUserPassword + "\n");
        node.Options.Schedule.Cron = "0/2 * * * * ?";
        node.Options.Schedule.CatchUpOnStart = false;
        node.Options.Schedule.DrillCron = null;

        var events = new RecordingEvents();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddSingleton<IOperationEvents>(events);
        builder.Services.AddRegistryDrWorker(node.Options, node.CreateStore());
        using var host = builder.Build();

        await cluster.StopAsync();
        await host.StartAsync();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!events.Snapshot().Contains("failed:Database"))
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("no failed run recorded: " + string.Join(", ", events.Snapshot()));
            await Task.Delay(200);
        }
        Assert.IsEmpty((await new BackupCatalog(node.CreateStore()).ListAsync(CancellationToken.None)).Where(s => s.IsComplete));

        await cluster.StartAgainAsync();
        deadline = DateTime.UtcNow.AddSeconds(60);
        while (!events.Snapshot().Contains("succeeded"))
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("no run succeeded after PostgreSQL came back: " + string.Join(", ", events.Snapshot()));
            await Task.Delay(200);
        }
        await host.StopAsync();
        Assert.IsTrue((await new BackupCatalog(node.CreateStore()).ListAsync(CancellationToken.None)).Any(s => s.IsComplete));
        node.Options.Database.Port = cluster.Port;
        await DrillPassesAsync(node);
    }
}
