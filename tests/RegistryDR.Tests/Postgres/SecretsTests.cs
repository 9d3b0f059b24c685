using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Postgres;

/// <summary>The database password never appears in a child's argv, and files that expose it are warned about.</summary>
[TestClass]
public sealed class SecretsTests
{
    private sealed class ListLogger : ILogger<BackupService>
    {
        public readonly List<string> Lines = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Lines) Lines.Add($"{logLevel}: {formatter(state, exception)} {exception}");
        }
    }

    [TestMethod]
    public async Task ThePasswordReachesTheTools_OnlyThroughTheirEnvironment()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        var record = Path.Combine(node.Root, "argv-record");
        // Each tool is wrapped: the wrapper records its argv and whether PGPASSWORD is set, then runs the real one.
        var bin = Path.Combine(node.Root, "wrapped-bin");
        Directory.CreateDirectory(bin);
        foreach (var tool in new[] { "pg_dump", "pg_dumpall", "pg_restore", "psql" })
        {
            var path = Path.Combine(bin, tool);
            File.WriteAllText(path, $"#!/bin/sh\nprintf '%s argv: %s | env PGPASSWORD set: %s\\n' '{tool}' \"$*\" \"${{PGPASSWORD:+yes}}\" >> '{record}'\nexec '{Path.Combine(node.Cluster.BinDirectory, tool)}' \"$@\"\n");
            File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        }
        node.Options.Database.BinDirectory = bin;
        var logger = new ListLogger();
        await new BackupService(node.Options, node.CreateStore(), logger, TimeProvider.System).RunAsync();

        var lines = File.ReadAllLines(record);
        Assert.IsTrue(lines.Any(l => l.StartsWith("pg_dump argv:", StringComparison.Ordinal)));
        Assert.IsTrue(lines.Any(l => l.StartsWith("pg_dumpall argv:", StringComparison.Ordinal)));
        foreach (var line in lines)
        {
            Assert.DoesNotContain(node.Cluster.SuperUserPassword, line, "a password in argv is visible to every user through ps");
            // `--version` needs no connection and gets no password; every connecting call gets it in its environment.
            if (!line.Contains("argv: --version", StringComparison.Ordinal)) StringAssert.EndsWith(line, "env PGPASSWORD set: yes");
        }
        Assert.IsFalse(logger.Lines.Any(l => l.Contains(node.Cluster.SuperUserPassword, StringComparison.Ordinal)));
    }

    [TestMethod]
    public async Task APasswordFileOthersCanRead_IsWarnedAbout()
    {
        using var storeDirScope = new TempDirectory("rdr-store-");
        var storeDir = storeDirScope.Path;
        await using var node = await TestNode.CreateAsync("file://" + storeDir);
        File.SetUnixFileMode(node.Options.Database.PasswordFile!, (UnixFileMode)0b110_100_100);
        var logger = new ListLogger();
        await new BackupService(node.Options, node.CreateStore(), logger, TimeProvider.System).RunAsync();
        Assert.IsTrue(logger.Lines.Any(l => l.StartsWith("Warning:", StringComparison.Ordinal) && l.Contains("chmod 600", StringComparison.Ordinal)), string.Join("\n", logger.Lines));
    }

    [TestMethod]
    public void AConfigFileOthersCanReadOrItsGroupCanWrite_IsWarnedAbout_APrivateOrGroupReadableOneIsNot()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.SetUnixFileMode(file, (UnixFileMode)0b110_100_100);
            Assert.AreEqual($"Configuration file {file} can be written by users other than its owner, or read by users outside its group (mode 644); " +
                "chmod 600 it (640 when its group must read it: the PostgreSQL server's group in continuous mode).", RegistryDrConfiguration.PermissionWarning(file));
            File.SetUnixFileMode(file, (UnixFileMode)0b110_110_000);
            StringAssert.Contains(RegistryDrConfiguration.PermissionWarning(file), "(mode 660)", "its group writing it is warned about");
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            Assert.IsNull(RegistryDrConfiguration.PermissionWarning(file));
            // A continuous node's configuration (0640 root:postgres): wal-push reads it through its group; no warning
            // that would lead an operator to chmod 600 it and stop WAL archiving.
            File.SetUnixFileMode(file, (UnixFileMode)0b110_100_000);
            Assert.IsNull(RegistryDrConfiguration.PermissionWarning(file));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
