using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using RegistryDR.Backup;
using RegistryDR.Tests.Deployment;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Cli;

/// <summary>
/// docs/cli.md is the single truth about the command line: every exit code it documents is
/// produced here by the real executable, and every command and option it documents is in the
/// executable's --help, and the reverse.
/// </summary>
[TestClass]
public sealed class CliDocumentationTests
{
    private static string CliDoc => File.ReadAllText(Path.Combine(DeploymentTestSupport.RepoRoot, "docs", "cli.md"));

    private static Dictionary<string, string?> Env(params (string Key, string? Value)[] values) => values.ToDictionary(v => v.Key, v => v.Value);

    /// <summary>The codes in docs/cli.md's "Exit codes" table.</summary>
    private static List<int> DocumentedExitCodes()
    {
        var section = CliDoc[CliDoc.IndexOf("## Exit codes", StringComparison.Ordinal)..];
        section = section[..section.IndexOf("\n## ", 3, StringComparison.Ordinal)];
        return Regex.Matches(section, @"^\| (\d+) \|", RegexOptions.Multiline).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
    }

    [TestMethod]
    public async Task EveryDocumentedExitCode_IsProducedByTheExecutable_AndListedInItsHelp()
    {
        var documented = DocumentedExitCodes();
        CollectionAssert.AreEqual(new[] { 0, 1, 2, 3, 4, 5, 6, 130 }, documented, "docs/cli.md's exit-code table");
        var help = await CliTests.RunCliAsync(null, "--help");
        var listed = Regex.Matches(help.Stdout[help.Stdout.IndexOf("Exit codes:", StringComparison.Ordinal)..], @"^  (\d+) ", RegexOptions.Multiline)
            .Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        CollectionAssert.AreEqual(documented, listed, "--help lists the same exit codes");

        var produced = new Dictionary<int, CliTests.Run>();
        using var root = new TempDirectory("rdr-codes-");
        var store = Path.Combine(root.Path, "store");
        var env = Env(("REGISTRYDR__Store__Url", "file://" + store));

        produced[1] = await CliTests.RunCliAsync(env, "list");                    // a store without its marker
        produced[0] = await CliTests.RunCliAsync(env, "init-store");
        produced[2] = await CliTests.RunCliAsync(env, "lisst");                   // an invalid command line
        produced[3] = await CliTests.RunCliAsync(env, "verify", "latest");        // no backup at all
        produced[6] = await CliTests.RunCliAsync(env, "status");                  // MISSING
        var id = BackupLayout.NewBackupId(DateTimeOffset.UtcNow);
        Directory.CreateDirectory(Path.Combine(store, "backups", id));
        File.WriteAllText(Path.Combine(store, "backups", id, BackupManifest.FileName), "{ not a manifest");
        produced[4] = await CliTests.RunCliAsync(env, "verify", id);              // an invalid manifest
        produced[5] = await RestoreFailingPartWayAsync();
        produced[130] = await InterruptedAsync();

        foreach (var code in documented)
        {
            Assert.IsTrue(produced.TryGetValue(code, out var run), $"no test here produces exit code {code}");
            Assert.AreEqual(code, run.ExitCode, $"exit code {code}: {run}");
        }
        StringAssert.Contains(produced[4].Stderr, $"manifest");
        StringAssert.Contains(produced[5].Stderr, "Node state: ");
        StringAssert.Contains(produced[130].Stderr, "error: Interrupted.");
    }

    /// <summary>A restore whose Registry:StartCommand fails after the swap: rolled back, exit 5.</summary>
    private static async Task<CliTests.Run> RestoreFailingPartWayAsync()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path);
        var config = await CliTests.WriteConfigAsync(node, edit: c => c["Registry"] = new { StopCommand = new[] { "/bin/true" }, StartCommand = new[] { "/bin/false" } });
        var backup = await CliTests.RunCliAsync(null, "backup", "--config", config);
        Assert.AreEqual(0, backup.ExitCode, backup.ToString());
        return await CliTests.RunCliAsync(null, "restore", "--config", config);
    }

    /// <summary>
    /// SIGINT while the command waits on an S3 server that accepted the connection and never
    /// answers: the wait is interrupted, exit 130. The signal is sent once the request has arrived.
    /// </summary>
    private static async Task<CliTests.Run> InterruptedAsync()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        psi.ArgumentList.Add("list");
        foreach (var (k, v) in new Dictionary<string, string>
        {
            ["REGISTRYDR__Store__Url"] = "s3://silent-bucket/registry",
            ["REGISTRYDR__Store__ServiceUrl"] = $"http://127.0.0.1:{port}",
            ["REGISTRYDR__Store__ForcePathStyle"] = "true",
            ["REGISTRYDR__Store__Checksums"] = "WhenRequired",
            ["REGISTRYDR__Store__ServerSideEncryption"] = "None",
            ["AWS_ACCESS_KEY_ID"] = "AKIDSILENT",
            ["AWS_SECRET_ACCESS_KEY"] = "silent-secret",
            ["AWS_EC2_METADATA_DISABLED"] = "true",
        })
            psi.Environment[k] = v;
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var accepted = await listener.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromMinutes(2));
        // The request's bytes arriving means the command is now waiting on the answer.
        var buffer = new byte[1];
        Assert.AreEqual(1, await accepted.GetStream().ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromMinutes(1)));
        using (var kill = Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            await kill.WaitForExitAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        return new CliTests.Run(process.ExitCode, await stdout, await stderr);
    }

    [TestMethod]
    public async Task EveryDocumentedCommandAndOption_IsInTheHelp_AndNothingUndocumentedIs()
    {
        var table = CliDoc[CliDoc.IndexOf("| Command | What it does |", StringComparison.Ordinal)..];
        table = table[..table.IndexOf("\n\n", StringComparison.Ordinal)];
        var documented = Regex.Matches(table, @"^\| `(?<usage>[^`]+)` \|", RegexOptions.Multiline)
            .Select(m => m.Groups["usage"].Value)
            .ToDictionary(u => u.Split(' ')[0], u => Regex.Matches(u, @"--[a-z-]+").Select(o => o.Value).Order().ToList());
        var root = await CliTests.RunCliAsync(null, "--help");
        var commandsSection = root.Stdout[root.Stdout.IndexOf("Commands:", StringComparison.Ordinal)..root.Stdout.IndexOf("Exit codes:", StringComparison.Ordinal)];
        var inHelp = Regex.Matches(commandsSection, @"^  (?<name>[a-z-]+)", RegexOptions.Multiline).Select(m => m.Groups["name"].Value).Order().ToList();
        CollectionAssert.AreEqual(documented.Keys.Order().ToList(), inHelp, "the commands in docs/cli.md and in --help");

        string[] global = ["--config", "--verbose", "--help", "--version"];
        foreach (var option in global)
            StringAssert.Contains(CliDoc[..CliDoc.IndexOf("| Command |", StringComparison.Ordinal)], $"`{option}", "docs/cli.md's global options");
        foreach (var (command, options) in documented)
        {
            var help = await CliTests.RunCliAsync(null, command, "--help");
            Assert.AreEqual(0, help.ExitCode, help.ToString());
            var optionsSection = help.Stdout[help.Stdout.IndexOf("Options:", StringComparison.Ordinal)..help.Stdout.IndexOf("Exit codes:", StringComparison.Ordinal)];
            var helpOptions = Regex.Matches(optionsSection, @"(?<=^  (?:-\S, )?)--[a-z-]+", RegexOptions.Multiline).Select(m => m.Value)
                .Where(o => !global.Contains(o)).Order().ToList();
            CollectionAssert.AreEqual(options, helpOptions, $"`{command}`: options in docs/cli.md and in `{command} --help`");
        }
    }
}
