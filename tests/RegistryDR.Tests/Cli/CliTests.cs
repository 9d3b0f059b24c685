using System.Diagnostics;
using System.Text.Json;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Cli;

/// <summary>The real <c>registry-dr</c> executable, run as an operator would, configured by a file and the environment only.</summary>
[TestClass]
public sealed class CliTests
{
    private sealed record Run(int ExitCode, string Stdout, string Stderr);

    private static async Task<Run> RunCliAsync(IReadOnlyDictionary<string, string?>? env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string?>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        return new Run(p.ExitCode, await stdout, await stderr);
    }

    private static string WriteConfig(TestNode node)
    {
        var path = Path.Combine(node.Root, "registry-dr.json");
        var o = node.Options;
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            Database = new { o.Database.Host, o.Database.Port, o.Database.Name, o.Database.User, o.Database.PasswordFile, o.Database.BinDirectory },
            Config = new { Directories = o.Config.Directories, Exclude = o.Config.Exclude },
            Store = new { o.Store.Url },
            Restore = new { o.Restore.StagingDirectory },
            Agent = new { o.Agent.StateFile },
        }));
        return path;
    }

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
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var config = WriteConfig(node);
        var expected = await RegistrySchema.SnapshotAsync(node.ConnectionString);

        var backup = await RunCliAsync(null, "backup", "--config", config, "--json");
        Assert.AreEqual(0, backup.ExitCode, backup.Stderr);
        var id = JsonDocument.Parse(backup.Stdout).RootElement.GetProperty("backupId").GetString()!;

        var list = await RunCliAsync(null, "list", "--config", config, "--json");
        Assert.AreEqual(0, list.ExitCode, list.Stderr);
        var sets = JsonDocument.Parse(list.Stdout).RootElement;
        Assert.AreEqual(1, sets.GetArrayLength());
        Assert.AreEqual(id, sets[0].GetProperty("backupId").GetString());
        Assert.AreEqual("Complete", sets[0].GetProperty("state").GetString());

        var table = await RunCliAsync(null, "list", "--config", config);
        StringAssert.Contains(table.Stdout, id);
        StringAssert.Contains(table.Stdout, "complete");

        var verify = await RunCliAsync(null, "verify", id, "--config", config);
        Assert.AreEqual(0, verify.ExitCode, verify.Stderr);
        StringAssert.Contains(verify.Stdout, "is valid");

        var dry = await RunCliAsync(null, "restore", "--dry-run", "--config", config);
        Assert.AreEqual(0, dry.ExitCode, dry.Stderr);
        StringAssert.Contains(dry.Stdout, "dry run: nothing was changed");

        await node.WipeAsync();
        var restore = await RunCliAsync(null, "restore", "--backup", "latest", "--config", config);
        Assert.AreEqual(0, restore.ExitCode, restore.Stderr);
        Assert.IsNull(expected.FirstDifference(await RegistrySchema.SnapshotAsync(node.ConnectionString)));

        // Logs are one line per event on stderr and never carry the password.
        Assert.DoesNotContain(node.Cluster.SuperUserPassword, backup.Stderr + restore.Stderr + backup.Stdout + restore.Stdout);
        StringAssert.Contains(backup.Stderr, $"Backup {id} complete");
    }

    [TestMethod]
    public async Task EnvironmentVariables_OverrideTheFile()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file:///nonexistent-store-from-file");
        var config = WriteConfig(node);
        var list = await RunCliAsync(new Dictionary<string, string?> { ["REGISTRYDR__Store__Url"] = "file://" + storeDir }, "list", "--config", config);
        Assert.AreEqual(0, list.ExitCode, list.Stderr);
        StringAssert.Contains(list.Stdout, "No backups in file://" + storeDir);
    }

    [TestMethod]
    public async Task InvalidConfiguration_ExitsTwo_NamingTheKey()
    {
        var run = await RunCliAsync(new Dictionary<string, string?> { ["REGISTRYDR__Schedule__Cron"] = "often", ["REGISTRYDR__Store__Url"] = "file:///tmp/x" }, "list");
        Assert.AreEqual(2, run.ExitCode);
        StringAssert.Contains(run.Stderr, "Schedule:Cron 'often'");
    }

    [TestMethod]
    public async Task NoBackup_ExitsThree()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        var run = await RunCliAsync(new Dictionary<string, string?> { ["REGISTRYDR__Store__Url"] = "file://" + storeDir }, "verify", "latest");
        Assert.AreEqual(3, run.ExitCode, run.Stderr);
        StringAssert.Contains(run.Stderr, "There are no backups");
    }

    [TestMethod]
    public async Task Status_Json_ParsesAndSaysMissingThenOk()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var config = WriteConfig(node);
        var missing = await RunCliAsync(null, "status", "--config", config, "--json");
        Assert.AreEqual(6, missing.ExitCode, missing.Stderr);
        Assert.AreEqual("Missing", JsonDocument.Parse(missing.Stdout).RootElement.GetProperty("state").GetString());

        Assert.AreEqual(0, (await RunCliAsync(null, "backup", "--config", config)).ExitCode);
        var ok = await RunCliAsync(null, "status", "--config", config, "--json");
        Assert.AreEqual(0, ok.ExitCode, ok.Stderr);
        var json = JsonDocument.Parse(ok.Stdout).RootElement;
        Assert.AreEqual("Ok", json.GetProperty("state").GetString());
        Assert.IsTrue(json.GetProperty("storeReachable").GetBoolean());
        Assert.AreEqual(900, json.GetProperty("intervalSeconds").GetDouble());
        Assert.IsGreaterThan(0L, json.GetProperty("newestBackupSizeBytes").GetInt64());
        var table = await RunCliAsync(null, "status", "--config", config);
        StringAssert.Contains(table.Stdout, "Protection:      OK");
        StringAssert.Contains(table.Stdout, "Recovery point:");
    }

    [TestMethod]
    public async Task Help_ListsEveryCommand()
    {
        var run = await RunCliAsync(null, "--help");
        Assert.AreEqual(0, run.ExitCode);
        foreach (var command in new[] { "backup", "list", "status", "verify", "restore", "worker", "bootstrap" })
            StringAssert.Contains(run.Stdout, command);
    }
}
