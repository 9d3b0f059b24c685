using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Backup;

/// <summary>A backup that cannot be taken fails loudly, names the cause, leaks no secret, and leaves no set that looks complete.</summary>
[TestClass]
public sealed class BackupFailureTests
{
    private static async Task<(BackupFailedException failure, IReadOnlyList<BackupSetInfo> sets)> FailingBackupAsync(TestNode node, IBackupStore? store = null)
    {
        store ??= node.CreateStore();
        var failure = await Assert.ThrowsExactlyAsync<BackupFailedException>(() =>
            new BackupService(node.Options, store, TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync());
        IReadOnlyList<BackupSetInfo> sets = [];
        try { sets = await new BackupCatalog(store).ListAsync(CancellationToken.None); } catch (StoreUnavailableException) { }
        return (failure, sets);
    }

    private static string FileStore() => "file://" + Directory.CreateTempSubdirectory("rdr-store-").FullName;

    [TestMethod]
    public async Task WrongPassword_FailsNamingAuthentication_WithoutThePassword()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        const string wrong = "not-the-password-7f3a";
        File.WriteAllText(node.Options.Database.PasswordFile!, wrong + "\n");
        var (failure, sets) = await FailingBackupAsync(node);
        StringAssert.Contains(failure.Message, $"password authentication failed for user \"{node.Cluster.SuperUser}\"");
        Assert.DoesNotContain(wrong, failure.ToString());
        Assert.DoesNotContain(node.Cluster.SuperUserPassword, failure.ToString());
        Assert.IsFalse(sets.Any(s => s.IsComplete));
    }

    [TestMethod]
    public async Task UnreachableDatabase_FailsNamingHostAndPort()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Database.Port = FreePort();
        var (failure, sets) = await FailingBackupAsync(node);
        StringAssert.Contains(failure.Message, $"Could not connect to PostgreSQL at 127.0.0.1:{node.Options.Database.Port}");
        Assert.IsEmpty(sets);
    }

    [TestMethod]
    public async Task PgDumpMissing_FailsNamingTheTool()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Database.BinDirectory = Directory.CreateTempSubdirectory("rdr-empty-bin-").FullName;
        var (failure, sets) = await FailingBackupAsync(node);
        StringAssert.Contains(failure.Message, "pg_dump could not be started");
        Assert.IsEmpty(sets);
    }

    [TestMethod]
    public async Task PgDumpExitingNonZeroMidStream_IsAFailure_AndLeavesNoArtifact()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        // A pg_dump that writes a plausible start of a dump, then dies: the truncated output must not be kept.
        var bin = FakeBin(node, "pg_dump", "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 15.99'; exit 0; fi\nprintf 'PGDMP partial'\nexit 1\n");
        node.Options.Database.BinDirectory = bin;
        var (failure, sets) = await FailingBackupAsync(node);
        StringAssert.Matches(failure.Message, new System.Text.RegularExpressions.Regex(@"pg_dump \(pid [0-9]+\) exited with code 1"));
        Assert.AreEqual("dump database", failure.Phase);
        Assert.IsEmpty(sets, "the roles dump written before the failure must be removed too");
    }

    [TestMethod]
    public async Task PgDumpWritingNothing_IsAFailure()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Database.BinDirectory = FakeBin(node, "pg_dump", "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 15.99'; exit 0; fi\nexit 0\n");
        var (failure, _) = await FailingBackupAsync(node);
        StringAssert.Contains(failure.Message, "wrote nothing");
    }

    [TestMethod]
    public async Task PgDumpOlderThanServer_IsRefusedNamingBothVersions()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        node.Options.Database.BinDirectory = FakeBin(node, "pg_dump", "#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.4'\n");
        var (failure, _) = await FailingBackupAsync(node);
        StringAssert.Contains(failure.Message, "pg_dump 12.4");
        StringAssert.Contains(failure.Message, "older than the PostgreSQL server 15.");
    }

    [TestMethod]
    public async Task StoreUnreachable_FailsNamingTheStore()
    {
        await using var node = await TestNode.CreateAsync("s3://unreachable-bucket/x", s =>
        {
            s.ServiceUrl = $"http://127.0.0.1:{FreePort()}";
            s.ForcePathStyle = true;
            s.Region = "us-east-1";
            s.Checksums = RegistryDR.Configuration.S3ChecksumMode.WhenRequired;
        });
        using var store = BackupStoreFactory.Create(node.Options.Store, new Amazon.Runtime.BasicAWSCredentials("AKIDTEST", "secret-never-shown")) as S3Store;
        var (failure, _) = await FailingBackupAsync(node, store);
        StringAssert.Contains(failure.Message, "could not be reached");
        StringAssert.Contains(failure.Message, "s3://unreachable-bucket/x");
        Assert.DoesNotContain("secret-never-shown", failure.ToString());
    }

    [TestMethod]
    public async Task MissingConfigDirectory_FailsBeforeDumping()
    {
        await using var node = await TestNode.CreateAsync(FileStore());
        Directory.Delete(node.ConfigDirectories[1], recursive: true);
        var (failure, sets) = await FailingBackupAsync(node);
        Assert.AreEqual("preflight", failure.Phase);
        StringAssert.Contains(failure.Message, node.ConfigDirectories[1]);
        Assert.IsEmpty(sets);
    }

    internal static string FakeBin(TestNode node, string tool, string script)
    {
        var bin = Path.Combine(node.Root, "fake-bin-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(bin);
        // Every other tool is the real one, so only the named tool misbehaves.
        foreach (var real in Directory.GetFiles(node.Cluster.BinDirectory))
            File.CreateSymbolicLink(Path.Combine(bin, Path.GetFileName(real)), real);
        var path = Path.Combine(bin, tool);
        File.Delete(path);
        File.WriteAllText(path, script);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        return bin;
    }

    internal static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
