using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Backup;

[TestClass]
public sealed class ProtectionStatusTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 12, 7, 0, TimeSpan.Zero);
    private const string Every15Minutes = "0 0/15 * * * ?";

    private static async Task<(FileSystemStore store, string dir)> StoreWithSetsAsync(params (TimeSpan age, bool complete)[] sets)
    {
        var dir = Directory.CreateTempSubdirectory("rdr-status-").FullName;
        var store = new FileSystemStore(dir);
        foreach (var (age, complete) in sets)
            await SyntheticSets.WriteAsync(store, Now - age, complete);
        return (store, dir);
    }

    [TestMethod]
    [DataRow(10, "Ok")]
    [DataRow(29, "Ok")]
    [DataRow(31, "Late")]
    [DataRow(600, "Late")]
    public async Task AgeAgainstTwiceTheInterval(int newestAgeMinutes, string expected)
    {
        var (store, dir) = await StoreWithSetsAsync((TimeSpan.FromMinutes(newestAgeMinutes), true), (TimeSpan.FromMinutes(newestAgeMinutes + 15), true), (TimeSpan.FromMinutes(1), false));
        try
        {
            var status = await ProtectionStatusReader.ReadAsync(store, Every15Minutes, new ManualTimeProvider(Now), CancellationToken.None);
            Assert.AreEqual(Enum.Parse<ProtectionState>(expected), status.State);
            Assert.AreEqual(TimeSpan.FromMinutes(15), status.Interval);
            Assert.AreEqual(TimeSpan.FromMinutes(newestAgeMinutes), status.NewestBackupAge);
            Assert.AreEqual(status.NewestBackupTime, status.RecoveryPoint);
            Assert.AreEqual(2, status.CompleteSets);
            Assert.AreEqual(1, status.IncompleteSets, "the newer incomplete set never counts as protection");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestMethod]
    public async Task NoCompleteSet_IsMissing()
    {
        var (store, dir) = await StoreWithSetsAsync((TimeSpan.FromMinutes(1), false));
        try
        {
            var status = await ProtectionStatusReader.ReadAsync(store, Every15Minutes, new ManualTimeProvider(Now), CancellationToken.None);
            Assert.AreEqual(ProtectionState.Missing, status.State);
            Assert.IsNull(status.RecoveryPoint);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestMethod]
    public async Task UnreachableStore_IsUnknown_WithTheReason()
    {
        var options = new RegistryDR.Configuration.StoreOptions
        {
            Url = "s3://nowhere-bucket/x", ServiceUrl = $"http://127.0.0.1:{BackupFailureTests.FreePort()}", ForcePathStyle = true, Region = "us-east-1",
            Checksums = RegistryDR.Configuration.S3ChecksumMode.WhenRequired,
        };
        using var store = (S3Store)BackupStoreFactory.Create(options, new Amazon.Runtime.BasicAWSCredentials("a", "b"));
        var status = await ProtectionStatusReader.ReadAsync(store, Every15Minutes, new ManualTimeProvider(Now), CancellationToken.None);
        Assert.AreEqual(ProtectionState.Unknown, status.State);
        Assert.IsFalse(status.StoreReachable);
        StringAssert.Contains(status.StoreError, "could not be reached");
    }
}
