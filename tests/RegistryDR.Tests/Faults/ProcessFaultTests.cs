using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using RegistryDR.Backup;
using RegistryDR.Monitoring;
using RegistryDR.Restore;
using RegistryDR.Stores;
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

    private static string WriteConfig(TestNode node, object schedule, object? store = null)
    {
        var path = Path.Combine(node.Root, "registry-dr.json");
        var o = node.Options;
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            Database = new { o.Database.Host, o.Database.Port, o.Database.Name, o.Database.User, o.Database.PasswordFile, o.Database.BinDirectory, CompressionLevel = 9 },
            Config = new { o.Config.Directories },
            Store = store ?? new { o.Store.Url },
            Schedule = schedule,
            Restore = new { o.Restore.StagingDirectory },
            Agent = new { o.Agent.StateFile },
            Monitoring = new { Enabled = false, EmfLogPath = "" },
        }));
        return path;
    }

    private static Process StartWorker(string config, string log, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) psi.Environment[k] = v;
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

    /// <summary>Starts the worker, waits until <paramref name="writing"/> says the catch-up backup is well under way, and kills it with SIGKILL.</summary>
    private static async Task KillWorkerWhileAsync(string config, string log, Func<Task<bool>> writing, IReadOnlyDictionary<string, string>? environment = null)
    {
        using var worker = StartWorker(config, log, environment);
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (!await writing())
        {
            if (DateTime.UtcNow > deadline || worker.HasExited) Assert.Fail("the worker's backup never got that far: " + File.ReadAllText(log));
            await Task.Delay(20);
        }
        worker.Kill(); // SIGKILL: no clean-up code runs
        await worker.WaitForExitAsync();
    }

    /// <summary>Starts the worker again and waits until its catch-up backup completed, then stops it.</summary>
    private static async Task RestartWorkerUntilACompleteSetAsync(TestNode node, IBackupStore store, string config, string log, IReadOnlyDictionary<string, string>? environment = null)
    {
        using var worker = StartWorker(config, log, environment);
        var deadline = DateTime.UtcNow.AddSeconds(180);
        while (!(await new BackupCatalog(store).ListAsync(CancellationToken.None)).Any(s => s.IsComplete))
        {
            if (DateTime.UtcNow > deadline || worker.HasExited) Assert.Fail("the restarted worker took no backup: " + File.ReadAllText(log));
            await Task.Delay(200);
        }
        worker.Kill(entireProcessTree: true);
        await worker.WaitForExitAsync();
    }

    [TestMethod]
    public async Task KillDashNineMidBackup_FileStore_TheNextStartLeavesNoByteOnDiskOutsideCompleteSets()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir, repositories: 20);
        await AddIncompressibleRowsAsync(node.ConnectionString, 32);
        await node.InitializeStoreAsync(); // the worker refuses a store without its marker
        var config = WriteConfig(node, new { Cron = "0 0 0 1 1 ? *", CatchUpOnStart = true, DrillCron = "" });
        var log = Path.Combine(node.Root, "worker.log");
        long Partial() => Directory.GetFiles(storeDir, "*.partial-*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);

        await KillWorkerWhileAsync(config, log, () => Task.FromResult(Partial() > 1 << 20));
        Assert.IsGreaterThan(1L << 20, Partial(), "the killed backup left half-written files");
        var store = node.CreateStore();
        var killed = (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Single();

        await RestartWorkerUntilACompleteSetAsync(node, store, config, log);
        var sets = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.IsTrue(sets.All(s => s.IsComplete), string.Join(", ", sets.Select(s => $"{s.BackupId}:{s.State}")));
        Assert.AreEqual(0, Partial(), "no partial file is left: " + string.Join(", ", Directory.GetFiles(storeDir, "*.partial-*", SearchOption.AllDirectories)) + "\n" + File.ReadAllText(log));
        var onDisk = Directory.GetFiles(storeDir, "*", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) != RegistryDR.Stores.StoreMarker.Key).Sum(f => new FileInfo(f).Length);
        Assert.AreEqual(sets.Sum(s => s.Size), onDisk, "every byte on disk but the store marker belongs to a complete set");
        StringAssert.Contains(File.ReadAllText(log), $"temporary object(s) of the partial set {killed.BackupId}");
    }

    [TestMethod]
    public async Task KillDashNineMidBackup_S3_TheNextStartAbortsItsOpenMultipartUploads()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-kill9-" + Guid.NewGuid().ToString("N")[..8];
        await s3.CreateBucketAsync(bucket);
        await using var node = await TestNode.CreateAsync($"s3://{bucket}/site", o => o.ConfigureFor(s3, partSizeMiB: 5), repositories: 20);
        await node.InitializeStoreAsync(s3); // the worker refuses a store without its marker
        await AddIncompressibleRowsAsync(node.ConnectionString, 32);
        var o = node.Options.Store;
        var config = WriteConfig(node, new { Cron = "0 0 0 1 1 ? *", CatchUpOnStart = true, DrillCron = "" },
            new { o.Url, o.ServiceUrl, o.Region, o.ForcePathStyle, Checksums = o.Checksums.ToString(), ServerSideEncryption = o.ServerSideEncryption.ToString(), o.PartSizeMiB });
        var log = Path.Combine(node.Root, "worker.log");
        var environment = new Dictionary<string, string>(s3.AwsCliEnvironment);
        using var client = s3.CreateClient();
        async Task<int> OpenUploadsAsync() =>
            (await client.ListMultipartUploadsAsync(new Amazon.S3.Model.ListMultipartUploadsRequest { BucketName = bucket, Prefix = "site/" })).MultipartUploads?.Count ?? 0;

        await KillWorkerWhileAsync(config, log, async () => await OpenUploadsAsync() > 0, environment);
        Assert.IsGreaterThan(0, await OpenUploadsAsync(), "the killed backup left multipart uploads open");
        using var store = (RegistryDR.Stores.S3Store)node.CreateStore(s3);
        var killed = (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Single();

        await RestartWorkerUntilACompleteSetAsync(node, store, config, log, environment);
        Assert.AreEqual(0, await OpenUploadsAsync(), "every upload of the killed backup was aborted");
        var sets = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.IsTrue(sets.All(s => s.IsComplete), string.Join(", ", sets.Select(s => $"{s.BackupId}:{s.State}")));
        StringAssert.Contains(File.ReadAllText(log), $"temporary object(s) of the partial set {killed.BackupId}");
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
            var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
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

    [TestMethod]
    public async Task ConfigLargerThanTheRoomBesideItsTarget_IsRefusedBeforeExtracting_NamingThePathTheNeedAndTheRoom()
    {
        if (!Environment.IsPrivilegedProcess) Assert.Inconclusive("mounting a small tmpfs needs root");
        using var storeDir = new TempDirectory("rdr-store-");
        using var small = new TempDirectory("rdr-small-");
        var mount = Process.Start("mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", small.Path])!;
        await mount.WaitForExitAsync();
        if (mount.ExitCode != 0) Assert.Inconclusive("tmpfs could not be mounted here");
        try
        {
            await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 5);
            // The first config directory lives on the small filesystem and fills two thirds of it.
            var target = Path.Combine(small.Path, "dtr");
            Directory.CreateDirectory(target);
            var big = new byte[4 << 20];
            new Random(3).NextBytes(big);
            File.WriteAllBytes(Path.Combine(target, "layer-cache.bin"), big);
            File.WriteAllText(Path.Combine(target, "dtr.yml"), "storage: {}\n");
            node.Options.Config.Directories[0] = target;
            var store = node.CreateStore();
            var manifest = await new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
            var before = DirectorySnapshot.Take(target);
            var database = await RegistrySchema.SnapshotAsync(node.ConnectionString);

            // What the archive expands to beside the target, from its own headers: whole 4 KiB blocks per file, one block per entry, one for the tree.
            long need = 4096;
            var prefix = manifest.ConfigDirectories[0].EntryPrefix;
            await using (var archive = await store.OpenReadAsync(manifest.Find(BackupLayout.ConfigArtifact)!.Key, CancellationToken.None))
            using (var gzip = new ICSharpCode.SharpZipLib.GZip.GZipInputStream(archive))
            using (var tar = new ICSharpCode.SharpZipLib.Tar.TarInputStream(gzip, System.Text.Encoding.UTF8))
            {
                ICSharpCode.SharpZipLib.Tar.TarEntry? entry;
                while ((entry = tar.GetNextEntry()) is not null)
                    if (entry.Name.TrimStart('.', '/') is var name && (name == prefix || name.StartsWith(prefix + "/", StringComparison.Ordinal)))
                        need += (entry.IsDirectory || entry.TarHeader.TypeFlag == ICSharpCode.SharpZipLib.Tar.TarHeader.LF_SYMLINK ? 0 : (entry.Size + 4095) / 4096 * 4096) + 4096;
            }
            var free = new DriveInfo(small.Path).AvailableFreeSpace;
            Assert.IsLessThan(need, free, "the test needs the archive not to fit");

            var ex = await Assert.ThrowsExactlyAsync<RestoreFailedException>(() =>
                new RestoreService(node.Options, store, TestNode.Logger<RestoreService>(), TimeProvider.System).RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)));
            Assert.IsInstanceOfType<InsufficientSpaceException>(ex.InnerException);
            StringAssert.Contains(ex.Message, $"The config archive of backup {manifest.BackupId} expands to {need} bytes beside {target}, and the filesystem of {small.Path} has {free} bytes free. Free space there; nothing on the node was changed.");
            StringAssert.Contains(ex.NodeState, "was not touched");
            Assert.IsNull(before.FirstDifference(DirectorySnapshot.Take(target)));
            Assert.IsNull(database.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)));
            Assert.IsEmpty(Directory.GetFileSystemEntries(small.Path).Where(e => Path.GetFileName(e) != "dtr"), "nothing was extracted beside the target");
        }
        finally
        {
            (await Task.FromResult(Process.Start("umount", [small.Path])!)).WaitForExit();
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
