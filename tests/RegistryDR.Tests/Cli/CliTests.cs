using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Cli;

/// <summary>The real <c>registry-dr</c> executable, run as an operator would, configured by a file and the environment only.</summary>
[TestClass]
public sealed class CliTests
{
    internal sealed record Run(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
    }

    /// <summary>Runs the executable; an environment value of null removes the variable.</summary>
    internal static async Task<Run> RunCliAsync(IReadOnlyDictionary<string, string?>? env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string?>())
        {
            if (v is null) psi.Environment.Remove(k);
            else psi.Environment[k] = v;
        }
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        return new Run(p.ExitCode, await stdout, await stderr);
    }

    /// <summary>The node's configuration as a file (mode 0600), with its store initialised unless told otherwise.</summary>
    internal static async Task<string> WriteConfigAsync(TestNode node, bool initialiseStore = true, Action<Dictionary<string, object?>>? edit = null)
    {
        var path = Path.Combine(node.Root, "registry-dr.json");
        var o = node.Options;
        var config = new Dictionary<string, object?>
        {
            ["Database"] = new { o.Database.Host, o.Database.Port, o.Database.Name, o.Database.User, o.Database.PasswordFile, o.Database.BinDirectory },
            ["Config"] = new { Directories = o.Config.Directories, Exclude = o.Config.Exclude },
            ["Store"] = new { o.Store.Url },
            ["Restore"] = new { o.Restore.StagingDirectory },
            ["Agent"] = new { o.Agent.StateFile },
        };
        edit?.Invoke(config);
        File.WriteAllText(path, JsonSerializer.Serialize(config));
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        if (initialiseStore) await node.InitializeStoreAsync();
        return path;
    }

    private static Dictionary<string, string?> Env(params (string Key, string? Value)[] values) => values.ToDictionary(v => v.Key, v => v.Value);

    [TestMethod]
    public void TheExecutable_RunsWithDynamicPgoOff()
    {
        // Measured in docs/performance.md ("Memory"): the instrumented tier cost about 12 % of a
        // backup's CPU. The setting lives in the runtimeconfig the build writes beside the dll.
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "registry-dr.runtimeconfig.json")));
        var properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.IsTrue(properties.TryGetProperty("System.Runtime.TieredPGO", out var pgo), "registry-dr.runtimeconfig.json has no System.Runtime.TieredPGO");
        Assert.AreEqual(JsonValueKind.False, pgo.ValueKind);
    }

    [TestMethod]
    public async Task BackupListVerifyRestore_ThroughTheExecutable()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDirScope.Path);
        var config = await WriteConfigAsync(node);
        var expected = await RegistrySchema.SnapshotAsync(node.ConnectionString);

        var backup = await RunCliAsync(null, "backup", "--config", config, "--json");
        Assert.AreEqual(0, backup.ExitCode, backup.ToString());
        var id = JsonDocument.Parse(backup.Stdout).RootElement.GetProperty("backupId").GetString()!;

        var list = await RunCliAsync(null, "list", "--config", config, "--json");
        Assert.AreEqual(0, list.ExitCode, list.ToString());
        var sets = JsonDocument.Parse(list.Stdout).RootElement;
        Assert.AreEqual(1, sets.GetArrayLength());
        Assert.AreEqual(id, sets[0].GetProperty("backupId").GetString());
        Assert.AreEqual("Complete", sets[0].GetProperty("state").GetString());
        Assert.IsFalse(sets[0].GetProperty("verified").GetBoolean());

        var verify = await RunCliAsync(null, "verify", id, "--config", config);
        Assert.AreEqual(0, verify.ExitCode, verify.ToString());
        StringAssert.Contains(verify.Stdout, $"Backup {id} is valid");
        StringAssert.Contains(verify.Stdout, $"Recorded as verified (backups/{id}/verified.json)");

        var table = await RunCliAsync(null, "list", "--config", config);
        var row = table.Stdout.Split('\n').Single(l => l.StartsWith(id, StringComparison.Ordinal));
        StringAssert.EndsWith(row, "complete   yes");
        Assert.IsTrue(JsonDocument.Parse((await RunCliAsync(null, "list", "--config", config, "--json")).Stdout).RootElement[0].GetProperty("verified").GetBoolean());

        // The live database exists and no Registry:StopCommand stops the registry: its sessions would be cut.
        var refused = await RunCliAsync(null, "restore", "--dry-run", "--config", config);
        Assert.AreEqual(1, refused.ExitCode, refused.ToString());
        StringAssert.Contains(refused.Stdout, $"FAIL  sessions: no Registry:StopCommand is configured, so the registry is not stopped before the swap, and the swap terminates every session on database '{node.Database}'");
        StringAssert.Contains(refused.Stderr, $"error: The restore of backup {id} would not start:");

        var dry = await RunCliAsync(null, "restore", "--dry-run", "--terminate-sessions", "--config", config);
        Assert.AreEqual(0, dry.ExitCode, dry.ToString());
        StringAssert.Contains(dry.Stdout, "dry run: nothing was changed");
        StringAssert.Contains(dry.Stdout, $"ok    database server: connected to {node.Cluster.Host}:{node.Cluster.Port} as postgres");
        StringAssert.Contains(dry.Stdout, "ok    privileges: postgres is a superuser");
        StringAssert.Contains(dry.Stdout, "ok    pg_restore: pg_restore 15.");

        await node.WipeAsync();
        var restore = await RunCliAsync(null, "restore", "latest", "--config", config);
        Assert.AreEqual(0, restore.ExitCode, restore.ToString());
        Assert.IsNull(expected.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)));

        // --backup still works (hidden): scripts written before the id was positional keep running.
        var again = await RunCliAsync(null, "restore", "--backup", id, "--terminate-sessions", "--config", config);
        Assert.AreEqual(0, again.ExitCode, again.ToString());
        StringAssert.Contains(again.Stdout, $"Restored backup {id}");

        // Logs are one line per event on stderr and never carry the password.
        Assert.DoesNotContain(node.Cluster.SuperUserPassword, backup.Stderr + restore.Stderr + backup.Stdout + restore.Stdout);
        StringAssert.Contains(backup.Stderr, $"Backup {id} complete");
    }

    [TestMethod]
    public async Task RestoreByHand_OverAStoreAnotherRegionWroteLast_TakesOverWithANewEpoch()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDirScope.Path, repositories: 5);
        var config = await WriteConfigAsync(node, edit: c => c["Agent"] = new { node.Options.Agent.StateFile, Region = "us-east-1", InstanceId = "i-r1b" });
        var backup = await RunCliAsync(null, "backup", "--config", config, "--json");
        Assert.AreEqual(0, backup.ExitCode, backup.ToString());
        var id = JsonDocument.Parse(backup.Stdout).RootElement.GetProperty("backupId").GetString()!;
        // Region 2 took the store over (its records copied back for a failback).
        var ledger = new RegistryDR.Fencing.GenerationLedger(node.CreateStore(), TimeProvider.System);
        Assert.AreEqual(1_000_001, (await ledger.TakeAndRecordAsync(Path.Combine(node.Root, "region2-state.json"), "takeover", "i-r2", id, CancellationToken.None, "us-west-2", takeOver: true)).Number);

        var restore = await RunCliAsync(null, "restore", "latest", "--terminate-sessions", "--config", config);

        Assert.AreEqual(0, restore.ExitCode, restore.ToString());
        var taken = await ledger.CurrentAsync(CancellationToken.None);
        Assert.AreEqual((2_000_001L, "takeover from region us-west-2 (restore)", "us-east-1", "i-r1b", id),
            (taken!.Number, taken.Reason, taken.Region, taken.InstanceId, taken.RestoredFrom));
    }

    [TestMethod]
    public async Task OneSet_IsDescribedWithTheSameTimeAndSize_Everywhere()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDirScope.Path);
        var config = await WriteConfigAsync(node);
        var backup = await RunCliAsync(null, "backup", "--config", config);
        Assert.AreEqual(0, backup.ExitCode, backup.ToString());
        var set = (await new BackupCatalog(node.CreateStore()).ListAsync(CancellationToken.None)).Single();
        var time = SetFormat.Time(set.Time);
        var size = SetFormat.Bytes(set.Size);
        StringAssert.Contains(backup.Stdout, $"Backup {set.BackupId} complete in file://{storeDirScope.Path}: recovery point {time}, ");

        var list = await RunCliAsync(null, "list", "--config", config);
        StringAssert.Contains(list.Stdout, $"{set.BackupId,-26} {time,-23} {size,10}  complete   -");

        var status = await RunCliAsync(null, "status", "--config", config);
        StringAssert.Contains(status.Stdout, $"Recovery point:  {time} (a restore now returns the registry to this moment)");

        // The size in list counts every object of the set; the plan counts the manifest's artifacts.
        var manifest = await new BackupCatalog(node.CreateStore()).ReadManifestAsync(set.BackupId, CancellationToken.None);
        var plan = await RunCliAsync(null, "restore", set.BackupId, "--dry-run", "--terminate-sessions", "--config", config);
        Assert.AreEqual(0, plan.ExitCode, plan.ToString());
        StringAssert.Contains(plan.Stdout, $"  Recovery point {time}, {SetFormat.Bytes(manifest.TotalSize)}");
        StringAssert.Contains(plan.Stdout, $"Download backup {set.BackupId} (recovery point {time}, {SetFormat.Bytes(manifest.TotalSize)}, from ");
        StringAssert.Contains(backup.Stdout, $"recovery point {time}, {SetFormat.Bytes(manifest.TotalSize)}");
    }

    [TestMethod]
    public async Task EnvironmentVariables_OverrideTheFile()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file:///nonexistent-store-from-file");
        var config = await WriteConfigAsync(node, initialiseStore: false);
        var env = Env(("REGISTRYDR__Store__Url", "file://" + storeDir));
        var init = await RunCliAsync(env, "init-store", "--config", config);
        Assert.AreEqual(0, init.ExitCode, init.ToString());
        var list = await RunCliAsync(env, "list", "--config", config);
        Assert.AreEqual(0, list.ExitCode, list.ToString());
        StringAssert.Contains(list.Stdout, "No backups in file://" + storeDir);
    }

    [TestMethod]
    public async Task InvalidConfiguration_ExitsTwo_NamingTheVariable()
    {
        var run = await RunCliAsync(Env(("REGISTRYDR__Schedule__Cron", "often"), ("REGISTRYDR__Store__Url", "file:///tmp/x"), ("REGISTRYDR__Database__PaswordFile", "/x")), "list");
        Assert.AreEqual(2, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Stderr, "REGISTRYDR__Schedule__Cron 'often' is not a valid Quartz cron expression");
        StringAssert.Contains(run.Stderr, "REGISTRYDR__Database__PaswordFile is not a setting; did you mean REGISTRYDR__Database__PasswordFile?");
    }

    [TestMethod]
    public async Task NoConfiguration_AtTheDefaultPath_IsRefused_SayingHowToCreateIt()
    {
        if (File.Exists("/etc/registry-dr/registry-dr.json")) Assert.Inconclusive("this machine has /etc/registry-dr/registry-dr.json");
        foreach (var command in new[] { "list", "status", "backup", "init-store" })
        {
            var run = await RunCliAsync(null, command);
            Assert.AreEqual(2, run.ExitCode, run.ToString());
            StringAssert.StartsWith(run.Stderr, "error: No configuration: /etc/registry-dr/registry-dr.json does not exist, and no REGISTRYDR__Section__Key environment variable is set.");
            StringAssert.Contains(run.Stderr, "chmod 600 /etc/registry-dr/registry-dr.json");
        }
        Assert.AreEqual(0, (await RunCliAsync(null, "--help")).ExitCode);
        Assert.AreEqual(0, (await RunCliAsync(null, "--version")).ExitCode);
    }

    [TestMethod]
    public async Task NoBackup_ExitsThree()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var env = Env(("REGISTRYDR__Store__Url", "file://" + storeDirScope.Path));
        Assert.AreEqual(0, (await RunCliAsync(env, "init-store")).ExitCode);
        var run = await RunCliAsync(env, "verify", "latest");
        Assert.AreEqual(3, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Stderr, "There are no backups");
    }

    [TestMethod]
    public async Task InvalidCommandLines_ExitTwo_AndSayWhatIsWrong()
    {
        var typo = await RunCliAsync(null, "lisst");
        Assert.AreEqual(2, typo.ExitCode, typo.ToString());
        Assert.AreEqual("error: Unrecognized command or argument 'lisst'.\nDid you mean 'list'?\n'registry-dr --help' lists the commands and options.\n", typo.Stderr);

        var option = await RunCliAsync(null, "status", "--bogus");
        Assert.AreEqual(2, option.ExitCode, option.ToString());
        StringAssert.Contains(option.Stderr, "Unrecognized command or argument '--bogus'.");
        StringAssert.Contains(option.Stderr, "'registry-dr status --help' lists the commands and options.");

        var twice = await RunCliAsync(null, "restore", "a", "--backup", "b");
        Assert.AreEqual(2, twice.ExitCode, twice.ToString());
        StringAssert.Contains(twice.Stderr, "The backup is given twice, as 'a' and with --backup 'b': give it once.");

        Assert.AreEqual(2, (await RunCliAsync(null)).ExitCode, "no command at all");

        var json = await RunCliAsync(null, "list", "--json", "--bogus");
        Assert.AreEqual(2, json.ExitCode, json.ToString());
        var error = JsonDocument.Parse(json.Stdout).RootElement.GetProperty("error");
        Assert.AreEqual(2, error.GetProperty("code").GetInt32());
        StringAssert.Contains(error.GetProperty("message").GetString(), "Unrecognized command or argument '--bogus'.");
    }

    [TestMethod]
    public async Task Errors_WithJson_AreJsonOnStdout()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var env = Env(("REGISTRYDR__Store__Url", "file://" + storeDirScope.Path));
        foreach (var (args, code, text) in new[]
        {
            (new[] { "list", "--json" }, 1, "has no registry-dr-store.json"),
            (new[] { "status", "--json", "--config", "/nonexistent/registry-dr.json" }, 2, "Configuration file '/nonexistent/registry-dr.json' does not exist"),
        })
        {
            var run = await RunCliAsync(env, args);
            Assert.AreEqual(code, run.ExitCode, run.ToString());
            var error = JsonDocument.Parse(run.Stdout).RootElement.GetProperty("error");
            Assert.AreEqual(code, error.GetProperty("code").GetInt32());
            StringAssert.Contains(error.GetProperty("message").GetString(), text);
        }
        Assert.AreEqual(0, (await RunCliAsync(env, "init-store")).ExitCode);
        var none = await RunCliAsync(env, "verify", "--json");
        Assert.AreEqual(3, none.ExitCode, none.ToString());
        Assert.AreEqual($"There are no backups in file://{storeDirScope.Path}.", JsonDocument.Parse(none.Stdout).RootElement.GetProperty("error").GetProperty("message").GetString());
    }

    [TestMethod]
    public async Task AStoreWithoutItsMarker_IsRefused_SayingWhatToCheck_AndNothingIsWritten()
    {
        using var root = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + root.Path + "/unused");
        var config = await WriteConfigAsync(node, initialiseStore: false);

        // An existing empty directory: what an unmounted NFS mount point looks like.
        var empty = Directory.CreateDirectory(Path.Combine(root.Path, "mnt")).FullName;
        var env = Env(("REGISTRYDR__Store__Url", "file://" + empty));
        var list = await RunCliAsync(env, "list", "--config", config);
        Assert.AreEqual(1, list.ExitCode, list.ToString());
        Assert.AreEqual($"error: Store:Url file://{empty} has no registry-dr-store.json: it was never initialised, or it is not the store you meant. " +
            $"Is the file system mounted? (an unmounted NFS mount point is an empty local directory: `findmnt {empty}`) If this is a new store, run `registry-dr init-store` once.\n", list.Stderr);
        var backup = await RunCliAsync(env, "backup", "--config", config);
        Assert.AreEqual(1, backup.ExitCode, backup.ToString());
        StringAssert.Contains(backup.Stderr, "has no registry-dr-store.json");
        Assert.IsEmpty(Directory.GetFileSystemEntries(empty), "nothing may be written to a store without its marker");

        // A directory that does not exist is not created.
        var missing = Path.Combine(root.Path, "nfs", "backups");
        env = Env(("REGISTRYDR__Store__Url", "file://" + missing));
        foreach (var command in new[] { "list", "backup" })
        {
            var run = await RunCliAsync(env, command, "--config", config);
            Assert.AreEqual(1, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Stderr, $"Store:Url file://{missing}: the directory {missing} does not exist. If it is a mount point, mount it");
        }
        Assert.IsFalse(Directory.Exists(Path.Combine(root.Path, "nfs")));

        // A file where the directory should be.
        var file = Path.Combine(root.Path, "a-file");
        File.WriteAllText(file, "x");
        var notDir = await RunCliAsync(Env(("REGISTRYDR__Store__Url", "file://" + file)), "status", "--config", config);
        Assert.AreEqual(6, notDir.ExitCode, notDir.ToString());
        StringAssert.Contains(notDir.Stdout, $"UNREACHABLE: Store:Url file://{file}: {file} is a file, not a directory.");

        // Somebody else's files: not a RegistryDR store, and init-store will not claim it.
        var foreign = Directory.CreateDirectory(Path.Combine(root.Path, "foreign")).FullName;
        File.WriteAllText(Path.Combine(foreign, "notes.txt"), "not ours");
        env = Env(("REGISTRYDR__Store__Url", "file://" + foreign));
        StringAssert.Contains((await RunCliAsync(env, "list", "--config", config)).Stderr, "holds 1 object(s) but no registry-dr-store.json and no backups: it is not a RegistryDR store");
        var claim = await RunCliAsync(env, "init-store", "--config", config);
        Assert.AreEqual(1, claim.ExitCode, claim.ToString());
        StringAssert.Contains(claim.Stderr, "is not empty (1 object(s)) and holds no backups");
        Assert.IsFalse(File.Exists(Path.Combine(foreign, StoreMarker.Key)));
    }

    [TestMethod]
    public async Task AReadOnlyStore_IsReportedByStatus_NamingStoreUrlAndTheReason()
    {
        if (!Environment.IsPrivilegedProcess) Assert.Inconclusive("a read-only bind mount needs root");
        using var storeDir = new TempDirectory("rdr-store-");
        var env = Env(("REGISTRYDR__Store__Url", "file://" + storeDir.Path));
        Assert.AreEqual(0, (await RunCliAsync(env, "init-store")).ExitCode);
        // The store read-only in a private mount namespace: readable, not writable.
        var script = $"mount --bind '{storeDir.Path}' '{storeDir.Path}' && mount -o remount,ro,bind '{storeDir.Path}' && " +
                     $"exec dotnet '{Path.Combine(AppContext.BaseDirectory, "registry-dr.dll")}' status --json";
        var run = await RunInNamespaceAsync(env, script);
        Assert.AreEqual(6, run.ExitCode, run.ToString());
        var json = JsonDocument.Parse(run.Stdout).RootElement;
        Assert.IsTrue(json.GetProperty("storeReachable").GetBoolean());
        Assert.IsFalse(json.GetProperty("storeWritable").GetBoolean());
        CollectionAssert.Contains(json.GetProperty("problems").EnumerateArray().Select(p => p.GetString()).ToList(),
            $"store: Store:Url file://{storeDir.Path} is not writable: {storeDir.Path} is on a read-only file system (check how it is mounted: `findmnt -T {storeDir.Path}`).");
    }

    private static async Task<Run> RunInNamespaceAsync(IReadOnlyDictionary<string, string?> env, string script)
    {
        var psi = new ProcessStartInfo("unshare", ["--mount", "--propagation", "private", "bash", "-c", script])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        return new Run(p.ExitCode, await stdout, await stderr);
    }

    [TestMethod]
    public async Task InitStore_CreatesThePrivateDirectory_WritesTheMarkerOnce_AndCommandsThenWork()
    {
        using var root = new TempDirectory("rdr-store-");
        var store = Path.Combine(root.Path, "backups");
        var env = Env(("REGISTRYDR__Store__Url", "file://" + store));
        var init = await RunCliAsync(env, "init-store");
        Assert.AreEqual(0, init.ExitCode, init.ToString());
        StringAssert.StartsWith(init.Stdout, $"Initialised file://{store}: wrote registry-dr-store.json (format 1, ");
        StringAssert.Contains(init.Stdout, $"  created {store} (mode 0700)");
        StringAssert.Contains(init.Stdout, $"  {store} is on ");
        Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(store));
        using (var marker = JsonDocument.Parse(File.ReadAllText(Path.Combine(store, StoreMarker.Key))))
        {
            Assert.AreEqual(1, marker.RootElement.GetProperty("format").GetInt32());
            Assert.AreEqual(Environment.MachineName, marker.RootElement.GetProperty("host").GetString());
            Assert.AreEqual("init-store", marker.RootElement.GetProperty("createdBy").GetString());
        }
        CollectionAssert.AreEqual(new[] { StoreMarker.Key }, Directory.GetFileSystemEntries(store).Select(Path.GetFileName).ToArray(), "the writability probe is removed");

        var again = await RunCliAsync(env, "init-store");
        Assert.AreEqual(0, again.ExitCode, again.ToString());
        StringAssert.StartsWith(again.Stdout, $"file://{store} is already initialised: registry-dr-store.json was written ");
        StringAssert.Contains(again.Stdout, "Nothing was changed.");

        var list = await RunCliAsync(env, "list");
        Assert.AreEqual(0, list.ExitCode, list.ToString());
        Assert.AreEqual($"No backups in file://{store}.\n", list.Stdout);
    }

    [TestMethod]
    public async Task AStoreWithBackupsButNoMarker_IsAdopted_AndSaysSo()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        var config = await WriteConfigAsync(node);
        Assert.AreEqual(0, (await RunCliAsync(null, "backup", "--config", config)).ExitCode);
        File.Delete(Path.Combine(storeDir.Path, StoreMarker.Key)); // as a store written before markers existed

        var list = await RunCliAsync(null, "list", "--config", config);
        Assert.AreEqual(0, list.ExitCode, list.ToString());
        StringAssert.Contains(list.Stderr, $"Store file://{storeDir.Path} has backups but no registry-dr-store.json (it was made before RegistryDR wrote one): writing it now");
        using var marker = JsonDocument.Parse(File.ReadAllText(Path.Combine(storeDir.Path, StoreMarker.Key)));
        Assert.AreEqual("adopted", marker.RootElement.GetProperty("createdBy").GetString());
        Assert.DoesNotContain("writing it now", (await RunCliAsync(null, "list", "--config", config)).Stderr);
    }

    [TestMethod]
    public async Task Bootstrap_InitialisesAnEmptyStore_OnlyOnTheFirstNode()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        // Outside AWS: no instance metadata, no lifecycle hook, no signal; nothing to start.
        Action<Dictionary<string, object?>> agent(bool firstBoot) => c =>
        {
            c["Agent"] = new { node.Options.Agent.StateFile, InstanceId = "i-0123456789abcdef0", Region = "eu-west-1", LifecycleHookName = "", SignalResource = "", AllowFirstBoot = firstBoot };
            c["Monitoring"] = new { Enabled = false, EmfLogPath = "" };
        };

        var replacement = await WriteConfigAsync(node, initialiseStore: false, edit: agent(false));
        var refused = await RunCliAsync(null, "bootstrap", "--config", replacement);
        Assert.AreEqual(3, refused.ExitCode, refused.ToString());
        StringAssert.Contains(refused.Stderr, $"Store:Url file://{storeDir.Path} has no registry-dr-store.json: it was never initialised, or it is not the store you meant.");
        StringAssert.Contains(refused.Stderr, "set Agent:AllowFirstBoot=true (the template's AllowFirstBoot parameter) so that the first node initialises it; a replacement node never does.");
        Assert.IsEmpty(Directory.GetFileSystemEntries(storeDir.Path));

        var first = await WriteConfigAsync(node, initialiseStore: false, edit: agent(true));
        var booted = await RunCliAsync(null, "bootstrap", "--config", first);
        Assert.AreEqual(0, booted.ExitCode, booted.ToString());
        StringAssert.Contains(booted.Stdout, "Bootstrap complete: first boot with an empty registry");
        StringAssert.Contains(booted.Stderr, $"Store file://{storeDir.Path} is empty and Agent:AllowFirstBoot is set: initialised it (registry-dr-store.json written) for the first node");
        using var marker = JsonDocument.Parse(File.ReadAllText(Path.Combine(storeDir.Path, StoreMarker.Key)));
        Assert.AreEqual("first boot", marker.RootElement.GetProperty("createdBy").GetString());
    }

    [TestMethod]
    public async Task AMissingPasswordFile_BlocksOnlyWhatConnectsToTheDatabase()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        var missing = Path.Combine(node.Root, "no-such-password");
        var config = await WriteConfigAsync(node);
        var env = Env(("REGISTRYDR__Database__PasswordFile", missing));
        var expected = $"Database:PasswordFile '{missing}' does not exist: create it with the database password on its first line (install -m 600), or correct the path.";

        Assert.AreEqual(0, (await RunCliAsync(env, "list", "--config", config)).ExitCode);
        Assert.AreEqual(3, (await RunCliAsync(env, "verify", "--config", config)).ExitCode, "no backup yet: verify gets that far");
        Assert.AreEqual(0, (await RunCliAsync(env, "prune", "--dry-run", "--config", config)).ExitCode);
        foreach (var command in new[] { "backup", "restore", "drill", "worker", "bootstrap" })
        {
            var run = await RunCliAsync(env, command, "--config", config);
            Assert.AreEqual(2, run.ExitCode, $"{command}: {run}");
            StringAssert.Contains(run.Stderr, expected, command);
        }
        var status = await RunCliAsync(env, "status", "--config", config, "--json");
        Assert.AreEqual(6, status.ExitCode, status.ToString());
        var json = JsonDocument.Parse(status.Stdout).RootElement;
        Assert.IsFalse(json.GetProperty("databaseReachable").GetBoolean());
        CollectionAssert.Contains(json.GetProperty("problems").EnumerateArray().Select(p => p.GetString()).ToList(), "database: " + expected);
    }

    [TestMethod]
    public async Task Status_IsOk_OnlyWhenTheNextBackupCanRun()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        var config = await WriteConfigAsync(node);
        var missing = await RunCliAsync(null, "status", "--config", config, "--json");
        Assert.AreEqual(6, missing.ExitCode, missing.ToString());
        Assert.AreEqual("Missing", JsonDocument.Parse(missing.Stdout).RootElement.GetProperty("state").GetString());

        Assert.AreEqual(0, (await RunCliAsync(null, "backup", "--config", config)).ExitCode);
        var before = Directory.GetFileSystemEntries(storeDir.Path, "*", SearchOption.AllDirectories).Order().ToList();
        var ok = await RunCliAsync(null, "status", "--config", config, "--json");
        Assert.AreEqual(0, ok.ExitCode, ok.ToString());
        var json = JsonDocument.Parse(ok.Stdout).RootElement;
        Assert.AreEqual("Ok", json.GetProperty("state").GetString());
        Assert.IsTrue(json.GetProperty("storeReachable").GetBoolean());
        Assert.IsTrue(json.GetProperty("storeWritable").GetBoolean());
        Assert.IsTrue(json.GetProperty("databaseReachable").GetBoolean());
        Assert.AreEqual(0, json.GetProperty("problems").GetArrayLength());
        Assert.AreEqual(900, json.GetProperty("intervalSeconds").GetDouble());
        Assert.IsGreaterThan(0L, json.GetProperty("newestBackupSizeBytes").GetInt64());
        CollectionAssert.AreEqual(before, Directory.GetFileSystemEntries(storeDir.Path, "*", SearchOption.AllDirectories).Order().ToList(), "the write probe is removed");
        var table = await RunCliAsync(null, "status", "--config", config);
        StringAssert.Contains(table.Stdout, "Protection:      OK");
        StringAssert.Contains(table.Stdout, $"Store:           file://{storeDir.Path} (reachable, writable)");
        StringAssert.Contains(table.Stdout, "Schedule:        every 15 minutes (\"0 0/15 * * * ?\", UTC); LATE after 30 minutes");

        // The same node, with the next backup unable to connect.
        var closedPort = RegistryDR.Tests.Infrastructure.AwsStandIns.LoopbackHttpServer.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var wrongPassword = Path.Combine(node.Root, "wrong-password");
        File.WriteAllText(wrongPassword, "not-the-password\n");
        File.SetUnixFileMode(wrongPassword, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        foreach (var (env, problem) in new[]
        {
            (Env(("REGISTRYDR__Database__Port", closedPort)), $"database: Could not connect to PostgreSQL at 127.0.0.1:{closedPort}: "),
            (Env(("REGISTRYDR__Database__PasswordFile", wrongPassword)),
                $"database: password authentication failed for user \"postgres\" on 127.0.0.1:{node.Cluster.Port} (Database:PasswordFile {wrongPassword}): the password is wrong for that user."),
            (Env(("REGISTRYDR__Database__PasswordFile", ""), ("REGISTRYDR_DB_PASSWORD", null)),
                $"database: 127.0.0.1:{node.Cluster.Port} asks for a password for user \"postgres\" and none was given: set Database:PasswordFile (a file whose first line is the password, chmod 600) or the $REGISTRYDR_DB_PASSWORD environment variable."),
            (Env(("REGISTRYDR__Config__Directories__0", Path.Combine(node.Root, "not-mounted"))),
                $"config: directory '{Path.Combine(node.Root, "not-mounted")}' does not exist (Config:Directories); the next backup fails at its preflight"),
        })
        {
            var blocked = await RunCliAsync(env, "status", "--config", config);
            Assert.AreEqual(6, blocked.ExitCode, blocked.ToString());
            StringAssert.Contains(blocked.Stdout, "Protection:      BLOCKED");
            StringAssert.Contains(blocked.Stdout, "The next backup cannot run:\n  " + problem);
        }
    }

    [TestMethod]
    public async Task Restore_Preflight_RefusesBeforeDownloadingAnything()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        var config = await WriteConfigAsync(node);
        Assert.AreEqual(0, (await RunCliAsync(null, "backup", "--config", config)).ExitCode);
        var wrongPassword = Path.Combine(node.Root, "wrong-password");
        File.WriteAllText(wrongPassword, "not-the-password\n");
        File.SetUnixFileMode(wrongPassword, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var closedPort = RegistryDR.Tests.Infrastructure.AwsStandIns.LoopbackHttpServer.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);

        foreach (var (env, reason) in new[]
        {
            (Env(("REGISTRYDR__Database__PasswordFile", wrongPassword)), $"password authentication failed for user \"postgres\" on 127.0.0.1:{node.Cluster.Port} (Database:PasswordFile {wrongPassword})"),
            (Env(("REGISTRYDR__Database__Port", closedPort)), $"Could not connect to PostgreSQL at 127.0.0.1:{closedPort}: "),
        })
        {
            var restore = await RunCliAsync(env, "restore", "--terminate-sessions", "--config", config);
            Assert.AreEqual(1, restore.ExitCode, restore.ToString());
            StringAssert.Contains(restore.Stderr, "cannot start; nothing was downloaded or changed:");
            StringAssert.Contains(restore.Stderr, "  - database server: " + reason);
            Assert.DoesNotContain("may remain", restore.Stderr);
            Assert.DoesNotContain("Node state", restore.Stderr);
            Assert.IsEmpty(Directory.GetFileSystemEntries(node.Options.Restore.StagingDirectory!), "nothing was downloaded");

            var dry = await RunCliAsync(env, "restore", "--dry-run", "--terminate-sessions", "--config", config);
            Assert.AreEqual(1, dry.ExitCode, dry.ToString());
            StringAssert.Contains(dry.Stdout, "FAIL  database server: " + reason);
            StringAssert.Contains(dry.Stdout, "ok    pg_restore: ");
        }
    }

    [TestMethod]
    public async Task Restore_TerminatesTheLiveSessions_OnlyWhenAllowed_AndSaysSo()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        var config = await WriteConfigAsync(node);
        Assert.AreEqual(0, (await RunCliAsync(null, "backup", "--config", config)).ExitCode);
        await using var session = new NpgsqlConnection(node.ConnectionString);
        await session.OpenAsync();

        var refused = await RunCliAsync(null, "restore", "--config", config);
        Assert.AreEqual(1, refused.ExitCode, refused.ToString());
        StringAssert.Contains(refused.Stderr, $"  - sessions: no Registry:StopCommand is configured, so the registry is not stopped before the swap, and the swap terminates every session on database '{node.Database}' (1 now). Configure Registry:StopCommand, or stop the registry yourself and pass --terminate-sessions.");
        await using (var cmd = new NpgsqlCommand("SELECT 1", session))
            Assert.AreEqual(1, await cmd.ExecuteScalarAsync(), "the refused restore left the session alone");

        var restore = await RunCliAsync(null, "restore", "--terminate-sessions", "--config", config);
        Assert.AreEqual(0, restore.ExitCode, restore.ToString());
        StringAssert.Contains(restore.Stdout, $"Stop the registry: NOT stopped, no Registry:StopCommand configured (needs --terminate-sessions)");
        StringAssert.Contains(restore.Stdout, $"Swap: terminate every session still on database '{node.Database}', the running registry's included, rename it to");
        StringAssert.Contains(restore.Stderr, $"terminated 1 session(s) on database {node.Database} for the swap");
        await using (var cmd = new NpgsqlCommand("SELECT 1", session))
            await Assert.ThrowsAsync<Exception>(async () => await cmd.ExecuteScalarAsync(), "the swap terminated the session");
    }

    [TestMethod]
    public async Task Worker_SaysItsSchedule_AndWhenTheNextBackupAndDrillRun()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        var config = await WriteConfigAsync(node, edit: c =>
        {
            c["Schedule"] = new { CatchUpOnStart = false };
            c["Monitoring"] = new { Enabled = false, EmfLogPath = "" };
        });
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        foreach (var a in new[] { "worker", "--config", config }) psi.ArgumentList.Add(a);
        using var worker = Process.Start(psi)!;
        var lines = new List<string>();
        try
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            while (!lines.Any(l => l.Contains("next drill at", StringComparison.Ordinal)))
            {
                var line = await worker.StandardError.ReadLineAsync(deadline.Token) ?? throw new AssertFailedException("the worker exited: " + string.Join("\n", lines));
                lines.Add(line);
            }
        }
        finally
        {
            using var kill = Process.Start("kill", ["-TERM", worker.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            await kill.WaitForExitAsync();
            await worker.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        }
        var backups = lines.Single(l => l.Contains("Backups every", StringComparison.Ordinal));
        StringAssert.Matches(backups, new System.Text.RegularExpressions.Regex(
            @"Backups every 15 minutes \(Schedule:Cron ""0 0/15 \* \* \* \?"", UTC\); next backup at \d{4}-\d\d-\d\d \d\d:(00|15|30|45):00 UTC; catch-up at start: off \(Schedule:CatchUpOnStart\)$"));
        var drills = lines.Single(l => l.Contains("Drills every", StringComparison.Ordinal));
        StringAssert.Matches(drills, new System.Text.RegularExpressions.Regex(
            @"Drills every day at 03:30 UTC \(Schedule:DrillCron ""0 30 3 \* \* \?"", UTC\); next drill at \d{4}-\d\d-\d\d 03:30:00 UTC$"));
        Assert.AreEqual(0, worker.ExitCode, "SIGTERM is a clean stop");
    }

    [TestMethod]
    public async Task Help_ListsEveryCommand_AndTheExitCodes()
    {
        var run = await RunCliAsync(null, "--help");
        Assert.AreEqual(0, run.ExitCode);
        foreach (var command in new[] { "init-store", "backup", "list", "status", "verify", "restore", "drill", "prune", "worker", "bootstrap", "check-registry" })
            StringAssert.Contains(run.Stdout, "  " + command + " ");
        StringAssert.Contains(run.Stdout, "Exit codes:\n  0    success\n  1    the operation failed");
        var verify = await RunCliAsync(null, "verify", "--help");
        StringAssert.Contains(verify.Stdout, "  <ID|latest>  A backup id from `registry-dr list`, or 'latest' (when left out): the newest restorable set (manifest valid, every artifact present).");
        Assert.DoesNotContain("[default: latest]", run.Stdout + verify.Stdout);
    }
}
