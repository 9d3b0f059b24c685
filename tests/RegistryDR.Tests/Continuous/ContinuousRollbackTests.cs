using System.Diagnostics;
using RegistryDR.Continuous;
using RegistryDR.Progress;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Continuous;

/// <summary>
/// A point-in-time restore is as safe as a logical one: it swaps the data directory and the config
/// directories with the same <c>DirectorySwap</c>, records each phase in the restore journal first,
/// and so a restore that fails after either swap, or is killed (SIGKILL) at any phase, ends with
/// the node whole: its own data and files, or (killed after the registry answered healthy) the
/// restored ones, never a mix. Judged by the exact oracles (<see cref="DatabaseSnapshot"/>,
/// <see cref="DirectorySnapshot"/>). The backup differs from the live node in rows and in config
/// files, so any mix shows. File store, real PostgreSQL 15 clusters.
/// </summary>
[TestClass]
public sealed class ContinuousRollbackTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(5);

    private sealed record NodeImage(DatabaseSnapshot Database, DirectorySnapshot Config);

    private sealed record Fixture(ContinuousSite Site, ContinuousNode Node, NodeImage Restored, NodeImage Own, DateTimeOffset Moment) : IAsyncDisposable
    {
        public string ConfigDirectory => Node.Options.Config.Directories[0];
        public ValueTask DisposeAsync() => Site.DisposeAsync();
    }

    private static async Task<NodeImage> ImageAsync(ContinuousNode node) =>
        new(await DatabaseSnapshot.CaptureAsync(node.ConnectionString()), DirectorySnapshot.Take(node.Options.Config.Directories[0]));

    private static async Task<string?> DifferenceAsync(ContinuousNode node, NodeImage expected)
    {
        var actual = await ImageAsync(node);
        if (expected.Database.FirstDifference(actual.Database) is { } db) return "database: " + db;
        if (expected.Config.FirstDifference(actual.Config) is { } dir) return "config: " + dir;
        return null;
    }

    /// <summary>
    /// A node with a base backup and archived WAL; a recorded moment after some pushes (what a
    /// restore to it brings back: those rows and the base set's config); then the node changes in
    /// rows (more pushes, seeded rows deleted) and in config files, and that is archived too.
    /// </summary>
    private static async Task<Fixture> CreateAsync()
    {
        var site = await ContinuousSite.CreateAsync(s3: false);
        try
        {
            var node = await site.StartNodeAsync("a");
            var store = site.CreateStore();
            await new BaseBackupService(node.Options, store, TestNode.Logger<BaseBackupService>(), TimeProvider.System).RunAsync();
            await InsertAsync(node, 1, 10);
            var restored = await ImageAsync(node);
            var moment = new DateTimeOffset(await node.ScalarAsync<DateTime>("SELECT clock_timestamp()"), TimeSpan.Zero);

            await InsertAsync(node, 11, 20);
            await node.ExecuteAsync("DELETE FROM tags WHERE id IN (SELECT id FROM tags ORDER BY id LIMIT 3)");
            var etc = node.Options.Config.Directories[0];
            File.WriteAllText(Path.Combine(etc, "config.yml"), "version: 0.1\nnode: a, changed after the backup\n");
            File.WriteAllText(Path.Combine(etc, "added-after-backup.yml"), "x: 1\n");
            await node.SwitchAndWaitArchivedAsync();
            var own = await ImageAsync(node);
            Assert.IsNotNull(restored.Database.FirstDifference(own.Database), "the node's own rows differ from the restored ones");
            Assert.IsNotNull(restored.Config.FirstDifference(own.Config), "the node's own config differs from the base set's");
            return new Fixture(site, node, restored, own, moment);
        }
        catch
        {
            await site.DisposeAsync();
            throw;
        }
    }

    private static async Task InsertAsync(ContinuousNode node, int from, int to)
    {
        for (var i = from; i <= to; i++)
            await node.ExecuteAsync($"INSERT INTO pushes (id, node, payload) VALUES ({i}, 'a', '{PushLoad.Payload(i)}')");
    }

    private static string Moment(DateTimeOffset moment) => moment.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Everything a point-in-time restore may leave: staging and previous directories beside the data directory and the config directory, the journal.</summary>
    private static IReadOnlyList<string> Leftovers(Fixture fx)
    {
        var found = new List<string>();
        foreach (var dir in new[] { fx.Node.Options.Continuous.DataDirectory!, fx.ConfigDirectory })
            found.AddRange(Directory.GetDirectories(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(dir))!)
                .Select(Path.GetFileName).Where(n => n!.Contains(".registry-dr-", StringComparison.Ordinal))!);
        if (File.Exists(RestoreJournal.PathFor(fx.Node.Options))) found.Add("restore-journal.json");
        return found;
    }

    /// <summary>Calls <paramref name="onPhase"/> at each phase the restore reports (to break it there).</summary>
    private sealed class PhaseHook(Action<string> onPhase) : IOperationProgress
    {
        public void Phase(string phase) => onPhase(phase);
        public void Transferred(string artifact, long bytes) { }
    }

    private static Task<RestoreFailedException> FailingRestoreAsync(Fixture fx, IOperationProgress hook) =>
        Assert.ThrowsExactlyAsync<RestoreFailedException>(() =>
            new ContinuousRestoreService(fx.Node.Options, fx.Node.CreateStore(), TestNode.Logger<ContinuousRestoreService>(), TimeProvider.System)
                .RestoreAsync(new PointInTimeRequest(new RecoveryTarget(fx.Moment)), hook));

    private static async Task AssertOwnAndNothingLeftAsync(Fixture fx)
    {
        Assert.IsNull(await DifferenceAsync(fx.Node, fx.Own));
        CollectionAssert.AreEqual(Array.Empty<string>(), Leftovers(fx).ToArray());
    }

    [TestMethod]
    public async Task FailingAfterTheDataDirectorySwap_PutsBackTheNodesOwnDataAndFiles()
    {
        await using var fx = await CreateAsync();
        // Just before the swap, the extracted config tree goes away: the data directory is swapped
        // in, then the config directory's swap fails.
        var hook = new PhaseHook(phase =>
        {
            if (phase != "swap") return;
            var parent = Path.GetDirectoryName(fx.ConfigDirectory)!;
            var staged = Directory.GetDirectories(parent, $".{Path.GetFileName(fx.ConfigDirectory)}.registry-dr-restore-*").Single();
            // The extracted tree is "tree" inside the private staging directory; before the shared
            // DirectorySwap it was the staging directory itself (kept so the test ran on that code too).
            var tree = Path.Combine(staged, "tree");
            Directory.Delete(Directory.Exists(tree) ? tree : staged, recursive: true);
        });
        var failure = await FailingRestoreAsync(fx, hook);

        StringAssert.Contains(failure.NodeState, $"the data directory {fx.Node.Options.Continuous.DataDirectory} was put back as it was; PostgreSQL was started again on its previous data");
        await AssertOwnAndNothingLeftAsync(fx);
    }

    [TestMethod]
    public async Task FailingAfterTheConfigDirectorySwap_PutsBackTheNodesOwnDataAndFiles()
    {
        await using var fx = await CreateAsync();
        var hook = new PhaseHook(phase =>
        {
            if (phase == "start") throw new IOException("injected: the start failed");
        });
        var failure = await FailingRestoreAsync(fx, hook);

        StringAssert.Contains(failure.NodeState, $"{fx.ConfigDirectory} was put back as it was; the data directory {fx.Node.Options.Continuous.DataDirectory} was put back as it was; PostgreSQL was started again on its previous data");
        await AssertOwnAndNothingLeftAsync(fx);
    }

    /// <summary>
    /// The rollback itself cannot finish: the restore fails after both swaps, and PostgreSQL's start
    /// command fails once, so the rollback leaves the node's own directories in place but its
    /// server stopped. The journal is kept; the next start (<see cref="InterruptedRestore.TidyAsync"/>)
    /// starts PostgreSQL on the node's own data.
    /// </summary>
    [TestMethod]
    public async Task ARollbackThatCannotStartPostgreSQL_KeepsTheJournal_AndTheNextStartFinishesIt()
    {
        await using var fx = await CreateAsync();
        var refuse = Path.Combine(fx.Node.Root, "refuse-start");
        var wrapper = Path.Combine(fx.Node.Root, "start-unless-refused.sh");
        File.WriteAllText(wrapper, $"#!/bin/bash\nif [ -e '{refuse}' ]; then echo 'start refused (test)' >&2; exit 1; fi\nexec \"$@\"\n");
        fx.Node.Options.Continuous.ServerStartCommand = ["bash", wrapper, .. fx.Node.Options.Continuous.ServerStartCommand];
        var hook = new PhaseHook(phase =>
        {
            if (phase != "start") return;
            File.WriteAllText(refuse, "");
            throw new IOException("injected: the start failed");
        });
        var failure = await FailingRestoreAsync(fx, hook);
        StringAssert.Contains(failure.NodeState, "PostgreSQL is STOPPED and could not be started again");
        Assert.IsTrue(File.Exists(RestoreJournal.PathFor(fx.Node.Options)), "the journal is kept for the next run");

        File.Delete(refuse);
        var tidied = await InterruptedRestore.TidyAsync(fx.Node.Options, TestNode.Logger<InterruptedRestore>(), TimeProvider.System, CancellationToken.None);
        Assert.IsNotNull(tidied.Recovered, "the next start finds the unfinished rollback");
        Assert.IsTrue(tidied.Recovered.Complete, tidied.Recovered.Description);
        StringAssert.Contains(tidied.Recovered.Description, "PostgreSQL was started again on its previous data");
        await AssertOwnAndNothingLeftAsync(fx);
    }

    /// <summary>
    /// The real executable, paused at each phase through the test-only REGISTRYDR_TEST_PAUSE_AT
    /// hook and killed there with SIGKILL; what the worker and <c>status</c> run at start
    /// (<see cref="InterruptedRestore.TidyAsync"/>) then makes the node whole again. One node for
    /// every phase (each kill is recovered before the next restore), the restored-wins case last.
    /// Killed while replaying, the restore leaves its rehearsal postmaster running (pg_ctl started
    /// it detached): recovery stops it before removing its directory.
    /// </summary>
    [TestMethod]
    public async Task RestoreKilledAtEachPhase_IsRolledBackOrFinished_NeverAMix()
    {
        await using var fx = await CreateAsync();
        var points = new (string Point, string Phase, bool RestoredWins)[]
        {
            ("download", "download", false),
            ("extract", "extract config", false),
            ("replay", "restore database", false),
            ("scratch-load", "restore database", false),
            ("after-db-swap", "swap database", false),
            ("after-dir-swap", "swap directories", false),
            ("after-start", "start registry", false),
            ("before-cleanup", "healthy", true),
        };
        var seen = new List<string>();
        foreach (var (point, phase, restoredWins) in points)
        {
            await KillRestoreAtAsync(fx, point);
            Assert.IsNotEmpty(Leftovers(fx), $"{point}: the killed restore left something to recover");
            Assert.AreEqual(phase, RestoreJournal.Peek(fx.Node.Options)?.Phase, $"{point}: the journal's phase");

            var staged = RestoreJournal.Peek(fx.Node.Options)!.DataDirectory!.StagingTree;
            var tidied = await InterruptedRestore.TidyAsync(fx.Node.Options, TestNode.Logger<InterruptedRestore>(), TimeProvider.System, CancellationToken.None);
            Assert.IsNotNull(tidied.Recovered, $"{point}: the interrupted restore was found");
            Assert.IsTrue(tidied.Recovered.Complete, $"{point}: {tidied.Recovered.Description}");
            seen.Add($"{point}: {(await DifferenceAsync(fx.Node, restoredWins ? fx.Restored : fx.Own) ?? "whole")}; leftovers [{string.Join(", ", Leftovers(fx))}]; " +
                     $"servers on the staged directory {ServersOn(staged)}");
        }
        CollectionAssert.AreEqual(points.Select(p => $"{p.Point}: whole; leftovers []; servers on the staged directory 0").ToArray(), seen.ToArray());
    }

    /// <summary>Processes whose command line names <paramref name="dataDirectory"/> (a postmaster started with -D on it).</summary>
    private static int ServersOn(string dataDirectory)
    {
        var count = 0;
        foreach (var proc in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out _)) continue;
            try
            {
                if (File.ReadAllText(Path.Combine(proc, "cmdline")).Replace('\0', ' ').Contains(dataDirectory, StringComparison.Ordinal)) count++;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return count;
    }

    private static Task KillRestoreAtAsync(Fixture fx, string point)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { ContinuousNode.RegistryDrDll, "restore", "--to", Moment(fx.Moment), "--config", fx.Node.ConfigPath }) psi.ArgumentList.Add(a);
        foreach (var (k, v) in fx.Site.StoreEnvironment) psi.Environment[k] = v;
        return PausePoint.KillAtAsync(psi, point, Path.Combine(fx.Node.Root, "paused-" + point), Bound);
    }
}
