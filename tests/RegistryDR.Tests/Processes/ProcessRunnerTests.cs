using RegistryDR.Tests.Infrastructure;
using RegistryDR.Processes;
using RegistryDR.Stores;

namespace RegistryDR.Tests.Processes;

[TestClass]
public sealed class ProcessRunnerTests
{
    [TestMethod]
    public async Task ChildFailingAfterOutput_FailsTheConsumersRead_SoNothingIsStored()
    {
        using var rootScope = new TempDirectory("rdr-proc-");
        var root = rootScope.Path;
        var store = new FileSystemStore(root);
        var ex = await Assert.ThrowsExactlyAsync<ProcessFailedException>(() => ProcessRunner.RunCheckedAsync(
            new ProcessSpec("/bin/sh", ["-c", "head -c 3000000 /dev/zero; echo 'disk on fire' >&2; exit 3"]),
            readStdout: (stdout, ct) => store.PutAsync("a/b.bin", stdout, ct)));
        Assert.AreEqual(3, ex.ExitCode);
        StringAssert.Contains(ex.Message, "disk on fire");
        Assert.IsEmpty(Directory.GetFiles(root, "*", SearchOption.AllDirectories), "a failed producer must leave no object, not even a temporary one");
    }

    [TestMethod]
    public async Task SecretsTravelInTheEnvironment_NotInArgv()
    {
        var output = await ProcessRunner.CaptureAsync(new ProcessSpec("/bin/sh", ["-c", "printf %s \"$PGPASSWORD\""])
        {
            Environment = new Dictionary<string, string?> { ["PGPASSWORD"] = "s3cr3t" },
        });
        Assert.AreEqual("s3cr3t", output);
    }

    [TestMethod]
    public async Task Timeout_KillsTheChild_AndSaysSo()
    {
        var ex = await Assert.ThrowsExactlyAsync<ProcessFailedException>(() =>
            ProcessRunner.RunCheckedAsync(new ProcessSpec("/bin/sleep", ["30"]) { Timeout = TimeSpan.FromMilliseconds(300) }));
        StringAssert.Contains(ex.Message, "did not finish within");
    }

    [TestMethod]
    public async Task MissingProgram_SaysWhatToCheck()
    {
        var ex = await Assert.ThrowsExactlyAsync<ProcessFailedException>(() =>
            ProcessRunner.RunCheckedAsync(new ProcessSpec("/nonexistent/pg_dump", [])));
        StringAssert.Contains(ex.Message, "could not be started");
    }
}
