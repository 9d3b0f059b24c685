using RegistryDR.Tests.Infrastructure;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// bootstrap/registry-dr-boot.sh run for real (REGISTRYDR_SYSTEMD=0, everything under a temp
/// directory), with a stand-in for the .NET host (REGISTRYDR_DOTNET) that records its arguments
/// and plays `registry-dr bootstrap` (exit code chosen by the test) and `registry-dr worker`
/// (a long sleep).
/// </summary>
[TestClass]
public sealed class BootScriptTests
{
    private static readonly TimeSpan ScriptTimeout = TimeSpan.FromMinutes(2);

    public TestContext TestContext { get; set; } = null!;

    /// <summary>A temp directory with a release tarball, a fake dotnet, a config to install and the script's paths.</summary>
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
        public string LogPath => Path.Combine(Root, "log", "registry-dr-boot.log");
        public string DotnetArgs => Path.Combine(Root, "dotnet-args.log");
        public string AwsArgs => Path.Combine(Root, "aws-args.log");
        public string PidFile => Path.Combine(RunDir, "worker.pid");
        private string BootstrapExitCodeFile => Path.Combine(Root, "bootstrap-exit-code");

        public Scene()
        {
            var publish = Directory.CreateDirectory(Path.Combine(Root, "publish")).FullName;
            File.WriteAllText(Path.Combine(publish, "registry-dr.dll"), "not really an assembly\n");
            File.WriteAllText(Path.Combine(publish, "registry-dr.runtimeconfig.json"), "{}\n");
            Directory.CreateDirectory(Path.GetDirectoryName(Tarball)!);
            using (var file = File.Create(Tarball))
            using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
                TarFile.CreateFromDirectory(publish, gzip, includeBaseDirectory: false);
            Sha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Tarball)));

            File.WriteAllText(ConfigSource, "{ \"Store\": { \"Url\": \"file:///var/backups/registry-dr\" } }\n");
            BootstrapExitCode = 0;
            DeploymentTestSupport.WriteExecutable(Path.Combine(Root, "fake-dotnet"), $$"""
                #!/bin/bash
                # Stand-in for the .NET host: $1 is registry-dr.dll, $2 the command.
                printf '%s\n' "$*" >> '{{DotnetArgs}}'
                case "$2" in
                  bootstrap) exit "$(cat '{{BootstrapExitCodeFile}}')" ;;
                  worker) exec sleep 120 ;;
                  *) exit 64 ;;
                esac
                """);
            DeploymentTestSupport.WriteExecutable(Path.Combine(Root, "fake-aws"), $$"""
                #!/bin/bash
                # Stand-in for `aws s3 cp --only-show-errors s3://... DEST`: serves the scene's tarball.
                printf '%s\n' "$*" >> '{{AwsArgs}}'
                [[ "$1 $2" == "s3 cp" ]] || exit 2
                cp '{{Tarball}}' "${@: -1}"
                """);
        }

        public int BootstrapExitCode
        {
            set => File.WriteAllText(BootstrapExitCodeFile, value.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

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
            ["REGISTRYDR_INSTANCE_ID"] = "i-0123456789abcdef0",
            ["REGISTRYDR_DOTNET"] = Path.Combine(Root, "fake-dotnet"),
            ["REGISTRYDR_AWS"] = Path.Combine(Root, "fake-aws"),
        };

        public string[] DotnetCalls() => File.Exists(DotnetArgs) ? File.ReadAllLines(DotnetArgs) : [];

        public string Dll => Path.Combine(InstallRoot, "current", "registry-dr.dll");

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
        Assert.IsGreaterThanOrEqualTo(3, scripts.Count);
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
        Assert.IsEmpty(scene.DotnetCalls(), "registry-dr must not run");
        Assert.IsNull(scene.WorkerPid());
        // The refusal is in the log file too, with a timestamp.
        StringAssert.Matches(File.ReadAllText(scene.LogPath), new System.Text.RegularExpressions.Regex(@"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ registry-dr-boot\[\d+\]: ERROR: SHA-256 mismatch"));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AFailingBootstrapExitsNonZeroAndDoesNotStartTheWorker()
    {
        using var scene = new Scene();
        scene.BootstrapExitCode = 3;

        var run = await BootAsync(scene.Environment());

        Assert.AreEqual(3, run.ExitCode, run.ToString());
        CollectionAssert.AreEqual(new[] { $"{scene.Dll} bootstrap --config {scene.ConfigPath}" }, scene.DotnetCalls(), run.Output);
        Assert.IsNull(scene.WorkerPid(), "no worker may be started after a failed bootstrap");
        StringAssert.Contains(run.Output, "The worker is NOT started");
        // The agent was invoked (so user data leaves the failure report to it), and it did not succeed.
        Assert.IsTrue(File.Exists(Path.Combine(scene.RunDir, "agent-invoked")));
        Assert.IsFalse(File.Exists(Path.Combine(scene.StateDir, "bootstrap-succeeded")));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task ASucceedingBootstrapInstallsTheBuildAndConfigThenStartsTheWorker()
    {
        using var scene = new Scene();

        var run = await BootAsync(scene.Environment());

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        // The pinned build, the current link, the config (0600).
        Assert.IsTrue(File.Exists(Path.Combine(scene.InstallRoot, scene.Sha256, "registry-dr.dll")));
        Assert.AreEqual(scene.Sha256, new FileInfo(Path.Combine(scene.InstallRoot, "current")).LinkTarget);
        Assert.AreEqual(File.ReadAllText(scene.ConfigSource), File.ReadAllText(scene.ConfigPath));
        Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(scene.ConfigPath));
        // bootstrap first, then the worker, both through the dll of the current build.
        CollectionAssert.AreEqual(new[]
        {
            $"{scene.Dll} bootstrap --config {scene.ConfigPath}",
            $"{scene.Dll} worker --config {scene.ConfigPath}",
        }, scene.DotnetCalls(), run.Output);
        var pid = scene.WorkerPid();
        Assert.IsNotNull(pid, "worker.pid was not written");
        Assert.IsTrue(IsAlive(pid.Value), "the worker is not running");
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
            $"{scene.Dll} bootstrap --config {scene.ConfigPath}",
            $"{scene.Dll} worker --config {scene.ConfigPath}",
        }, scene.DotnetCalls(), second.Output);
        Assert.AreEqual(worker, scene.WorkerPid());
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AnS3ArtifactIsFetchedWithTheAwsCliAndChecked()
    {
        using var scene = new Scene();

        var run = await BootAsync(scene.Environment(url: "s3://releases/registry-dr/registry-dr.tar.gz"));

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        var call = File.ReadAllLines(scene.AwsArgs).Single();
        StringAssert.StartsWith(call, "s3 cp --only-show-errors s3://releases/registry-dr/registry-dr.tar.gz ");
        Assert.IsTrue(File.Exists(Path.Combine(scene.InstallRoot, scene.Sha256, "registry-dr.dll")));
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
        Assert.IsEmpty(scene.DotnetCalls());
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
