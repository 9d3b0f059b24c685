using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Cli.Rendering;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Cli.Rendering;

/// <summary>Without --verbose the command line prints what failed, not .NET stack traces; with it, everything.</summary>
[TestClass]
public sealed class ExceptionDetailFilterTests
{
    private sealed class Capture : ILoggerProvider, ILogger
    {
        public readonly List<(string Message, Exception? Exception)> Entries = [];
        public ILogger CreateLogger(string categoryName) => this;
        public void Dispose() { }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((formatter(state, exception), exception));
    }

    [TestMethod]
    public void TheExceptionIsDropped_ItsMessageKept_OnlyWhenTheMessageLacksIt()
    {
        var capture = new Capture();
        using var factory = new ExceptionDetailFilter(LoggerFactory.Create(b => b.AddProvider(capture)));
        var logger = factory.CreateLogger("test");
        var failure = new InvalidOperationException("the dump is truncated");

        logger.LogError(failure, "Drill failed: {Reason}", failure.Message);
        logger.LogError(failure, "Drill failed");
        logger.LogInformation("no exception here");

        CollectionAssert.AreEqual(new[] { "Drill failed: the dump is truncated", "Drill failed (the dump is truncated)", "no exception here" }, capture.Entries.Select(e => e.Message).ToArray());
        Assert.IsTrue(capture.Entries.All(e => e.Exception is null), "no exception reaches the console formatter, so no stack trace is printed");
    }

    [TestMethod]
    public async Task AFailedDrill_PrintsNoStackTrace_UnlessVerbose()
    {
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 3);
        var manifest = await new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        var config = Path.Combine(storeDir.Path, manifest.Find(BackupLayout.ConfigArtifact)!.Key);
        var bytes = File.ReadAllBytes(config);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(config, bytes);
        var configPath = RegistryDR.Tests.Faults.InterruptedRestoreTests.WriteConfig(node);

        var quiet = await RunAsync("drill", manifest.BackupId, "--config", configPath);
        var verbose = await RunAsync("drill", manifest.BackupId, "--config", configPath, "-v");

        Assert.AreEqual(4, quiet.ExitCode, "a drill that found the set bad");
        StringAssert.Contains(quiet.Stderr, $"Backup {manifest.BackupId}: artifact 'config' is corrupt: ");
        Assert.IsFalse(quiet.Stderr.Contains(" at RegistryDR.", StringComparison.Ordinal), quiet.Stderr);
        Assert.IsFalse(quiet.Stderr.Contains("ArtifactCorruptException", StringComparison.Ordinal), quiet.Stderr);
        StringAssert.Contains(verbose.Stderr, " at RegistryDR.");
    }

    [TestMethod]
    public async Task ADrillThatCannotReachPostgres_ExitsOne_NotTheBadSetCode()
    {
        // Rules out alerting on exit 4 for a healthy backup: nothing was learned about the set.
        using var storeDir = new TempDirectory("rdr-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeDir.Path, repositories: 3);
        var manifest = await new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        node.Options.Database.Port = RegistryDR.Tests.Backup.BackupFailureTests.FreePort();
        var configPath = RegistryDR.Tests.Faults.InterruptedRestoreTests.WriteConfig(node);

        var drill = await RunAsync("drill", manifest.BackupId, "--config", configPath);

        Assert.AreEqual(1, drill.ExitCode, drill.Stderr);
        StringAssert.Contains(drill.Stderr, $"Drill of backup {manifest.BackupId} FAILED: ");
        Assert.IsNull(await CorruptionRecord.ReadAsync(node.CreateStore(), manifest.BackupId, CancellationToken.None), "no verdict on the set");
    }

    private static async Task<(int ExitCode, string Stderr)> RunAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        return (p.ExitCode, await stdout + await stderr);
    }
}
