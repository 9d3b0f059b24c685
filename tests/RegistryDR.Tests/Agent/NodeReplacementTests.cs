using System.Diagnostics;
using System.Text.Json;
using Amazon.S3.Model;
using RegistryDR.Agent;
using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Agent;

/// <summary>
/// The product's promise end to end: node A (its own PostgreSQL cluster, a Debian docker-registry
/// whose blobs live in a bucket on the Ceph S3 server, its config directories, the worker) is
/// backed up and then dies. Node B starts from empty directories and an empty PostgreSQL, runs
/// the boot script and the agent against the same stores, and serves node A's registry.
/// </summary>
[TestClass]
public sealed class NodeReplacementTests
{
    private const string InstanceId = "i-0b1e2e3d4c5b6a798";
    private const string StackName = "registry-prod";
    private const string GroupName = "registry-prod-RegistryGroup-1A2B3C";
    private const string Region = "us-east-1";
    private static Site? s_site;

    private static Site Lost => s_site ?? throw new InvalidOperationException("node A was not built");

    [ClassInitialize]
    public static async Task BuildAndLoseNodeAAsync(TestContext context)
    {
        s_site = await Site.BuildNodeAAsync();
        await s_site.LoseNodeAAsync();
        context.WriteLine($"node A: {s_site.BackupIds.Count} complete backups, images {string.Join(", ", s_site.Images.Select(i => i.Digest))}");
    }

    [ClassCleanup]
    public static async Task CleanupAsync()
    {
        if (s_site is not null) await s_site.DisposeAsync();
    }

    [TestMethod]
    public async Task NodeB_RunsTheBootScript_AndServesNodeAsRegistry()
    {
        var site = Lost;
        await using var aws = await StandIns.StartAsync();
        await using var clusterB = await PostgresCluster.StartAsync();
        var config = site.WriteNodeConfig("node-b", clusterB, aws, storePrefix: "site");
        try
        {
            var boot = await site.RunBootScriptAsync(config);
            Assert.AreEqual(0, boot.ExitCode, "boot script failed:\n" + boot.Output);

            // Every image pulls back by digest from node B.
            foreach (var image in site.Images)
                await Skopeo.PullByDigestAsync($"127.0.0.1:{site.RegistryPort}", image.Repository, image.Digest, Path.Combine(site.Root, "pulled", image.Repository.Replace('/', '_')));
            // Its metadata equals node A's, row for row.
            Assert.IsNull(site.SnapshotA!.FirstDifference(await RegistrySchema.SnapshotAsync(clusterB.ConnectionString(site.Database))));
            // AWS heard exactly once, with the right words.
            aws.AssertLifecycleCompletedOnce("CONTINUE");
            aws.AssertSignalledOnce("SUCCESS");
            var state = NodeStateFile.Read(config.StateFile)!;
            Assert.AreEqual(NodeStatus.Restored, state.Status);
            Assert.AreEqual(site.BackupIds[0], state.BackupId, "the newest backup is the one restored");
            // Node B's worker, started by the boot script, takes a new backup.
            var newer = await site.WaitForBackupNewerThanAsync("site", site.BackupIds[0], TimeSpan.FromSeconds(90));
            StringAssert.StartsWith(newer, "2");
        }
        finally
        {
            await site.StopNodeAsync(Path.Combine(site.Root, "run-node-b", "worker.pid"));
        }
    }

    [TestMethod]
    public async Task NewestBackupCorrupt_NodeBRestoresThePreviousOne_AndSaysSo()
    {
        var site = Lost;
        await site.CopyStoreAsync("site", "site-corrupt");
        // Other tests' replacement nodes back up into "site" too, so take the order from the copy itself.
        var sets = (await new BackupCatalog(site.Store("site-corrupt")).ListAsync(CancellationToken.None)).Where(s => s.IsComplete).ToList();
        var (newest, previous) = (sets[0].BackupId, sets[1].BackupId);
        await site.CorruptAsync("site-corrupt", newest, "database.dump");
        await using var aws = await StandIns.StartAsync();
        var cluster = await TestEnvironment.PostgresAsync();
        var config = site.WriteNodeConfig("node-corrupt", cluster, aws, storePrefix: "site-corrupt");
        try
        {
            var run = await site.RunCliAsync(config, "bootstrap");
            Assert.AreEqual(0, run.ExitCode, run.Output);
            StringAssert.Contains(run.Output, $"restored backup {previous}");
            StringAssert.Contains(run.Output, $"Newer backups failed verification and were skipped: {newest}");
            StringAssert.Contains(run.Output, $"Backup {newest} failed verification, falling back");
            StringAssert.Contains(run.Output, "artifact 'database' is corrupt");
            Assert.IsNull(site.SnapshotA!.FirstDifference(await RegistrySchema.SnapshotAsync(cluster.ConnectionString(site.Database))));
            aws.AssertLifecycleCompletedOnce("CONTINUE");
            aws.AssertSignalledOnce("SUCCESS");
        }
        finally
        {
            await site.StopNodeAsync(null);
            await cluster.DropDatabaseAsync(site.Database);
        }
    }

    [TestMethod]
    public async Task EmptyStore_NodeBFailsLoudly_SignalsFailure_AndWritesNoBackup()
    {
        var site = Lost;
        await using var aws = await StandIns.StartAsync();
        var cluster = await TestEnvironment.PostgresAsync();
        var config = site.WriteNodeConfig("node-empty", cluster, aws, storePrefix: "empty-" + Guid.NewGuid().ToString("N")[..6]);
        try
        {
            var run = await site.RunCliAsync(config, "bootstrap");
            Assert.AreEqual(3, run.ExitCode, run.Output);
            // An empty, unmarked store on a replacement node is the wrong store, never one to start empty on.
            StringAssert.Contains(run.Output, $"has no {StoreMarker.Key}: it was never initialised, or it is not the store you meant. Does Store:Url name the right bucket and prefix?");
            StringAssert.Contains(run.Output, "Agent:AllowFirstBoot");
            aws.AssertLifecycleCompletedOnce("ABANDON");
            aws.AssertSignalledOnce("FAILURE");
            Assert.AreEqual(NodeStatus.Failed, NodeStateFile.Read(config.StateFile)!.Status);
            Assert.IsFalse(await DockerRegistryProcess.IsServingAsync(site.RegistryPort), "a node that did not restore must not serve");

            // Whatever starts a backup on this node afterwards, nothing is written.
            var backup = await site.RunCliAsync(config, "backup");
            Assert.AreEqual(1, backup.ExitCode, backup.Output);
            StringAssert.Contains(backup.Output, "must not write backups");
            Assert.IsEmpty(await new BackupCatalog(site.Store(config.StorePrefix)).ListAsync(CancellationToken.None));
        }
        finally
        {
            await site.StopNodeAsync(null);
        }
    }

    [TestMethod]
    public async Task NoMetadataService_IsAClearError()
    {
        var site = Lost;
        await using var aws = await StandIns.StartAsync();
        var cluster = await TestEnvironment.PostgresAsync();
        var config = site.WriteNodeConfig("node-no-imds", cluster, aws, storePrefix: "site", metadataEndpoint: $"http://127.0.0.1:{LoopbackHttpServer.FreePort()}");
        var run = await site.RunCliAsync(config, "bootstrap");
        Assert.AreEqual(1, run.ExitCode, run.Output);
        StringAssert.Contains(run.Output, "IMDSv2");
        StringAssert.Contains(run.Output, "Agent:InstanceId");
        Assert.IsEmpty(aws.AutoScaling.Calls);
        Assert.IsEmpty(aws.CloudFormation.Calls);
        Assert.IsFalse(Directory.Exists(site.DtrData), "nothing was restored");
    }

    /// <summary>
    /// The strict stand-ins for EC2 instance metadata (without instance tags), Auto Scaling (the
    /// group launching node B and waiting on its launch hook) and CloudFormation (a stack create
    /// waiting for node B's signal).
    /// </summary>
    private sealed class StandIns : IAsyncDisposable
    {
        public required ImdsStandIn Imds { get; init; }
        public required AwsQueryStandIn AutoScaling { get; init; }
        public required AwsQueryStandIn CloudFormation { get; init; }
        public required AutoScalingModel Groups { get; init; }
        public required CloudFormationModel Stack { get; init; }

        public static Task<StandIns> StartAsync()
        {
            var credentials = new StandInCredentials(CephS3Server.TestAccessKey, CephS3Server.TestSecretKey);
            var groups = new AutoScalingModel(TimeProvider.System);
            groups.AddGroup(GroupName,
                new AutoScalingModel.Hook("registry-dr-launch", AutoScalingModel.Launching, TimeSpan.FromMinutes(30), "ABANDON"),
                new AutoScalingModel.Hook("registry-dr-terminate", AutoScalingModel.Terminating, TimeSpan.FromMinutes(30), "CONTINUE"));
            groups.Launch(GroupName, InstanceId);
            var stack = new CloudFormationModel(StackName, Region, TimeProvider.System);
            stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromHours(1));
            var imds = ImdsStandIn.Start(InstanceId, Region);
            imds.TargetLifecycleState = () => groups.TargetLifecycleState(InstanceId);
            return Task.FromResult(new StandIns
            {
                Imds = imds,
                AutoScaling = AwsQueryStandIn.StartAutoScaling(groups, Region, credentials),
                CloudFormation = AwsQueryStandIn.StartCloudFormation(stack, Region, credentials),
                Groups = groups,
                Stack = stack,
            });
        }

        public void AssertLifecycleCompletedOnce(string result)
        {
            var calls = AutoScaling.Calls.Where(c => c.Action == "CompleteLifecycleAction").ToList();
            Assert.HasCount(1, calls, "CompleteLifecycleAction must be sent exactly once");
            Assert.IsNull(calls[0].Refusal);
            Assert.AreEqual(result == "CONTINUE" ? "InService" : "Terminated", Groups.LifecycleState(InstanceId));
            var p = calls[0].Parameters;
            Assert.AreEqual(result, p["LifecycleActionResult"]);
            Assert.AreEqual(GroupName, p["AutoScalingGroupName"]);
            Assert.AreEqual("registry-dr-launch", p["LifecycleHookName"]);
            Assert.AreEqual(InstanceId, p["InstanceId"]);
        }

        public void AssertSignalledOnce(string status)
        {
            var calls = CloudFormation.Calls.Where(c => c.Action == "SignalResource").ToList();
            Assert.HasCount(1, calls, "SignalResource must be sent exactly once");
            Assert.IsNull(calls[0].Refusal);
            Assert.AreEqual(status == "SUCCESS" ? CloudFormationModel.CreateComplete : CloudFormationModel.RollbackInProgress, Stack.Status);
            var p = calls[0].Parameters;
            Assert.AreEqual(status, p["Status"]);
            Assert.AreEqual(StackName, p["StackName"]);
            Assert.AreEqual("RegistryGroup", p["LogicalResourceId"]);
            Assert.AreEqual(InstanceId, p["UniqueId"]);
        }

        public async ValueTask DisposeAsync()
        {
            await Imds.DisposeAsync();
            await AutoScaling.DisposeAsync();
            await CloudFormation.DisposeAsync();
        }
    }

    private sealed record NodeConfig(string Path, string StateFile, string StorePrefix, string Name);

    private sealed record Image(string Repository, string Digest);

    private sealed record CommandResult(int ExitCode, string Output);

    /// <summary>Everything that outlives a node: the buckets, the fixed node paths, the registry port.</summary>
    private sealed class Site : IAsyncDisposable
    {
        public required CephS3Server S3 { get; init; }
        public required string Root { get; init; }
        public required string BackupBucket { get; init; }
        public required string ImageBucket { get; init; }
        public required int RegistryPort { get; init; }
        public required string ControlScript { get; init; }
        public string NodeRoot => Path.Combine(Root, "node");
        public string DtrData => Path.Combine(NodeRoot, "var", "local", "dtr");
        public string DtrEtc => Path.Combine(NodeRoot, "usr", "local", "etc", "dtr");
        public string RegistryConfig => Path.Combine(DtrEtc, "config.yml");
        public List<Image> Images { get; } = [];
        public List<string> BackupIds { get; } = [];
        public string Database { get; private set; } = "";
        public DatabaseSnapshot? SnapshotA { get; private set; }
        private PostgresCluster? _clusterA;
        private Process? _workerA;

        public static async Task<Site> BuildNodeAAsync()
        {
            var s3 = await TestEnvironment.S3Async();
            var suffix = Guid.NewGuid().ToString("N")[..8];
            var root = Directory.CreateTempSubdirectory("rdr-e2e-").FullName;
            var site = new Site
            {
                S3 = s3,
                Root = root,
                BackupBucket = "rdr-e2e-backups-" + suffix,
                ImageBucket = "rdr-e2e-images-" + suffix,
                RegistryPort = DockerRegistryProcess.FreePort(),
                ControlScript = Path.Combine(root, "bin", "registry-ctl"),
            };
            await s3.CreateBucketAsync(site.BackupBucket);
            // `registry-dr init-store` on the first node's store (every command refuses a store without its marker).
            await StoreMarker.WriteAsync(site.Store("site"), "init-store", TimeProvider.System, CancellationToken.None);
            await s3.CreateBucketAsync(site.ImageBucket);

            // Node A's config directories: DTR-like files plus the registry's own config.
            Directory.CreateDirectory(Path.Combine(site.DtrData, "ssl"));
            Directory.CreateDirectory(site.DtrEtc);
            File.WriteAllText(Path.Combine(site.DtrData, "license.json"), "{\"key_id\":\"e2e\"}\n");
            File.WriteAllText(Path.Combine(site.DtrData, "ssl", "server.key"), "-----BEGIN PRIVATE KEY-----\ne2e\n-----END PRIVATE KEY-----\n");
            File.SetUnixFileMode(Path.Combine(site.DtrData, "ssl", "server.key"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
            DockerRegistryProcess.WriteConfig(site.RegistryConfig, site.RegistryPort, s3, site.ImageBucket);
            Directory.CreateDirectory(Path.Combine(root, "bin"));
            var script = DockerRegistryProcess.WriteControlScript(Path.Combine(root, "bin"), site.RegistryConfig);
            Assert.AreEqual(site.ControlScript, script);

            site._clusterA = await PostgresCluster.StartAsync();
            site.Database = await site._clusterA.CreateDatabaseAsync();
            await RegistrySchema.CreateAndSeedAsync(site._clusterA.ConnectionString(site.Database));

            await RunAsync(site.ControlScript, ["start"], null);
            var layouts = Path.Combine(root, "layouts");
            foreach (var (repo, seed) in new[] { ("team-a/api", 11), ("team-b/web", 12) })
            {
                var layout = OciImages.CreateImageLayout(Path.Combine(layouts, repo.Replace('/', '_')), "v1", seed);
                site.Images.Add(new Image(repo, await Skopeo.PushAsync(layout, "v1", $"127.0.0.1:{site.RegistryPort}", repo)));
            }

            // Node A's worker takes backups every two seconds.
            var configA = site.WriteNodeConfig("node-a", site._clusterA, null, storePrefix: "site");
            site._workerA = StartCli(configA, "worker");
            var deadline = DateTime.UtcNow.AddSeconds(90);
            IReadOnlyList<BackupSetInfo> sets;
            while ((sets = await new BackupCatalog(site.Store("site")).ListAsync(CancellationToken.None)).Count(s => s.IsComplete) < 2)
            {
                if (DateTime.UtcNow > deadline || site._workerA.HasExited)
                    Assert.Fail("node A's worker did not take two backups: " + File.ReadAllText(Path.Combine(root, "node-a.worker.log")));
                await Task.Delay(500);
            }
            site.SnapshotA = await RegistrySchema.SnapshotAsync(site._clusterA.ConnectionString(site.Database));
            return site;
        }

        /// <summary>Node A dies: its worker is killed mid-whatever, its registry and database stop, its disks are gone.</summary>
        public async Task LoseNodeAAsync()
        {
            _workerA!.Kill(entireProcessTree: true);
            await _workerA.WaitForExitAsync();
            await RunAsync(ControlScript, ["stop"], null);
            await _clusterA!.DisposeAsync();
            Directory.Delete(NodeRoot, recursive: true);
            // A request the worker had fully sent before it was killed (a manifest PUT) is still
            // completed by the server; let it land before taking the list the tests rely on.
            await Task.Delay(TimeSpan.FromSeconds(2));
            var sets = await new BackupCatalog(Store("site")).ListAsync(CancellationToken.None);
            BackupIds.AddRange(sets.Where(s => s.IsComplete).Select(s => s.BackupId));
        }

        public IBackupStore Store(string prefix) => BackupStoreFactory.Create(StoreOptions(prefix), new Amazon.Runtime.BasicAWSCredentials(S3.AccessKey, S3.SecretKey));

        private RegistryDR.Configuration.StoreOptions StoreOptions(string prefix)
        {
            var store = new RegistryDR.Configuration.StoreOptions { Url = $"s3://{BackupBucket}/{prefix}" };
            store.ConfigureFor(S3);
            return store;
        }

        public NodeConfig WriteNodeConfig(string name, PostgresCluster cluster, StandIns? aws, string storePrefix, string? metadataEndpoint = null)
        {
            var passwordFile = Path.Combine(Root, name + ".db-password");
            File.WriteAllText(passwordFile, cluster.SuperUserPassword + "\n");
            File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var stateFile = Path.Combine(Root, "state-" + name, "node-state.json");
            var store = StoreOptions(storePrefix);
            var config = new Dictionary<string, object?>
            {
                ["Database"] = new { cluster.Host, cluster.Port, Name = Database, User = cluster.SuperUser, PasswordFile = passwordFile, cluster.BinDirectory },
                ["Config"] = new { Directories = new[] { DtrData, DtrEtc } },
                ["Registry"] = new
                {
                    StopCommand = new[] { ControlScript, "stop" },
                    StartCommand = new[] { ControlScript, "start" },
                    HealthUrl = $"http://127.0.0.1:{RegistryPort}/v2/",
                    HealthTimeout = "00:00:30",
                },
                ["Store"] = new { store.Url, store.ServiceUrl, store.Region, store.ForcePathStyle, Checksums = store.Checksums.ToString(), ServerSideEncryption = store.ServerSideEncryption.ToString(), store.PartSizeMiB },
                ["Schedule"] = new { Cron = aws is null ? "0/2 * * * * ?" : "0/3 * * * * ?", RequireRestoredNode = aws is not null, CatchUpOnStart = false },
                ["Restore"] = new { StagingDirectory = Path.Combine(Root, "staging-" + name) },
                ["Agent"] = new { StateFile = stateFile },
                // Keep the test's nodes off the machine's real log directory and monitoring port.
                ["Monitoring"] = new { Enabled = false, EmfLogPath = "" },
            };
            if (aws is not null)
                config["Agent"] = new
                {
                    MetadataEndpoint = metadataEndpoint ?? aws.Imds.Endpoint,
                    AutoScalingEndpoint = aws.AutoScaling.Endpoint,
                    CloudFormationEndpoint = aws.CloudFormation.Endpoint,
                    StateFile = stateFile,
                    // As the template writes it from ${AWS::StackName}: instance tags are not in metadata.
                    StackName,
                    TargetLifecycleStatePollInterval = "00:00:01",
                };
            Directory.CreateDirectory(Path.Combine(Root, "staging-" + name));
            var path = Path.Combine(Root, name + ".json");
            File.WriteAllText(path, JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));
            return new NodeConfig(path, stateFile, storePrefix, name);
        }

        /// <summary>AWS credentials for the S3 server and the stand-ins travel in the environment, as on EC2 they come from the instance role.</summary>
        private static Dictionary<string, string?> AwsEnvironment() => new()
        {
            ["AWS_ACCESS_KEY_ID"] = CephS3Server.TestAccessKey,
            ["AWS_SECRET_ACCESS_KEY"] = CephS3Server.TestSecretKey,
            ["AWS_REGION"] = Region,
            ["AWS_EC2_METADATA_DISABLED"] = "true",
            ["AWS_PROFILE"] = null,
            ["AWS_CA_BUNDLE"] = null,
            ["AWS_SESSION_TOKEN"] = null,
            ["AWS_CONFIG_FILE"] = "/dev/null",
            ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null",
        };

        private static Process StartCli(NodeConfig config, string command)
        {
            var log = Path.Combine(Path.GetDirectoryName(config.Path)!, config.Name + "." + command + ".log");
            var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add("exec dotnet \"$0\" \"$1\" --config \"$2\" >>\"$3\" 2>&1");
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
            psi.ArgumentList.Add(command);
            psi.ArgumentList.Add(config.Path);
            psi.ArgumentList.Add(log);
            foreach (var (k, v) in AwsEnvironment()) { if (v is null) psi.Environment.Remove(k); else psi.Environment[k] = v; }
            return Process.Start(psi)!;
        }

        public Task<CommandResult> RunCliAsync(NodeConfig config, string command) =>
            RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"), command, "--config", config.Path], AwsEnvironment());

        public async Task<CommandResult> RunBootScriptAsync(NodeConfig config)
        {
            // The release artifact: this build of registry-dr, as a tarball with its SHA-256. The boot
            // script installs only a release whose RELEASE file says it is self-contained; this test
            // build is not (its registry-dr apphost runs on this machine's .NET), so it is labelled as
            // package-release.sh labels the real one, which Deployment/ReleasePackageTests builds and starts.
            var artifact = Path.Combine(Root, "registry-dr.tar.gz");
            if (!File.Exists(artifact))
            {
                var release = Directory.CreateDirectory(Path.Combine(Root, "release")).FullName;
                await RunAsync("cp", ["-a", AppContext.BaseDirectory.TrimEnd('/') + "/.", release + "/"], null);
                File.WriteAllText(Path.Combine(release, "RELEASE"), "registry-dr test-build\nruntime-identifier linux-x64\nself-contained true\n");
                await RunAsync("tar", ["-czf", artifact, "-C", release, "."], null);
            }
            var env = AwsEnvironment();
            env["REGISTRYDR_ARTIFACT_URL"] = "file://" + artifact;
            env["REGISTRYDR_ARTIFACT_SHA256"] = TestNode.Sha256(artifact);
            env["REGISTRYDR_INSTALL_ROOT"] = Path.Combine(Root, "opt-" + config.Name);
            env["REGISTRYDR_CONFIG_SOURCE"] = config.Path;
            env["REGISTRYDR_CONFIG_PATH"] = Path.Combine(Root, "etc-" + config.Name, "registry-dr.json");
            env["REGISTRYDR_LOG"] = Path.Combine(Root, config.Name + ".boot.log");
            env["REGISTRYDR_SYSTEMD"] = "0";
            env["REGISTRYDR_RUN_DIR"] = Path.Combine(Root, "run-" + config.Name);
            env["REGISTRYDR_STATE_DIR"] = Path.Combine(Root, "var-lib-" + config.Name);
            env["REGISTRYDR_INSTANCE_ID"] = InstanceId;
            env["REGISTRYDR_NODE_STATE_FILE"] = config.StateFile;
            return await RunAsync("bash", [Path.Combine(RepoRoot(), "bootstrap", "registry-dr-boot.sh")], env);
        }

        public async Task<string> WaitForBackupNewerThanAsync(string prefix, string backupId, TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (true)
            {
                var sets = await new BackupCatalog(Store(prefix)).ListAsync(CancellationToken.None);
                var newer = sets.FirstOrDefault(s => s.IsComplete && string.CompareOrdinal(s.BackupId, backupId) > 0);
                if (newer is not null) return newer.BackupId;
                if (DateTime.UtcNow > deadline) Assert.Fail($"no backup newer than {backupId} within {timeout}");
                await Task.Delay(500);
            }
        }

        public async Task CopyStoreAsync(string fromPrefix, string toPrefix)
        {
            using var s3 = S3.CreateClient();
            var listing = await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = BackupBucket, Prefix = fromPrefix + "/" });
            foreach (var o in listing.S3Objects ?? [])
                await s3.CopyObjectAsync(BackupBucket, o.Key, BackupBucket, toPrefix + o.Key[fromPrefix.Length..]);
        }

        public async Task CorruptAsync(string prefix, string backupId, string file)
        {
            using var s3 = S3.CreateClient();
            var key = $"{prefix}/backups/{backupId}/{file}";
            byte[] bytes;
            using (var response = await s3.GetObjectAsync(BackupBucket, key))
            using (var buffer = new MemoryStream())
            {
                await response.ResponseStream.CopyToAsync(buffer);
                bytes = buffer.ToArray();
            }
            bytes[bytes.Length / 2] ^= 0x5a;
            await s3.PutObjectAsync(new PutObjectRequest { BucketName = BackupBucket, Key = key, InputStream = new MemoryStream(bytes) });
            using var check = await s3.GetObjectAsync(BackupBucket, key);
            using var reread = new MemoryStream();
            await check.ResponseStream.CopyToAsync(reread);
            CollectionAssert.AreEqual(bytes, reread.ToArray(), $"{key} was not overwritten");
        }

        /// <summary>After a test: the node's worker and registry stop and its config directories go, ready for the next node.</summary>
        public async Task StopNodeAsync(string? workerPidFile)
        {
            if (workerPidFile is not null && File.Exists(workerPidFile) && int.TryParse(File.ReadAllText(workerPidFile).Trim(), out var pid))
            {
                try { using var p = Process.GetProcessById(pid); p.Kill(entireProcessTree: true); await p.WaitForExitAsync(); }
                catch (ArgumentException) { }
            }
            if (File.Exists(ControlScript)) await RunAsync(ControlScript, ["stop"], null);
            if (Directory.Exists(NodeRoot)) Directory.Delete(NodeRoot, recursive: true);
        }

        private static async Task<CommandResult> RunAsync(string file, IReadOnlyList<string> args, IReadOnlyDictionary<string, string?>? env)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            foreach (var (k, v) in env ?? new Dictionary<string, string?>()) { if (v is null) psi.Environment.Remove(k); else psi.Environment[k] = v; }
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));
            return new CommandResult(p.ExitCode, await stdout + await stderr);
        }

        private static string RepoRoot()
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "RegistryDR.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("RegistryDR.sln not found above " + AppContext.BaseDirectory);
        }

        public async ValueTask DisposeAsync()
        {
            try { if (_workerA is { HasExited: false }) _workerA.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            await StopNodeAsync(null);
            if (_clusterA is not null) await _clusterA.DisposeAsync();
            try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
        }
    }
}
