using RegistryDR.Tests.Aws;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// bootstrap/registry-dr-boot.sh run for real (REGISTRYDR_SYSTEMD=0, everything under a temp
/// directory). The release tarball holds a stand-in for the self-contained registry-dr executable
/// that records its arguments and plays `registry-dr bootstrap` (what it does is chosen by the
/// test: exit codes, a node state file, a crash) and `registry-dr worker` (a long sleep). Failure
/// reports go through Debian's awscli to the AWS stand-ins; downloads come from the Ceph RGW.
/// </summary>
[TestClass]
public sealed class BootScriptTests
{
    private static readonly TimeSpan ScriptTimeout = TimeSpan.FromMinutes(2);
    private const string InstanceId = "i-0123456789abcdef0";
    private const string StackName = "registry-prod";
    private const string GroupName = "registry-prod-registry";

    public TestContext TestContext { get; set; } = null!;

    /// <summary>A temp directory with a release tarball, a config to install and the script's paths.</summary>
    private sealed class Scene : IDisposable
    {
        public string Root { get; } = Directory.CreateTempSubdirectory("rdr-boot-").FullName;
        public string Tarball => Path.Combine(Root, "release", "registry-dr.tar.gz");
        public string Sha256 { get; }
        public string InstallRoot => Path.Combine(Root, "opt", "registry-dr");
        public string ConfigSource => Path.Combine(Root, "source-config.json");
        public string ConfigPath => Path.Combine(Root, "etc", "registry-dr", "registry-dr.json");
        public string RunDir => Path.Combine(Root, "run");
        public string StateDir => Path.Combine(Root, "state");
        public string NodeStateFile => Path.Combine(StateDir, "node-state.json");
        public string LogPath => Path.Combine(Root, "log", "registry-dr-boot.log");
        public string CallsLog => Path.Combine(Root, "registry-dr-calls.log");
        public string PidFile => Path.Combine(RunDir, "worker.pid");
        private string BootstrapBehaviourFile => Path.Combine(Root, "bootstrap-behaviour.sh");

        /// <param name="executable">The release's registry-dr; default: the recording stand-in.</param>
        /// <param name="selfContained">Whether the release's RELEASE file says it is self-contained.</param>
        public Scene(byte[]? executable = null, bool selfContained = true)
        {
            var release = Directory.CreateDirectory(Path.Combine(Root, "release-tree")).FullName;
            var program = Path.Combine(release, "registry-dr");
            if (executable is null)
            {
                DeploymentTestSupport.WriteExecutable(program, $$"""
                    #!/bin/bash
                    # Stand-in for the self-contained registry-dr: records how it was run.
                    printf '%s\n' "$0 $*" >> '{{CallsLog}}'
                    case "$1" in
                      bootstrap) source '{{BootstrapBehaviourFile}}' ;;
                      worker) exec sleep 120 ;;
                      *) exit 64 ;;
                    esac
                    """);
            }
            else
            {
                File.WriteAllBytes(program, executable);
                File.SetUnixFileMode(program, (UnixFileMode)0b111_101_101);
            }
            File.WriteAllText(Path.Combine(release, "RELEASE"), $"registry-dr 0.1.0\nruntime-identifier linux-x64\nself-contained {(selfContained ? "true" : "false")}\n");
            Directory.CreateDirectory(Path.GetDirectoryName(Tarball)!);
            using (var file = File.Create(Tarball))
            using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
                TarFile.CreateFromDirectory(release, gzip, includeBaseDirectory: false);
            Sha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Tarball)));

            File.WriteAllText(ConfigSource, "{ \"Store\": { \"Url\": \"file:///var/backups/registry-dr\" } }\n");
            Bootstrap("exit 0");
        }

        /// <summary>What the stand-in does for `registry-dr bootstrap`: a bash fragment (NODE_STATE is the state file).</summary>
        public void Bootstrap(string behaviour) =>
            File.WriteAllText(BootstrapBehaviourFile, $"NODE_STATE='{NodeStateFile}'\nmkdir -p \"$(dirname \"$NODE_STATE\")\"\n{behaviour}\n");

        public Dictionary<string, string> Environment(string? sha256 = null, string? url = null) => new()
        {
            ["REGISTRYDR_ARTIFACT_URL"] = url ?? "file://" + Tarball,
            ["REGISTRYDR_ARTIFACT_SHA256"] = sha256 ?? Sha256,
            ["REGISTRYDR_INSTALL_ROOT"] = InstallRoot,
            ["REGISTRYDR_CONFIG_SOURCE"] = ConfigSource,
            ["REGISTRYDR_CONFIG_PATH"] = ConfigPath,
            ["REGISTRYDR_LOG"] = LogPath,
            ["REGISTRYDR_SYSTEMD"] = "0",
            ["REGISTRYDR_RUN_DIR"] = RunDir,
            ["REGISTRYDR_STATE_DIR"] = StateDir,
            ["REGISTRYDR_INSTANCE_ID"] = InstanceId,
            ["REGISTRYDR_AWS"] = AwsCli.Path,
        };

        /// <summary>The environment of a node in a stack, reporting to the two stand-ins with Debian's awscli.</summary>
        public Dictionary<string, string> InStack(AwsQueryStandIn autoScaling, AwsQueryStandIn cloudFormation)
        {
            var environment = Environment();
            environment["REGISTRYDR_STACK_NAME"] = StackName;
            environment["REGISTRYDR_AUTOSCALING_GROUP_NAME"] = GroupName;
            environment["REGISTRYDR_AUTOSCALING_ENDPOINT"] = autoScaling.Endpoint;
            environment["REGISTRYDR_CLOUDFORMATION_ENDPOINT"] = cloudFormation.Endpoint;
            environment["AWS_ACCESS_KEY_ID"] = AwsTestKeys.Long.AccessKeyId;
            environment["AWS_SECRET_ACCESS_KEY"] = AwsTestKeys.Long.SecretAccessKey;
            environment["AWS_REGION"] = AwsTestKeys.Region;
            environment["AWS_CONFIG_FILE"] = "/dev/null";
            environment["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null";
            environment["AWS_EC2_METADATA_DISABLED"] = "true";
            environment["AWS_PAGER"] = "";
            return environment;
        }

        public string[] Calls() => File.Exists(CallsLog) ? File.ReadAllLines(CallsLog) : [];

        /// <summary>The path the launcher runs: the current build's own executable.</summary>
        public string Program => Path.Combine(InstallRoot, "current", "registry-dr");

        public int? WorkerPid() =>
            File.Exists(PidFile) && int.TryParse(File.ReadAllText(PidFile).Trim(), out var pid) ? pid : null;

        public void Dispose()
        {
            if (WorkerPid() is { } pid)
            {
                try
                {
                    using var worker = Process.GetProcessById(pid);
                    worker.Kill();
                    worker.WaitForExit(5000);
                }
                catch (ArgumentException) { }
                catch (InvalidOperationException) { }
            }
            Directory.Delete(Root, recursive: true);
        }
    }

    private Task<ScriptRun> BootAsync(Dictionary<string, string> environment) =>
        DeploymentTestSupport.RunAsync("bash", [Path.Combine(DeploymentTestSupport.BootstrapDirectory, "registry-dr-boot.sh")],
            environment, ScriptTimeout, TestContext.CancellationToken);

    private static bool IsAlive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task EveryBootScriptPassesShellcheck()
    {
        Assert.IsTrue(DeploymentTestSupport.IsOnPath("shellcheck"), "shellcheck is not installed: run scripts/install-prerequisites.sh");
        var scripts = Directory.GetFiles(DeploymentTestSupport.BootstrapDirectory, "*.sh").Order().ToList();
        CollectionAssert.AreEqual(new[] { "package-release.sh", "reference-node.sh", "registry-dr-boot.sh", "user-data.sh" }, scripts.Select(Path.GetFileName).ToList());
        scripts.Add(Path.Combine(DeploymentTestSupport.RepoRoot, "scripts", "lint-cloudformation.sh"));

        var run = await DeploymentTestSupport.RunAsync("shellcheck", scripts, null, ScriptTimeout, TestContext.CancellationToken);

        Assert.AreEqual(0, run.ExitCode, run.ToString());
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task ATarballThatDoesNotMatchItsSha256IsRefusedAndNothingIsInstalled()
    {
        using var scene = new Scene();
        var wrong = new string('0', 64);

        var run = await BootAsync(scene.Environment(sha256: wrong));

        Assert.AreNotEqual(0, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, $"SHA-256 mismatch for file://{scene.Tarball}: expected {wrong}, got {scene.Sha256}");
        StringAssert.Contains(run.Output, "nothing was installed");
        Assert.IsEmpty(Directory.Exists(scene.InstallRoot) ? Directory.GetFileSystemEntries(scene.InstallRoot) : [],
            "the install root must stay empty (no build, no current link, no leftover download)");
        Assert.IsFalse(File.Exists(scene.ConfigPath), "the configuration must not be installed");
        Assert.IsEmpty(scene.Calls(), "registry-dr must not run");
        Assert.IsNull(scene.WorkerPid());
        // The refusal is in the log file too, with a timestamp.
        StringAssert.Matches(File.ReadAllText(scene.LogPath), new System.Text.RegularExpressions.Regex(@"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ registry-dr-boot\[\d+\]: ERROR: SHA-256 mismatch"));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AReleaseThatIsNotSelfContainedIsRefused()
    {
        // A framework-dependent build would look for a .NET runtime on the image and might find one of another version.
        using var scene = new Scene(selfContained: false);

        var run = await BootAsync(scene.Environment());

        Assert.AreEqual(1, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, $"file://{scene.Tarball} is not a self-contained release (its RELEASE file does not say 'self-contained true'): build it with bootstrap/package-release.sh");
        Assert.IsFalse(Directory.Exists(Path.Combine(scene.InstallRoot, scene.Sha256)));
        Assert.IsEmpty(scene.Calls());
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task OnlyTheReleasesOwnExecutableRunsEvenWithADotnetOnThePath()
    {
        using var scene = new Scene();
        var tools = Directory.CreateDirectory(Path.Combine(scene.Root, "image-tools")).FullName;
        var dotnetCalls = Path.Combine(scene.Root, "dotnet-calls.log");
        DeploymentTestSupport.WriteExecutable(Path.Combine(tools, "dotnet"), $"#!/bin/bash\necho \"$*\" >> '{dotnetCalls}'\nexit 0\n");
        var environment = scene.Environment();
        environment["PATH"] = $"{tools}:{System.Environment.GetEnvironmentVariable("PATH")}";
        environment["DOTNET_ROOT"] = tools;

        var run = await BootAsync(environment);

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        Assert.IsFalse(File.Exists(dotnetCalls), "the image's dotnet must never run");
        Assert.AreEqual($"#!/bin/bash\n# Written by registry-dr-boot.sh: runs the current RegistryDR build (self-contained).\nexec {scene.Program} \"$@\"\n",
            File.ReadAllText(Path.Combine(scene.InstallRoot, "bin", "registry-dr")));
        CollectionAssert.AreEqual(new[]
        {
            $"{scene.Program} bootstrap --config {scene.ConfigPath}",
            $"{scene.Program} worker --config {scene.ConfigPath}",
        }, scene.Calls(), run.Output);
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AnAgentThatReportedItsOwnFailureIsNotReportedAgain()
    {
        await using var asg = AwsQueryStandIn.Start(AwsQueryStandIn.AutoScaling, AwsTestKeys.Region, AwsTestKeys.Long);
        await using var cfn = AwsQueryStandIn.Start(AwsQueryStandIn.CloudFormation, AwsTestKeys.Region, AwsTestKeys.Long);
        using var scene = new Scene();
        // What BootstrapAgent does on a failure: the state file says Failed, then it reports and exits non-zero.
        scene.Bootstrap("""printf '{\n  "status": "Failed",\n  "reason": "no backup"\n}' > "$NODE_STATE"; exit 3""");

        var run = await BootAsync(scene.InStack(asg, cfn));

        Assert.AreEqual(3, run.ExitCode, run.ToString());
        CollectionAssert.AreEqual(new[] { $"{scene.Program} bootstrap --config {scene.ConfigPath}" }, scene.Calls(), run.Output);
        StringAssert.Contains(run.Output, $"registry-dr bootstrap FAILED with exit status 3; it recorded the failure in {scene.NodeStateFile} and reported ABANDON/FAILURE itself. The worker is NOT started.");
        Assert.AreEqual(0, asg.RequestCount, "the agent reported; the boot script must not report again");
        Assert.AreEqual(0, cfn.RequestCount);
        Assert.IsNull(scene.WorkerPid(), "no worker may be started after a failed bootstrap");
        Assert.IsTrue(File.Exists(Path.Combine(scene.RunDir, "agent-invoked")));
        Assert.IsFalse(File.Exists(Path.Combine(scene.StateDir, "bootstrap-succeeded")));
    }

    /// <summary>Scenes in which the agent never got to report: each must be reported by the boot script, at once.</summary>
    public static IEnumerable<object[]> AgentsThatCannotReport =>
    [
        // Not an executable for this machine at all.
        ["exec format error", 126, "no node state written by this run"],
        // An invalid configuration: the CLI exits 2 before the agent starts.
        ["bad configuration", 2, "no node state written by this run"],
        // A crash in the middle of the restore, after the agent wrote "Restoring".
        ["crash while restoring", 139, "node state Restoring"],
        // A "Failed" left by an earlier run is not this run's report.
        ["stale failed state", 1, "no node state written by this run"],
    ];

    [TestMethod]
    [DynamicData(nameof(AgentsThatCannotReport))]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AnAgentThatCannotReportIsReportedAtOnceAsAbandonAndFailure(string scenario, int exitStatus, string stateNote)
    {
        await using var asg = AwsQueryStandIn.Start(AwsQueryStandIn.AutoScaling, AwsTestKeys.Region, AwsTestKeys.Long);
        await using var cfn = AwsQueryStandIn.Start(AwsQueryStandIn.CloudFormation, AwsTestKeys.Region, AwsTestKeys.Long);
        using var scene = scenario == "exec format error" ? new Scene(executable: [0x7f, 0x45, 0x4c, 0x46, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0]) : new Scene();
        switch (scenario)
        {
            case "bad configuration":
                scene.Bootstrap("echo 'Invalid configuration: Agent:Region is required' >&2; exit 2");
                break;
            case "crash while restoring":
                scene.Bootstrap("""printf '{\n  "status": "Restoring"\n}' > "$NODE_STATE"; kill -SEGV $$""");
                break;
            case "stale failed state":
                Directory.CreateDirectory(scene.StateDir);
                File.WriteAllText(scene.NodeStateFile, "{\n  \"status\": \"Failed\"\n}");
                scene.Bootstrap("exit 1");
                break;
        }

        var run = await BootAsync(scene.InStack(asg, cfn));

        Assert.AreEqual(exitStatus, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, $"registry-dr bootstrap could not start or died before it could report (exit status {exitStatus}, {stateNote}): reporting ABANDON and FAILURE now. The worker is NOT started.");
        var abandon = asg.Calls.Single();
        Assert.AreEqual("CompleteLifecycleAction", abandon.Action);
        CollectionAssert.AreEquivalent(new Dictionary<string, string>
        {
            ["Action"] = "CompleteLifecycleAction", ["Version"] = "2011-01-01", ["AutoScalingGroupName"] = GroupName,
            ["LifecycleHookName"] = "registry-dr-launch", ["InstanceId"] = InstanceId, ["LifecycleActionResult"] = "ABANDON",
        }, abandon.Parameters.ToDictionary());
        var signal = cfn.Calls.Single();
        CollectionAssert.AreEquivalent(new Dictionary<string, string>
        {
            ["Action"] = "SignalResource", ["Version"] = "2010-05-15", ["StackName"] = StackName,
            ["LogicalResourceId"] = "RegistryGroup", ["UniqueId"] = InstanceId, ["Status"] = "FAILURE",
        }, signal.Parameters.ToDictionary());
        StringAssert.Contains(run.Output, $"reported ABANDON for lifecycle hook registry-dr-launch of {GroupName}");
        StringAssert.Contains(run.Output, $"reported FAILURE for RegistryGroup of stack {StackName}");
        Assert.IsNull(scene.WorkerPid(), "no worker may be started after a failed bootstrap");
        Assert.IsFalse(File.Exists(Path.Combine(scene.StateDir, "bootstrap-succeeded")));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AReportThatIsThrottledIsRetriedAndThenAccepted()
    {
        await using var asg = AwsQueryStandIn.Start(AwsQueryStandIn.AutoScaling, AwsTestKeys.Region, AwsTestKeys.Long);
        await using var cfn = AwsQueryStandIn.Start(AwsQueryStandIn.CloudFormation, AwsTestKeys.Region, AwsTestKeys.Long);
        using var scene = new Scene();
        scene.Bootstrap("exit 2");
        asg.FailNext(1, InjectedFailure.ServiceUnavailable);
        cfn.FailNext(2, InjectedFailure.Throttling);

        var run = await BootAsync(scene.InStack(asg, cfn));

        Assert.AreEqual(2, run.ExitCode, run.ToString());
        Assert.AreEqual((2, 1), (asg.RequestCount, asg.Calls.Count), string.Join("; ", asg.Rejections));
        Assert.AreEqual((3, 1), (cfn.RequestCount, cfn.Calls.Count), string.Join("; ", cfn.Rejections));
        Assert.AreEqual("FAILURE", cfn.Calls.Single().Parameters["Status"]);
        StringAssert.Contains(run.Output, $"reported FAILURE for RegistryGroup of stack {StackName}");
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AReportThatCannotGetThroughIsAWarningAndTheFailureStands()
    {
        await using var asg = AwsQueryStandIn.Start(AwsQueryStandIn.AutoScaling, AwsTestKeys.Region, AwsTestKeys.Long);
        await using var cfn = AwsQueryStandIn.Start(AwsQueryStandIn.CloudFormation, AwsTestKeys.Region, AwsTestKeys.Long);
        using var scene = new Scene();
        scene.Bootstrap("exit 2");
        // More failures than the bounded retries (4 attempts): the report gives up, loudly.
        asg.FailNext(10, InjectedFailure.ServiceUnavailable);

        var run = await BootAsync(scene.InStack(asg, cfn));

        Assert.AreEqual(2, run.ExitCode, run.ToString());
        Assert.AreEqual((4, 0), (asg.RequestCount, asg.Calls.Count));
        StringAssert.Contains(run.Output, $"WARNING: could not report ABANDON for lifecycle hook registry-dr-launch of {GroupName} (exit status 254)");
        // The signal is still sent: one failed report does not stop the other.
        Assert.AreEqual("FAILURE", cfn.Calls.Single().Parameters["Status"]);
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task ASucceedingBootstrapInstallsTheBuildAndConfigThenStartsTheWorker()
    {
        await using var asg = AwsQueryStandIn.Start(AwsQueryStandIn.AutoScaling, AwsTestKeys.Region, AwsTestKeys.Long);
        await using var cfn = AwsQueryStandIn.Start(AwsQueryStandIn.CloudFormation, AwsTestKeys.Region, AwsTestKeys.Long);
        using var scene = new Scene();

        var run = await BootAsync(scene.InStack(asg, cfn));

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        // The pinned build, the current link, the config (0600).
        Assert.IsTrue(File.Exists(Path.Combine(scene.InstallRoot, scene.Sha256, "registry-dr")));
        Assert.AreEqual(scene.Sha256, new FileInfo(Path.Combine(scene.InstallRoot, "current")).LinkTarget);
        Assert.AreEqual(File.ReadAllText(scene.ConfigSource), File.ReadAllText(scene.ConfigPath));
        Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(scene.ConfigPath));
        // bootstrap first, then the worker, both through the current build's own executable.
        CollectionAssert.AreEqual(new[]
        {
            $"{scene.Program} bootstrap --config {scene.ConfigPath}",
            $"{scene.Program} worker --config {scene.ConfigPath}",
        }, scene.Calls(), run.Output);
        var pid = scene.WorkerPid();
        Assert.IsNotNull(pid, "worker.pid was not written");
        Assert.IsTrue(IsAlive(pid.Value), "the worker is not running");
        // The agent reported success itself: the boot script sends nothing.
        Assert.AreEqual((0, 0), (asg.RequestCount, cfn.RequestCount));
        // Every step logged, with timestamps, to stdout and the log file.
        var log = File.ReadAllText(scene.LogPath);
        foreach (var step in new[] { "step 1: SHA-256 verified", "step 2: installed", "step 3: bootstrap succeeded", "step 4: worker running" })
        {
            StringAssert.Contains(run.Output, step);
            StringAssert.Contains(log, step);
        }
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task RunningTwiceWithTheSameArtifactDoesNotDownloadExtractOrRestoreAgain()
    {
        using var scene = new Scene();
        var first = await BootAsync(scene.Environment());
        Assert.AreEqual(0, first.ExitCode, first.ToString());
        var installMarker = Path.Combine(scene.InstallRoot, scene.Sha256, ".registry-dr-install");
        var installedAt = File.ReadAllText(installMarker);
        var worker = scene.WorkerPid();
        // With the source gone, any second download would fail.
        File.Delete(scene.Tarball);

        var second = await BootAsync(scene.Environment());

        Assert.AreEqual(0, second.ExitCode, second.ToString());
        StringAssert.Contains(second.Output, $"build {scene.Sha256} is already installed");
        StringAssert.Contains(second.Output, "nothing to download");
        Assert.DoesNotContain("step 1: downloading", second.Output);
        Assert.AreEqual(installedAt, File.ReadAllText(installMarker), "the build was extracted again");
        Assert.AreEqual(1, Directory.GetDirectories(scene.InstallRoot).Count(d => Path.GetFileName(d).Length == 64));
        // The agent is not run again on a node that already bootstrapped (it would roll the
        // registry back to the last backup), and the running worker is left alone.
        StringAssert.Contains(second.Output, "already bootstrapped");
        StringAssert.Contains(second.Output, $"the worker is already running (pid {worker})");
        CollectionAssert.AreEqual(new[]
        {
            $"{scene.Program} bootstrap --config {scene.ConfigPath}",
            $"{scene.Program} worker --config {scene.ConfigPath}",
        }, scene.Calls(), second.Output);
        Assert.AreEqual(worker, scene.WorkerPid());
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AnS3ArtifactIsDownloadedWithTheAwsCliFromTheS3ServerAndChecked()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "rdr-release-" + Guid.NewGuid().ToString("N")[..12];
        await s3.CreateBucketAsync(bucket, TestContext.CancellationToken);
        using var scene = new Scene();
        using (var client = s3.CreateClient())
            await client.PutObjectAsync(new Amazon.S3.Model.PutObjectRequest { BucketName = bucket, Key = "registry-dr/registry-dr.tar.gz", FilePath = scene.Tarball }, TestContext.CancellationToken);
        var environment = scene.Environment(url: $"s3://{bucket}/registry-dr/registry-dr.tar.gz");
        environment["REGISTRYDR_S3_ENDPOINT"] = s3.Endpoint;
        foreach (var (key, value) in s3.AwsCliEnvironment) environment[key] = value;
        // The local copy is gone: only the S3 server has the release.
        File.Delete(scene.Tarball);

        var run = await BootAsync(environment);

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, $"step 1: downloading s3://{bucket}/registry-dr/registry-dr.tar.gz");
        StringAssert.Contains(run.Output, $"step 1: SHA-256 verified ({scene.Sha256})");
        Assert.IsTrue(File.Exists(Path.Combine(scene.InstallRoot, scene.Sha256, "registry-dr")));

        // A key that is not there: the download fails, nothing is installed.
        using var other = new Scene();
        var missing = other.Environment(url: $"s3://{bucket}/registry-dr/no-such-release.tar.gz");
        missing["REGISTRYDR_S3_ENDPOINT"] = s3.Endpoint;
        foreach (var (key, value) in s3.AwsCliEnvironment) missing[key] = value;
        var refused = await BootAsync(missing);
        Assert.AreEqual(1, refused.ExitCode, refused.ToString());
        StringAssert.Contains(refused.Output, $"ERROR: download of s3://{bucket}/registry-dr/no-such-release.tar.gz failed");
        Assert.IsFalse(Directory.Exists(Path.Combine(other.InstallRoot, other.Sha256)));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task MissingOrMalformedInputsAreRefusedBeforeAnythingHappens()
    {
        using var scene = new Scene();
        var noSha = scene.Environment();
        noSha.Remove("REGISTRYDR_ARTIFACT_SHA256");
        var badUrl = scene.Environment(url: "https://example.invalid/registry-dr.tar.gz");

        var withoutSha = await BootAsync(noSha);
        var withBadUrl = await BootAsync(badUrl);

        Assert.AreEqual(2, withoutSha.ExitCode, withoutSha.ToString());
        StringAssert.Contains(withoutSha.Output, "REGISTRYDR_ARTIFACT_SHA256 is not set");
        Assert.AreEqual(2, withBadUrl.ExitCode, withBadUrl.ToString());
        StringAssert.Contains(withBadUrl.Output, "is neither s3://bucket/key nor file:///absolute/path");
        Assert.IsFalse(Directory.Exists(scene.InstallRoot));
        Assert.IsEmpty(scene.Calls());
    }

    private async Task<string> StatAsync(string path)
    {
        var run = await DeploymentTestSupport.RunAsync("stat", ["-c", "%a %U:%G", path], null, TimeSpan.FromSeconds(30), TestContext.CancellationToken);
        Assert.AreEqual(0, run.ExitCode, run.ToString());
        return run.Output.Trim();
    }

    /// <summary>
    /// Continuous mode (REGISTRYDR_CONFIG_GROUP=postgres, from user-data.sh): PostgreSQL's
    /// archive_command, registry-dr wal-push as postgres, must read the configuration; nothing else
    /// in its directory becomes readable, and a second boot keeps it so.
    /// </summary>
    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AContinuousNodesConfigurationIsReadableByTheServersGroup_AndStaysSo()
    {
        using var scene = new Scene();
        File.SetUnixFileMode(scene.Root, (UnixFileMode)0b111_101_101);
        var configDir = Path.GetDirectoryName(scene.ConfigPath)!;
        Directory.CreateDirectory(configDir);
        var password = Path.Combine(configDir, "db-password");
        File.WriteAllText(password, "s3cret\n");
        File.SetUnixFileMode(password, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var environment = scene.Environment();
        environment["REGISTRYDR_CONFIG_GROUP"] = "postgres";

        foreach (var attempt in new[] { "first boot", "second boot" })
        {
            var run = await BootAsync(environment);

            Assert.AreEqual(0, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Output, attempt == "first boot"
                ? $"step 2: installed {scene.ConfigSource} as {scene.ConfigPath} (mode 0640, group postgres)"
                : $"step 2: {scene.ConfigPath} is already up to date (mode 0640)");
            Assert.AreEqual("640 root:postgres", await StatAsync(scene.ConfigPath), attempt);
            Assert.AreEqual("710 root:postgres", await StatAsync(configDir), attempt);
            var read = await DeploymentTestSupport.RunAsync("runuser", ["-u", "postgres", "--", "cat", scene.ConfigPath], null, TimeSpan.FromSeconds(30), TestContext.CancellationToken);
            Assert.AreEqual((0, File.ReadAllText(scene.ConfigSource)), (read.ExitCode, read.Output), attempt);
            var secret = await DeploymentTestSupport.RunAsync("runuser", ["-u", "postgres", "--", "cat", password], null, TimeSpan.FromSeconds(30), TestContext.CancellationToken);
            Assert.AreEqual(1, secret.ExitCode, secret.ToString());
            StringAssert.Contains(secret.Output, "Permission denied");
            // A boot that finds the file group-less again (a hand edit, a restore) puts the group back.
            File.SetUnixFileMode(scene.ConfigPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        // A logical node (no group): root only, as before.
        using var logical = new Scene();
        var plain = await BootAsync(logical.Environment());
        Assert.AreEqual(0, plain.ExitCode, plain.ToString());
        Assert.AreEqual("600 root:root", await StatAsync(logical.ConfigPath));
        Assert.AreEqual("700 root:root", await StatAsync(Path.GetDirectoryName(logical.ConfigPath)!));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AConfigGroupThatDoesNotExistIsRefusedBeforeAnythingHappens()
    {
        using var scene = new Scene();
        var environment = scene.Environment();
        environment["REGISTRYDR_CONFIG_GROUP"] = "no-such-server-group";

        var run = await BootAsync(environment);

        Assert.AreEqual(2, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, "ERROR: REGISTRYDR_CONFIG_GROUP 'no-such-server-group' is not a group on this node (the PostgreSQL server's group, for continuous mode)");
        Assert.IsFalse(Directory.Exists(scene.InstallRoot));
        Assert.IsFalse(File.Exists(scene.ConfigPath));
        Assert.IsEmpty(scene.Calls());
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task TheSystemdUnitsVerify()
    {
        // Installed by scripts/install-prerequisites.sh (Debian's systemd): missing is a failure, not a skip.
        if (!DeploymentTestSupport.IsOnPath("systemd-analyze")) Assert.Fail("systemd-analyze is not installed: run scripts/install-prerequisites.sh.");
        using var directoryScope = new TempDirectory("rdr-units-");
        var directory = directoryScope.Path;
        var units = new[] { "registry-dr-bootstrap.service", "registry-dr-worker.service" }.Select(unit =>
        {
            var copy = Path.Combine(directory, unit);
            File.Copy(Path.Combine(DeploymentTestSupport.BootstrapDirectory, unit), copy);
            return copy;
        }).ToList();

        var run = await DeploymentTestSupport.RunAsync("systemd-analyze", ["verify", "--man=no", .. units], null, ScriptTimeout, TestContext.CancellationToken);

        // The only complaint allowed here: the programs live under /opt/registry-dr on a node, not on this machine.
        var problems = run.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(line => !line.Contains("is not executable: No such file or directory", StringComparison.Ordinal))
            .ToList();
        Assert.IsEmpty(problems, run.ToString());
    }
}
