using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Worker;

namespace RegistryDR.Tests.Worker;

/// <summary>The scheduled worker on a real Quartz scheduler, a real database and a real store.</summary>
[TestClass]
public sealed class WorkerTests
{
    /// <summary>Wraps a store to slow down the database dump's upload and record how many run at once.</summary>
    private sealed class ObservedStore(IBackupStore inner, TimeSpan dumpDelay) : RegistryDR.Tests.Infrastructure.ForwardingStore(inner)
    {
        private int _inFlight;
        public int MaxInFlight;
        public int DumpsStarted;
        public readonly TaskCompletionSource FirstDumpStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override string Description => Inner.Description;

        public override async Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken)
        {
            if (!key.EndsWith("database.dump", StringComparison.Ordinal)) return await Inner.PutAsync(key, content, cancellationToken);
            var now = Interlocked.Increment(ref _inFlight);
            Interlocked.Increment(ref DumpsStarted);
            InterlockedMax(ref MaxInFlight, now);
            FirstDumpStarted.TrySetResult();
            try
            {
                await Task.Delay(dumpDelay, cancellationToken);
                return await Inner.PutAsync(key, content, cancellationToken);
            }
            finally
            {
                Interlocked.Decrement(ref _inFlight);
            }
        }

        private static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
        }

        public override Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken) => Inner.OpenReadAsync(key, cancellationToken);
        public override IAsyncEnumerable<StoreItem> ListAsync(string prefix, CancellationToken cancellationToken) => Inner.ListAsync(prefix, cancellationToken);
        public override Task DeleteAsync(string key, CancellationToken cancellationToken) => Inner.DeleteAsync(key, cancellationToken);
        public override Task CheckAccessAsync(CancellationToken cancellationToken) => Inner.CheckAccessAsync(cancellationToken);
    }

    private static IHost BuildHost(TestNode node, IBackupStore store)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddRegistryDrWorker(node.Options, store);
        return builder.Build();
    }

    private static async Task<IReadOnlyList<BackupSetInfo>> WaitForCompleteSetsAsync(IBackupStore store, int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var sets = await new BackupCatalog(store).ListAsync(CancellationToken.None);
            if (sets.Count(s => s.IsComplete) >= count) return sets;
            if (DateTime.UtcNow > deadline) Assert.Fail($"only {sets.Count(s => s.IsComplete)} of {count} complete sets after {timeout}");
            await Task.Delay(250);
        }
    }

    private static string FileStore() => "file://" + Directory.CreateTempSubdirectory("rdr-store-").FullName;

    [TestMethod]
    public async Task TwoFires_MakeTwoCompleteSets()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Schedule.Cron = "0/2 * * * * ?";
        node.Options.Schedule.CatchUpOnStart = false;
        var store = node.CreateStore();
        using var host = BuildHost(node, store);
        await host.StartAsync();
        var sets = await WaitForCompleteSetsAsync(store, 2, TimeSpan.FromSeconds(60));
        await host.StopAsync();
        Assert.IsTrue(sets.Take(2).All(s => s.IsComplete));
        Assert.AreNotEqual(sets[0].BackupId, sets[1].BackupId);
        var verifier = new RegistryDR.Restore.BackupVerifier(store, node.Options.Database, TestNode.Logger<RegistryDR.Restore.BackupVerifier>());
        foreach (var s in sets.Where(s => s.IsComplete))
            await verifier.VerifyAsync(await new BackupCatalog(store).ReadManifestAsync(s.BackupId, CancellationToken.None));
    }

    [TestMethod]
    public async Task BackupLongerThanTheInterval_NeverRunsTwiceAtOnce_AndMissedFiresCollapse()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Schedule.Cron = "* * * * * ?"; // every second
        node.Options.Schedule.CatchUpOnStart = false;
        var store = new ObservedStore(node.CreateStore(), TimeSpan.FromSeconds(4));
        using var host = BuildHost(node, store);
        await host.StartAsync();
        var sets = await WaitForCompleteSetsAsync(store, 2, TimeSpan.FromSeconds(90));
        await host.StopAsync();
        Assert.AreEqual(1, store.MaxInFlight, "two backups ran at once");
        // About 8 fires came due while two 4-second backups ran; they must not all run afterwards.
        Assert.IsLessThanOrEqualTo(3, store.DumpsStarted, $"{store.DumpsStarted} dumps started: missed fires burst instead of collapsing");
    }

    [TestMethod]
    public async Task StoppingMidBackup_LeavesNoSetThatLooksComplete_AndNoLeftovers()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Schedule.Cron = "0/1 * * * * ?";
        node.Options.Schedule.CatchUpOnStart = false;
        var store = new ObservedStore(node.CreateStore(), TimeSpan.FromSeconds(30));
        using var host = BuildHost(node, store);
        await host.StartAsync();
        await store.FirstDumpStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await host.StopAsync(); // what SIGTERM does through the host's console lifetime
        var sets = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.IsFalse(sets.Any(s => s.IsComplete), "a cancelled backup must not be complete");
        Assert.IsEmpty(sets, "the cancelled backup's partial objects are removed");
    }

    [TestMethod]
    public async Task AfterDowntime_OneCatchUpBackupRuns_OnlyWhenTheNewestIsOlderThanAnInterval()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Schedule.Cron = "0 0 0 1 1 ? *"; // yearly: no scheduled fire can land inside the test
        node.Options.Schedule.CatchUpOnStart = true;
        var store = node.CreateStore();
        using (var host = BuildHost(node, store))
        {
            await host.StartAsync();
            await WaitForCompleteSetsAsync(store, 1, TimeSpan.FromSeconds(60));
            await host.StopAsync();
        }
        // A fresh complete set now exists: a restart within the interval takes no extra backup.
        // Rather than wait a while and see that nothing came (which a slow machine can pass by
        // accident), wait until the catch-up check has finished deciding and then read the
        // decision off the scheduler: a catch-up fire is a one-shot trigger on the backup job,
        // which Quartz keeps until that job has run, and a job listener counts every run.
        var logs = new RecordingLoggerProvider();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.AddProvider(logs);
        builder.Services.AddRegistryDrWorker(node.Options, store);
        using (var host = builder.Build())
        {
            await host.StartAsync();
            var scheduler = await host.Services.GetRequiredService<Quartz.ISchedulerFactory>().GetScheduler();
            var runs = new JobsStarted();
            scheduler.ListenerManager.AddJobListener(runs, [Quartz.Matchers.Key(BackupJob.Key)]);
            var catchUp = host.Services.GetServices<IHostedService>().OfType<CatchUpService>().Single();
            await catchUp.ExecuteTask!.WaitAsync(TimeSpan.FromMinutes(2)); // bounds a hung check only
            var triggers = (await Quartz.SchedulerQueryExtensions.GetTriggersOfJob(scheduler, BackupJob.Key)).Select(t => t.Key.Name).ToList();
            CollectionAssert.AreEqual(new[] { "backup-schedule" }, triggers, "a catch-up fire was triggered although the newest set is fresh");
            Assert.AreEqual(0, runs.Count, "a backup job ran");
            Assert.IsFalse(logs.Lines.Any(l => l.Id == 3100), "the catch-up check decided to run a backup:\n" + string.Join("\n", logs.Lines.Select(l => l.Message)));
            await host.StopAsync();
        }
        var sets = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.AreEqual(1, sets.Count, "exactly one catch-up backup");
    }

    /// <summary>Counts the backup job's runs as they start.</summary>
    private sealed class JobsStarted : Quartz.IJobListener
    {
        private int _count;
        public int Count => Volatile.Read(ref _count);
        public string Name => "test-jobs-started";
        public ValueTask JobToBeExecuted(Quartz.IJobExecutionContext context, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _count);
            return ValueTask.CompletedTask;
        }
        public ValueTask JobExecutionVetoed(Quartz.IJobExecutionContext context, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
        public ValueTask JobProgressChanged(Quartz.IJobExecutionContext context, Quartz.Extensibility.FireInstanceProgress progress, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
        public ValueTask JobWasExecuted(Quartz.IJobExecutionContext context, Quartz.JobExecutionException? jobException, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
    }

    /// <summary>A store whose database upload never returns, and ignores cancellation: a hung run, whatever hangs underneath.</summary>
    private sealed class HangingStore(IBackupStore inner) : RegistryDR.Tests.Infrastructure.ForwardingStore(inner)
    {
        public readonly TaskCompletionSource Hanging = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public override string Description => Inner.Description;
        public override async Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken)
        {
            if (!key.EndsWith("database.dump", StringComparison.Ordinal)) return await Inner.PutAsync(key, content, cancellationToken);
            Hanging.TrySetResult();
            await Release.Task;
            throw new IOException("released by the test");
        }
        public override Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken) => Inner.OpenReadAsync(key, cancellationToken);
        public override IAsyncEnumerable<StoreItem> ListAsync(string prefix, CancellationToken cancellationToken) => Inner.ListAsync(prefix, cancellationToken);
        public override Task DeleteAsync(string key, CancellationToken cancellationToken) => Inner.DeleteAsync(key, cancellationToken);
        public override Task CheckAccessAsync(CancellationToken cancellationToken) => Inner.CheckAccessAsync(cancellationToken);
    }

    /// <summary>Every log line, formatted, with its event id.</summary>
    internal sealed class RecordingLoggerProvider : Microsoft.Extensions.Logging.ILoggerProvider
    {
        private readonly List<(int Id, Microsoft.Extensions.Logging.LogLevel Level, string Message)> _lines = [];
        public IReadOnlyList<(int Id, Microsoft.Extensions.Logging.LogLevel Level, string Message)> Lines { get { lock (_lines) return _lines.ToList(); } }
        public Microsoft.Extensions.Logging.ILogger CreateLogger(string categoryName) => new Logger(this);
        public void Dispose() { }

        private sealed class Logger(RecordingLoggerProvider owner) : Microsoft.Extensions.Logging.ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;
            public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner._lines) owner._lines.Add((eventId.Id, logLevel, formatter(state, exception)));
            }
        }
    }

    [TestMethod]
    public async Task AHungBackup_IsReportedAtTheNextFire_WithItsPhaseAndAge_AndInTheMetrics()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Schedule.Cron = "0/2 * * * * ?";
        node.Options.Schedule.CatchUpOnStart = false;
        node.Options.Schedule.DrillCron = null;
        var store = new HangingStore(node.CreateStore());
        var logs = new RecordingLoggerProvider();
        var metrics = new RegistryDR.Monitoring.OperationMetrics(TimeProvider.System);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.AddProvider(logs);
        builder.Services.AddSingleton<RegistryDR.Monitoring.IOperationEvents>(metrics);
        builder.Services.AddRegistryDrWorker(node.Options, store);
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            await store.Hanging.Task.WaitAsync(TimeSpan.FromSeconds(60));
            var backupId = host.Services.GetRequiredService<BackupService>().Running!.BackupId;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!logs.Lines.Any(l => l.Id == 8000))
            {
                if (DateTime.UtcNow > deadline) Assert.Fail("no fire reported the hung run:\n" + string.Join("\n", logs.Lines.Select(l => l.Message)));
                await Task.Delay(100);
            }
            var report = logs.Lines.First(l => l.Id == 8000);
            Assert.AreEqual(Microsoft.Extensions.Logging.LogLevel.Warning, report.Level);
            StringAssert.StartsWith(report.Message, $"A scheduled backup is due but backup {backupId} is still running: ");
            StringAssert.Contains(report.Message, "minutes, now in phase 'dump database' (started ");
            var text = RegistryDR.Monitoring.PrometheusExposition.Render(metrics.Read(), DateTimeOffset.UtcNow, "test");
            var samples = RegistryDR.Tests.Monitoring.MonitoringTestSupport.Samples(text);
            Assert.IsGreaterThanOrEqualTo(1, samples["registrydr_backup_overruns_total"]);
            Assert.IsGreaterThan(0, samples["registrydr_backup_running_seconds"]);
        }
        finally
        {
            store.Release.TrySetResult();
            await host.StopAsync();
        }
        var text2 = RegistryDR.Monitoring.PrometheusExposition.Render(metrics.Read(), DateTimeOffset.UtcNow, "test");
        Assert.AreEqual(0, RegistryDR.Tests.Monitoring.MonitoringTestSupport.Samples(text2)["registrydr_backup_running_seconds"], "the released run ended");
    }

    /// <summary>Counts backups that succeeded and failed, and lets a test wait for a number of either.</summary>
    private sealed class RecordingEvents : RegistryDR.Monitoring.IOperationEvents
    {
        private int _succeeded, _failed;
        private readonly object _gate = new();
        private readonly List<(Func<bool> Done, TaskCompletionSource Signal)> _waiters = [];

        public int Succeeded => Volatile.Read(ref _succeeded);
        public int Failed => Volatile.Read(ref _failed);

        /// <summary>Completes once <paramref name="done"/> holds; bounded by the caller's WaitAsync.</summary>
        public Task When(Func<RecordingEvents, bool> done)
        {
            var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_gate)
            {
                if (done(this)) return Task.CompletedTask;
                _waiters.Add((() => done(this), signal));
            }
            return signal.Task;
        }

        private void Changed()
        {
            lock (_gate)
                foreach (var waiter in _waiters.Where(w => w.Done()).ToList())
                {
                    waiter.Signal.TrySetResult();
                    _waiters.Remove(waiter);
                }
        }

        public void BackupSucceeded(BackupManifest manifest, TimeSpan duration) { Interlocked.Increment(ref _succeeded); Changed(); }
        public void BackupFailed(string backupId, RegistryDR.Monitoring.BackupFailureReason reason, TimeSpan duration) { Interlocked.Increment(ref _failed); Changed(); }
        public void BackupStarted(string backupId) { }
        public void RestoreStarted(string backupId) { }
        public void RestoreFinished(string backupId, bool succeeded, TimeSpan duration) { }
        public void ScheduleMissed() { }
        public void StoreRetry(string operation) { }
    }

    private static IHost BuildHost(TestNode node, IBackupStore store, RecordingEvents events)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddSingleton<RegistryDR.Monitoring.IOperationEvents>(events); // before the worker's TryAdd
        builder.Services.AddRegistryDrWorker(node.Options, store);
        return builder.Build();
    }

    /// <summary>Signals each time the backup job has returned from Execute (its prune included).</summary>
    private sealed class JobsDone : Quartz.IJobListener
    {
        private readonly SemaphoreSlim _done = new(0);
        public string Name => "test-jobs-done";
        public ValueTask JobToBeExecuted(Quartz.IJobExecutionContext context, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
        public ValueTask JobExecutionVetoed(Quartz.IJobExecutionContext context, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
        public ValueTask JobProgressChanged(Quartz.IJobExecutionContext context, Quartz.Extensibility.FireInstanceProgress progress, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
        public ValueTask JobWasExecuted(Quartz.IJobExecutionContext context, Quartz.JobExecutionException? jobException, CancellationToken cancellationToken = default)
        {
            _done.Release();
            return ValueTask.CompletedTask;
        }

        /// <summary>Fires the backup job once and waits (bounded) until it has returned.</summary>
        public static async Task RunOnceAsync(IHost host, JobsDone done)
        {
            var scheduler = await host.Services.GetRequiredService<Quartz.ISchedulerFactory>().GetScheduler();
            await scheduler.TriggerJob(BackupJob.Key, new Quartz.JobDataMap());
            Assert.IsTrue(await done._done.WaitAsync(TimeSpan.FromMinutes(3)), "the backup job did not return within 3 minutes");
        }

        public static async Task<JobsDone> AttachAsync(IHost host)
        {
            var done = new JobsDone();
            var scheduler = await host.Services.GetRequiredService<Quartz.ISchedulerFactory>().GetScheduler();
            scheduler.ListenerManager.AddJobListener(done, [Quartz.Matchers.Key(BackupJob.Key)]);
            return done;
        }
    }

    [TestMethod]
    public async Task PrunesAfterEachSuccessfulBackup_NeverAfterAFailedOne()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        // The test fires every backup itself and waits for the job to return, prune included.
        node.Options.Schedule.Cron = "0 0 0 1 1 ? *";
        node.Options.Schedule.CatchUpOnStart = false;
        // Only KeepLast decides (the daily and weekly rules are off), so any prune of three sets deletes two.
        node.Options.Retention.KeepLast = 1;
        node.Options.Retention.KeepDailyDays = 0;
        node.Options.Retention.KeepWeeklyWeeks = 0;
        node.Options.Retention.IncompleteGrace = TimeSpan.FromHours(1);
        var store = node.CreateStore();

        // 1. Backups succeed: each is followed by a prune, so of three sets one is left.
        var events = new RecordingEvents();
        using (var host = BuildHost(node, store, events))
        {
            await host.StartAsync();
            var done = await JobsDone.AttachAsync(host);
            for (var i = 0; i < 3; i++) await JobsDone.RunOnceAsync(host, done);
            await host.StopAsync();
        }
        Assert.AreEqual(3, events.Succeeded);
        var sets = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.AreEqual(1, sets.Count(s => s.IsComplete), "older sets were pruned after the later backups succeeded: "
            + string.Join(", ", sets.Select(s => $"{s.BackupId} {s.State}")));
        var survivor = sets.First(s => s.IsComplete);

        // 2. Two more complete sets, older than the survivor: more sets than KeepLast, so a prune
        //    now WOULD delete two. This rules out "prune after every backup, failed or not".
        var older = new[]
        {
            await RegistryDR.Tests.Retention.RetentionTestSupport.WriteSetAsync(store, survivor.Time.AddSeconds(-30)),
            await RegistryDR.Tests.Retention.RetentionTestSupport.WriteSetAsync(store, survivor.Time.AddSeconds(-40)),
        };
        var before = (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Where(s => s.IsComplete).Select(s => s.BackupId).ToList();
        CollectionAssert.AreEqual(new[] { survivor.BackupId, older[0], older[1] }, before);

        // 3. Now every backup fails (nothing listens on the port): nothing may be pruned.
        node.Options.Database.Port = RegistryDR.Tests.Backup.BackupFailureTests.FreePort();
        events = new RecordingEvents();
        using (var host = BuildHost(node, store, events))
        {
            await host.StartAsync();
            var done = await JobsDone.AttachAsync(host);
            for (var i = 0; i < 2; i++) await JobsDone.RunOnceAsync(host, done);
            await host.StopAsync();
        }
        Assert.AreEqual(2, events.Failed);
        Assert.AreEqual(0, events.Succeeded);
        var after = (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Where(s => s.IsComplete).Select(s => s.BackupId).ToList();
        CollectionAssert.AreEqual(before, after, "a prune ran after a failed backup");
    }
}
