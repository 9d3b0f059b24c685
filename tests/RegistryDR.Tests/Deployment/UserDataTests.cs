using RegistryDR.Tests.Infrastructure;
using RegistryDR.Configuration;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// bootstrap/user-data.sh as a dry run (RDR_ROOT: every file under a temp directory;
/// RDR_SKIP_PACKAGES, RDR_NO_SYSTEMD: no dnf, no systemctl): the configuration it writes is one
/// the real registry-dr accepts, with the settings the boot sequence depends on.
/// </summary>
[TestClass]
public sealed class UserDataTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>The shared stack values, with SSE-KMS and an explicit client-tools directory on top.</summary>
    private static Dictionary<string, string> StackValues(string root, string allowFirstBoot)
    {
        var values = DeploymentTestSupport.UserDataValues(root);
        values["RDR_SSE"] = "Kms";
        values["RDR_KMS_KEY_ID"] = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        values["RDR_ALLOW_FIRST_BOOT"] = allowFirstBoot;
        values["RDR_DB_BIN_DIRECTORY"] = "/usr/bin";
        values["RDR_DB_PASSWORD_SECRET_ARN"] = "";
        return values;
    }

    private Task<ScriptRun> UserDataAsync(Dictionary<string, string> environment) =>
        DeploymentTestSupport.RunUserDataAsync(environment, TestContext.CancellationToken);

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task TheConfigurationItWritesIsValidAndGuardsBackups()
    {
        using var rootScope = new TempDirectory("rdr-userdata-");
        var root = rootScope.Path;
        // What the template's stub does with a NoEcho DatabasePassword: a root-only file.
        var passwordFile = Path.Combine(root, "etc", "registry-dr", "db-password");
        Directory.CreateDirectory(Path.GetDirectoryName(passwordFile)!);
        File.WriteAllText(passwordFile, "s3cret\n");

        var run = await UserDataAsync(StackValues(root, allowFirstBoot: "false"));

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        var generated = Path.Combine(root, "etc", "registry-dr", "registry-dr.json.generated");
        Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(generated));
        Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(passwordFile));
        Assert.DoesNotContain("s3cret", run.Output);
        Assert.DoesNotContain("s3cret", File.ReadAllText(generated));

        var options = RegistryDrConfiguration.Load(generated);

        Assert.AreEqual("s3://registry-prod-backupbucket-1x2y3z/registry-dr", options.Store.Url);
        Assert.AreEqual("eu-west-1", options.Store.Region);
        Assert.AreEqual(ServerSideEncryptionMode.Kms, options.Store.ServerSideEncryption);
        Assert.AreEqual(passwordFile, options.Database.PasswordFile);
        Assert.AreEqual("/usr/bin", options.Database.BinDirectory);
        CollectionAssert.AreEqual(new[] { "systemctl", "stop", "dtr" }, options.Registry.StopCommand);
        CollectionAssert.AreEqual(new[] { "systemctl", "start", "dtr" }, options.Registry.StartCommand);
        Assert.IsTrue(options.Schedule.RequireRestoredNode, "a node that did not restore must never back up");
        Assert.IsFalse(options.Agent.AllowFirstBoot);
        Assert.AreEqual("registry-dr-launch", options.Agent.LifecycleHookName);
        Assert.AreEqual("RegistryGroup", options.Agent.SignalResource);
        Assert.AreEqual("registry-prod", options.Agent.StackName);
        Assert.AreEqual("registry-prod-registry", options.Agent.AutoScalingGroupName);
        Assert.AreEqual(Path.Combine(root, "var", "lib", "registry-dr", "node-state.json"), options.Agent.StateFile);
        // Staging on disk, not in /tmp (a tmpfs on Amazon Linux 2023, and private to the unit).
        Assert.AreEqual(Path.Combine(root, "var", "lib", "registry-dr", "staging"), options.Restore.StagingDirectory);

        // What registry-dr-bootstrap.service will run with.
        var bootEnv = File.ReadAllText(Path.Combine(root, "etc", "registry-dr", "boot.env"));
        StringAssert.Contains(bootEnv, $"REGISTRYDR_ARTIFACT_SHA256={new string('a', 64)}\n");
        StringAssert.Contains(bootEnv, "REGISTRYDR_ARTIFACT_URL=s3://releases/registry-dr/registry-dr.tar.gz\n");
        StringAssert.Contains(bootEnv, $"REGISTRYDR_CONFIG_SOURCE={generated}\n");
        Assert.IsTrue(File.Exists(Path.Combine(root, "opt", "registry-dr", "bootstrap", "registry-dr-boot.sh")));
        Assert.IsTrue(File.Exists(Path.Combine(root, "etc", "systemd", "system", "registry-dr-bootstrap.service")));
        Assert.IsTrue(File.Exists(Path.Combine(root, "etc", "systemd", "system", "registry-dr-worker.service")));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AllowFirstBootReachesTheAgentAndAMissingValueIsRefused()
    {
        using var rootScope = new TempDirectory("rdr-userdata-");
        var root = rootScope.Path;
        var run = await UserDataAsync(StackValues(root, allowFirstBoot: "true"));
        Assert.AreEqual(0, run.ExitCode, run.ToString());
        var options = RegistryDrConfiguration.Load(Path.Combine(root, "etc", "registry-dr", "registry-dr.json.generated"));
        Assert.IsTrue(options.Agent.AllowFirstBoot);
        Assert.IsNull(options.Database.PasswordFile, "no password was given");
        StringAssert.Contains(run.Output, "WARNING: no database password");

        var incomplete = StackValues(root, allowFirstBoot: "false");
        incomplete.Remove("RDR_STORE_URL");
        var refused = await UserDataAsync(incomplete);
        Assert.AreEqual(1, refused.ExitCode, refused.ToString());
        StringAssert.Contains(refused.Output, "RDR_STORE_URL is not set");
    }
}
