using System.Diagnostics;
using System.Text.Json;
using RegistryDR.Backup;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Cli;

/// <summary>Failures the command line did not classify still end in one line (JSON with --json) and a sensible exit code, never an unhandled exception.</summary>
[TestClass]
public sealed class CliFailureTests
{
    [TestMethod]
    public async Task VerifyOfASetWithAMissingArtifact_ExitsFour_InOneLine_AndInJson()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 3);
        var manifest = await new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var globals = manifest.Find(BackupLayout.GlobalsArtifact)!.Key;
        File.Delete(Path.Combine(storeDir.Path, globals));
        var config = RegistryDR.Tests.Faults.InterruptedRestoreTests.WriteConfig(node);

        var text = await RunAsync("verify", manifest.BackupId, "--config", config);
        var json = await RunAsync("verify", manifest.BackupId, "--config", config, "--json");

        Assert.AreEqual(4, text.ExitCode, text.Stderr);
        StringAssert.Contains(text.Stderr, $"'{globals}' does not exist in file://{storeDir.Path}");
        Assert.IsFalse(text.Stderr.Contains("Unhandled exception", StringComparison.Ordinal) || text.Stderr.Contains(" at RegistryDR.", StringComparison.Ordinal), text.Stderr);
        Assert.AreEqual(4, json.ExitCode);
        var error = JsonDocument.Parse(json.Stdout).RootElement.GetProperty("error");
        Assert.AreEqual(4, error.GetProperty("code").GetInt32());
        StringAssert.Contains(error.GetProperty("message").GetString(), $"'{globals}' does not exist");
        Assert.IsNull(await CorruptionRecord.ReadAsync(node.CreateStore(), manifest.BackupId, CancellationToken.None), "a missing artifact is not a verdict on bytes (it may still be replicating)");
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        return (p.ExitCode, await stdout, await stderr);
    }
}
