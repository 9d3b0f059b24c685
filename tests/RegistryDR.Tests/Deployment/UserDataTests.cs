using System.Text.Json.Nodes;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Configuration;
using RegistryDR.Continuous;

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

    /// <summary>
    /// The generated configuration as the real registry-dr loads it. Agent:TerminationHookName is
    /// the agent stream's new key (issue 13): while this branch's AgentOptions does not have it yet,
    /// its value is checked here and the rest is loaded without it; once it exists, as it is.
    /// </summary>
    private static RegistryDrOptions LoadNodeConfiguration(string generated)
    {
        var json = JsonNode.Parse(File.ReadAllText(generated))!;
        Assert.AreEqual("registry-dr-terminate", (string?)json["Agent"]!["TerminationHookName"], "the template's terminating hook");
        if (typeof(AgentOptions).GetProperty("TerminationHookName") is not null) return RegistryDrConfiguration.Load(generated);
        json["Agent"]!.AsObject().Remove("TerminationHookName");
        var copy = generated + ".without-termination-hook";
        File.WriteAllText(copy, json.ToJsonString());
        try
        {
            return RegistryDrConfiguration.Load(copy);
        }
        finally
        {
            File.Delete(copy);
        }
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AFailoverNode_TakesOverAndChecksTheRegistry_APrimaryDoesNeither()
    {
        foreach (var (role, url, expectedRole, expectedUrl) in new[] { ("failover", "https://registry.example.com", AgentRole.Failover, "https://registry.example.com"), ("primary", "", AgentRole.Primary, null) })
        {
            using var rootScope = new TempDirectory("rdr-userdata-");
            var values = StackValues(rootScope.Path, allowFirstBoot: "false");
            values["RDR_ROLE"] = role;
            values["RDR_CHECK_REGISTRY_URL"] = url;
            var run = await UserDataAsync(values);
            Assert.AreEqual(0, run.ExitCode, run.ToString());
            var options = LoadNodeConfiguration(Path.Combine(rootScope.Path, "etc", "registry-dr", "registry-dr.json.generated"));
            Assert.AreEqual((expectedRole, expectedUrl), (options.Agent.Role, options.Agent.CheckRegistryAfterRestore), role);
        }
    }

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

        var options = LoadNodeConfiguration(generated);

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
        Assert.AreEqual(TimeSpan.FromMinutes(5), options.Agent.HeartbeatInterval, "the template's default AgentHeartbeatInterval, 300 s");
        CollectionAssert.AreEqual(new[] { "/var/local/dtr", "/usr/local/etc/dtr" }, options.Config.EffectiveDirectories.ToList(), "an image node keeps the DTR directories");
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
        // Who the boot script reports to when the agent cannot report itself.
        StringAssert.Contains(bootEnv, "\nREGISTRYDR_STACK_NAME=registry-prod\nREGISTRYDR_AUTOSCALING_GROUP_NAME=registry-prod-registry\n" +
                                       "REGISTRYDR_LIFECYCLE_HOOK_NAME=registry-dr-launch\nREGISTRYDR_SIGNAL_RESOURCE=RegistryGroup\n");
        StringAssert.Contains(bootEnv, $"REGISTRYDR_NODE_STATE_FILE={Path.Combine(root, "var", "lib", "registry-dr", "node-state.json")}\n");
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
        var options = LoadNodeConfiguration(Path.Combine(root, "etc", "registry-dr", "registry-dr.json.generated"));
        Assert.IsTrue(options.Agent.AllowFirstBoot);
        Assert.IsNull(options.Database.PasswordFile, "no password was given");
        StringAssert.Contains(run.Output, "WARNING: no database password");

        var incomplete = StackValues(root, allowFirstBoot: "false");
        incomplete.Remove("RDR_STORE_URL");
        var refused = await UserDataAsync(incomplete);
        Assert.AreEqual(1, refused.ExitCode, refused.ToString());
        StringAssert.Contains(refused.Output, "RDR_STORE_URL is not set");
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task TheHeartbeatIntervalAndConfigDirectoriesReachTheNode()
    {
        using var rootScope = new TempDirectory("rdr-userdata-");
        var values = StackValues(rootScope.Path, allowFirstBoot: "false");
        values["RDR_HEARTBEAT_INTERVAL_SECONDS"] = "120";
        values["RDR_CONFIG_DIRECTORIES"] = "/etc/docker-registry";

        var run = await UserDataAsync(values);

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        var options = LoadNodeConfiguration(Path.Combine(rootScope.Path, "etc", "registry-dr", "registry-dr.json.generated"));
        Assert.AreEqual(TimeSpan.FromMinutes(2), options.Agent.HeartbeatInterval);
        CollectionAssert.AreEqual(new[] { "/etc/docker-registry" }, options.Config.EffectiveDirectories.ToList());

        values["RDR_HEARTBEAT_INTERVAL_SECONDS"] = "5m";
        var refused = await UserDataAsync(values);
        Assert.AreEqual(1, refused.ExitCode, refused.ToString());
        StringAssert.Contains(refused.Output, "RDR_HEARTBEAT_INTERVAL_SECONDS must be a whole number of seconds, not '5m'");

        values["RDR_HEARTBEAT_INTERVAL_SECONDS"] = "120";
        values["RDR_NODE_SETUP"] = "custom";
        var badSetup = await UserDataAsync(values);
        Assert.AreEqual(1, badSetup.ExitCode, badSetup.ToString());
        StringAssert.Contains(badSetup.Output, "RDR_NODE_SETUP must be reference or image, not 'custom'");
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task TheCloudWatchAgentPublishesTheRootDiskWhereRootDiskAlarmLooks()
    {
        using var rootScope = new TempDirectory("rdr-userdata-");
        var values = StackValues(rootScope.Path, allowFirstBoot: "false");
        values["RDR_METRICS_LOG_GROUP"] = "/registry-dr/registry-prod/metrics";

        var run = await UserDataAsync(values);

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        var agent = JsonNode.Parse(File.ReadAllText(Path.Combine(rootScope.Path, "opt", "aws", "amazon-cloudwatch-agent", "etc", "amazon-cloudwatch-agent.json")))!;
        Assert.IsTrue((bool)agent["agent"]!["omit_hostname"]!, "no host dimension: the series must survive node replacements");
        var metrics = agent["metrics"]!;
        var alarm = CloudFormationTemplate.Load("registry.yaml").Properties("RootDiskAlarm");
        Assert.AreEqual((string)alarm["Namespace"]!, (string?)metrics["namespace"]);
        Assert.AreEqual("disk_used_percent", (string)alarm["MetricName"]!, "the CloudWatch agent names disk used_percent so");
        Assert.IsTrue(JsonNode.DeepEquals(JsonNode.Parse("""
            {"disk": {"measurement": ["used_percent"], "resources": ["/"], "drop_device": true, "metrics_collection_interval": 60,
                      "append_dimensions": {"Stack": "registry-prod"}}}
            """), metrics["metrics_collected"]), metrics.ToJsonString());
        // The alarm's dimensions (Stack, path) are exactly one aggregation the agent publishes.
        var alarmDimensions = alarm["Dimensions"]!.AsArray().Select(d => (string)d!["Name"]!).ToList();
        Assert.IsTrue(JsonNode.DeepEquals(new JsonArray(new JsonArray([.. alarmDimensions.Select(d => (JsonNode)JsonValue.Create(d))])), metrics["aggregation_dimensions"]),
            metrics["aggregation_dimensions"]!.ToJsonString());
    }

    private async Task<string> StatAsync(string path)
    {
        var run = await DeploymentTestSupport.RunAsync("stat", ["-c", "%a %U:%G", path], null, TimeSpan.FromSeconds(30), TestContext.CancellationToken);
        Assert.AreEqual(0, run.ExitCode, run.ToString());
        return run.Output.Trim();
    }

    private Task<ScriptRun> AsPostgresAsync(params string[] command) =>
        DeploymentTestSupport.RunAsync("runuser", ["-u", "postgres", "--", .. command], null, TimeSpan.FromSeconds(30), TestContext.CancellationToken);

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task ContinuousMode_WritesTheModeAndTheServer_AndLetsWalPushReadWhatItNeeds()
    {
        using var rootScope = new TempDirectory("rdr-userdata-continuous-");
        var root = rootScope.Path;
        // The postgres user must reach the node's directories below the temp root, as below / on a node.
        File.SetUnixFileMode(root, (UnixFileMode)0b111_101_101);
        var configDir = Path.Combine(root, "etc", "registry-dr");
        var stateDir = Path.Combine(root, "var", "lib", "registry-dr");
        var passwordFile = Path.Combine(configDir, "db-password");
        // /etc and /var/lib of a node (0755); the script makes the directories below them.
        Directory.CreateDirectory(configDir);
        Directory.CreateDirectory(Path.GetDirectoryName(stateDir)!);
        File.WriteAllText(passwordFile, "s3cret\n");
        File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var values = StackValues(root, allowFirstBoot: "false");
        values["RDR_DATABASE_MODE"] = "continuous";
        values["RDR_ARCHIVE_TIMEOUT_SECONDS"] = "45";
        // A file store: wal-push below gets as far as the store without any credentials.
        values["RDR_STORE_URL"] = "file://" + Path.Combine(root, "store");

        var run = await UserDataAsync(values);

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        var generated = Path.Combine(configDir, "registry-dr.json.generated");
        var json = JsonNode.Parse(File.ReadAllText(generated))!;
        Assert.AreEqual("Continuous", (string?)json["Database"]!["Mode"]);
        Assert.IsTrue(JsonNode.DeepEquals(JsonNode.Parse("""
            {"DataDirectory": "/var/lib/pgsql/data", "ArchiveTimeout": "00:00:45",
             "ServerStopCommand": ["systemctl", "stop", "postgresql.service"], "ServerStartCommand": ["systemctl", "start", "postgresql.service"]}
            """), json["Continuous"]), json["Continuous"]!.ToJsonString());
        // The real registry-dr accepts it, continuous mode's checks included.
        var options = LoadNodeConfiguration(generated);
        Assert.AreEqual(DatabaseMode.Continuous, options.Database.Mode);
        Assert.AreEqual(TimeSpan.FromSeconds(45), options.Continuous.ArchiveTimeout);
        Assert.AreEqual("/var/lib/pgsql/data", options.Continuous.DataDirectory);

        // registry-dr wal-push runs as postgres: it can pass through both directories and read the node
        // state file (written 0644 by the agent), but list neither and read no secret.
        Assert.AreEqual("710 root:postgres", await StatAsync(configDir));
        Assert.AreEqual("710 root:postgres", await StatAsync(stateDir));
        Assert.AreEqual("700 root:root", await StatAsync(Path.Combine(stateDir, "staging")));
        Assert.AreEqual("600 root:root", await StatAsync(passwordFile));
        var stateFile = Path.Combine(stateDir, "node-state.json");
        const string state = "{\"status\": \"Restored\", \"at\": \"2026-12-01T05:00:00+00:00\"}";
        File.WriteAllText(stateFile, state + "\n");
        File.SetUnixFileMode(stateFile, (UnixFileMode)0b110_100_100);
        var readState = await AsPostgresAsync("cat", stateFile);
        Assert.AreEqual((0, state), (readState.ExitCode, readState.Output.Trim()), readState.ToString());
        var readPassword = await AsPostgresAsync("cat", passwordFile);
        Assert.AreEqual(1, readPassword.ExitCode, readPassword.ToString());
        StringAssert.Contains(readPassword.Output, "Permission denied");
        var list = await AsPostgresAsync("ls", configDir);
        Assert.AreNotEqual(0, list.ExitCode, list.ToString());
        // The boot script installs the configuration itself readable by that group (BootScriptTests).
        StringAssert.Contains(File.ReadAllText(Path.Combine(configDir, "boot.env")), "\nREGISTRYDR_CONFIG_GROUP=postgres\n");

        // The real registry-dr wal-push, as postgres, with the configuration installed as the boot script
        // installs it (0640 root:postgres): it reads the configuration and the node state, passes the
        // fencing check, and stops only at the WAL file, which does not exist here.
        var config = Path.Combine(configDir, "registry-dr.json");
        var install = await DeploymentTestSupport.RunAsync("install", ["-g", "postgres", "-m", "0640", generated, config], null, TimeSpan.FromSeconds(30), TestContext.CancellationToken);
        Assert.AreEqual(0, install.ExitCode, install.ToString());
        var wal = Path.Combine(root, "000000010000000000000001");
        var dll = Path.Combine(AppContext.BaseDirectory, "registry-dr.dll");
        var push = await AsPostgresAsync("dotnet", dll, "wal-push", "--config", config, wal);
        Assert.AreEqual((1, $"registry-dr wal-push: Could not find file '{wal}'."), (push.ExitCode, push.Output.Trim()), push.ToString());
        // The same with the directories root-only, as in logical mode: refused for the node state it cannot read.
        File.SetUnixFileMode(stateDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var unreadable = await AsPostgresAsync("dotnet", dll, "wal-push", "--config", config, wal);
        Assert.AreEqual(1, unreadable.ExitCode, unreadable.ToString());
        StringAssert.Contains(unreadable.Output, $"the node state file {stateFile} is missing or unreadable");
        Assert.DoesNotContain("s3cret", File.ReadAllText(generated));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task LogicalMode_WritesNoModeAndKeepsTheDirectoriesRootOnly()
    {
        foreach (var mode in new string?[] { null, "logical" })
        {
            using var rootScope = new TempDirectory("rdr-userdata-logical-");
            var values = StackValues(rootScope.Path, allowFirstBoot: "false");
            if (mode is not null) values["RDR_DATABASE_MODE"] = mode;
            values["RDR_ARCHIVE_TIMEOUT_SECONDS"] = "45";

            var run = await UserDataAsync(values);

            Assert.AreEqual(0, run.ExitCode, run.ToString());
            var configDir = Path.Combine(rootScope.Path, "etc", "registry-dr");
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(configDir, "registry-dr.json.generated")))!.AsObject();
            CollectionAssert.AreEqual(new[] { "Database", "Registry", "Store", "Schedule", "Restore", "Agent" }, json.Select(p => p.Key).ToList(), mode ?? "no mode");
            CollectionAssert.AreEqual(new[] { "Host", "Port", "Name", "User", "BinDirectory" }, json["Database"]!.AsObject().Select(p => p.Key).ToList(), mode ?? "no mode");
            Assert.AreEqual("700 root:root", await StatAsync(configDir));
            Assert.AreEqual("700 root:root", await StatAsync(Path.Combine(rootScope.Path, "var", "lib", "registry-dr")));
            StringAssert.Contains(File.ReadAllText(Path.Combine(configDir, "boot.env")), "\nREGISTRYDR_CONFIG_GROUP=\n");
        }
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task ABadModeTimeoutOrServerUserIsRefused()
    {
        foreach (var (key, value, message) in new[]
                 {
                     ("RDR_DATABASE_MODE", "wal", "RDR_DATABASE_MODE must be logical or continuous (the template's DatabaseMode), not 'wal'"),
                     ("RDR_ARCHIVE_TIMEOUT_SECONDS", "0", "RDR_ARCHIVE_TIMEOUT_SECONDS must be a whole number of seconds from 1 to 3600 (the template's ArchiveTimeoutSeconds), not '0'"),
                     ("RDR_ARCHIVE_TIMEOUT_SECONDS", "3601", "RDR_ARCHIVE_TIMEOUT_SECONDS must be a whole number of seconds from 1 to 3600 (the template's ArchiveTimeoutSeconds), not '3601'"),
                     ("RDR_PG_OS_USER", "no-such-server-user", "continuous mode: there is no group 'no-such-server-user' (RDR_PG_OS_USER, the PostgreSQL server's user, which runs archive_command): install the server first"),
                 })
        {
            using var rootScope = new TempDirectory("rdr-userdata-bad-");
            var values = StackValues(rootScope.Path, allowFirstBoot: "false");
            values["RDR_DATABASE_MODE"] = "continuous";
            values[key] = value;
            var run = await UserDataAsync(values);
            Assert.AreEqual(1, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Output, "ERROR: " + message, key);
        }
    }
}
