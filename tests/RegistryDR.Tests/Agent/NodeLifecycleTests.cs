using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using RegistryDR.Agent;
using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Agent;

/// <summary>
/// A stack's whole life, against stand-ins that behave as Auto Scaling and CloudFormation do, with
/// the real <c>registry-dr</c> executable, PostgreSQL, Ceph S3, docker-registry and skopeo:
/// stack create (first boot, signal accepted) → the node dies → the group replaces it on its own
/// (restored, signal refused because the stack is CREATE_COMPLETE, still backing up) → a rolling
/// update (the terminating hook holds the old node for its final backup, which holds a push made
/// just before; the new node restores it and its signal completes the update).
/// </summary>
/// <remarks>
/// A push is an image in docker-registry (its blobs and manifests live in the image bucket, which
/// survives every node) plus the row the registry's metadata database gets for it (which only a
/// backup carries from one node to the next), here a <c>manifests</c> row with the digest.
/// </remarks>
[TestClass]
public sealed class NodeLifecycleTests
{
    private const string Region = "us-east-1";
    private const string StackName = "registry-prod";
    private const string GroupName = "registry-prod-registry";
    private const string DatabaseName = "dtr_lifecycle";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    public TestContext TestContext { get; set; } = null!;

    private sealed record CommandResult(int ExitCode, string Output);

    private sealed class Node(string name, string instanceId, ImdsStandIn imds, string configPath, string stateFile, string root)
    {
        public string Name { get; } = name;
        public string InstanceId { get; } = instanceId;
        public ImdsStandIn Imds { get; } = imds;
        public string ConfigPath { get; } = configPath;
        public string StateFile { get; } = stateFile;
        public string WorkerLog => Path.Combine(root, Name + ".worker.log");
        public Process? Worker { get; set; }
        public NodeState State => NodeStateFile.Read(StateFile) ?? throw new AssertFailedException($"{Name} has no node state file");
    }

    [TestMethod]
    public async Task StackCreate_NodeDies_UnplannedReplacement_RollingUpdate()
    {
        var s3 = await TestEnvironment.S3Async();
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var root = Directory.CreateTempSubdirectory("rdr-life-").FullName;
        var backupBucket = "rdr-life-backups-" + suffix;
        var imageBucket = "rdr-life-images-" + suffix;
        await s3.CreateBucketAsync(backupBucket);
        await s3.CreateBucketAsync(imageBucket);
        var registryPort = DockerRegistryProcess.FreePort();
        var nodeRoot = Path.Combine(root, "node");
        var dtrData = Path.Combine(nodeRoot, "var", "local", "dtr");
        var dtrEtc = Path.Combine(nodeRoot, "usr", "local", "etc", "dtr");
        var registryConfig = Path.Combine(dtrEtc, "config.yml");
        var controlScript = DockerRegistryProcess.WriteControlScript(Path.Combine(root, "bin"), registryConfig);
        await using var cluster = await PostgresCluster.StartAsync();
        var storeOptions = new RegistryDR.Configuration.StoreOptions { Url = $"s3://{backupBucket}/site" };
        storeOptions.ConfigureFor(s3);
        var store = BackupStoreFactory.Create(storeOptions, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey));

        var keys = new StandInCredentials(CephS3Server.TestAccessKey, CephS3Server.TestSecretKey);
        var groups = new AutoScalingModel(TimeProvider.System);
        // The template's hooks: launch (ABANDON on time-out) and terminate (CONTINUE), 1800 s each.
        groups.AddGroup(GroupName,
            new AutoScalingModel.Hook("registry-dr-launch", AutoScalingModel.Launching, TimeSpan.FromSeconds(1800), "ABANDON"),
            new AutoScalingModel.Hook("registry-dr-terminate", AutoScalingModel.Terminating, TimeSpan.FromSeconds(1800), "CONTINUE"));
        var stack = new CloudFormationModel(StackName, Region, TimeProvider.System);
        await using var autoScaling = AwsQueryStandIn.StartAutoScaling(groups, Region, keys);
        await using var cloudFormation = AwsQueryStandIn.StartCloudFormation(stack, Region, keys);
        var nodes = new List<Node>();
        var timings = new List<string>();

        Node NewNode(string name, string instanceId, bool allowFirstBoot)
        {
            var imds = ImdsStandIn.Start(instanceId, Region); // no instance tags in metadata
            imds.TargetLifecycleState = () => groups.TargetLifecycleState(instanceId);
            var passwordFile = Path.Combine(root, name + ".db-password");
            File.WriteAllText(passwordFile, cluster.SuperUserPassword + "\n");
            File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var stateFile = Path.Combine(root, "state-" + name, "node-state.json");
            Directory.CreateDirectory(Path.Combine(root, "staging-" + name));
            var config = new Dictionary<string, object?>
            {
                ["Database"] = new { cluster.Host, cluster.Port, Name = DatabaseName, User = cluster.SuperUser, PasswordFile = passwordFile, cluster.BinDirectory },
                ["Config"] = new { Directories = new[] { dtrData, dtrEtc } },
                ["Registry"] = new
                {
                    StopCommand = new[] { controlScript, "stop" },
                    StartCommand = new[] { controlScript, "start" },
                    HealthUrl = $"http://127.0.0.1:{registryPort}/v2/",
                    HealthTimeout = "00:00:30",
                },
                ["Store"] = new { storeOptions.Url, storeOptions.ServiceUrl, storeOptions.Region, storeOptions.ForcePathStyle, Checksums = storeOptions.Checksums.ToString(), ServerSideEncryption = storeOptions.ServerSideEncryption.ToString(), storeOptions.PartSizeMiB },
                ["Schedule"] = new { Cron = "0/3 * * * * ?", RequireRestoredNode = true, CatchUpOnStart = false, DrillCron = "" },
                ["Restore"] = new { StagingDirectory = Path.Combine(root, "staging-" + name) },
                ["Agent"] = new
                {
                    MetadataEndpoint = imds.Endpoint,
                    AutoScalingEndpoint = autoScaling.Endpoint,
                    CloudFormationEndpoint = cloudFormation.Endpoint,
                    StateFile = stateFile,
                    StackName, // what the template writes from ${AWS::StackName}
                    AllowFirstBoot = allowFirstBoot,
                    TargetLifecycleStatePollInterval = "00:00:01",
                },
                ["Monitoring"] = new { Enabled = false, EmfLogPath = "" },
            };
            var path = Path.Combine(root, name + ".json");
            File.WriteAllText(path, JsonSerializer.Serialize(config));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var node = new Node(name, instanceId, imds, path, stateFile, root);
            nodes.Add(node);
            return node;
        }

        try
        {
            // ---- 1. Stack create: the first node boots an empty registry (AllowFirstBoot) and signals.
            stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
            var node1 = NewNode("node-1", "i-0000000000000001a", allowFirstBoot: true);
            groups.Launch(GroupName, node1.InstanceId);
            // What the node's installer lays down: the registry's config and its empty metadata schema.
            Directory.CreateDirectory(dtrData);
            DockerRegistryProcess.WriteConfig(registryConfig, registryPort, s3, imageBucket);
            await cluster.CreateDatabaseAsync(DatabaseName);
            await RegistrySchema.CreateAndSeedAsync(cluster.ConnectionString(DatabaseName), repositories: 20);

            var watch = Stopwatch.StartNew();
            var boot1 = await RunCliAsync(node1, "bootstrap");
            timings.Add($"stack create, first boot: bootstrap {watch.Elapsed.TotalSeconds:F1} s");
            Assert.AreEqual(0, boot1.ExitCode, boot1.Output);
            StringAssert.Contains(boot1.Output, "Lifecycle action: Completed; CloudFormation signal: Accepted.");
            Assert.AreEqual(NodeStatus.FirstBoot, node1.State.Status);
            Assert.AreEqual("InService", groups.LifecycleState(node1.InstanceId));
            Assert.AreEqual(CloudFormationModel.CreateComplete, stack.Status);
            node1.Worker = StartWorker(node1);

            var imageA = await PushAsync(root, registryPort, "team-a/api", 21);
            var afterA = DateTimeOffset.UtcNow;
            var b1 = await WaitForBackupAsync(store, s => s.Time > afterA.AddSeconds(1), "node 1 backs up the push of image A");

            // ---- 2. The node dies; the group replaces it on its own. CloudFormation waits for nothing.
            await LoseNodeAsync(node1);
            groups.Kill(node1.InstanceId);
            var node2 = NewNode("node-2", "i-0000000000000002b", allowFirstBoot: false);
            groups.Launch(GroupName, node2.InstanceId);
            watch.Restart();
            var boot2 = await RunCliAsync(node2, "bootstrap");
            timings.Add($"unplanned replacement: bootstrap (restore of {b1}) {watch.Elapsed.TotalSeconds:F1} s");
            Assert.AreEqual(0, boot2.ExitCode, boot2.Output);
            StringAssert.Contains(boot2.Output, "Lifecycle action: Completed; CloudFormation signal: NotWaiting.");
            StringAssert.Contains(boot2.Output, $"is in CREATE_COMPLETE state and cannot be signaled");
            Assert.AreEqual(NodeStatus.Restored, node2.State.Status);
            var b1Restored = node2.State.BackupId!;
            Assert.IsGreaterThanOrEqualTo(0, string.CompareOrdinal(b1Restored, b1), "node 2 restored the newest set");
            Assert.AreEqual("InService", groups.LifecycleState(node2.InstanceId));
            Assert.AreEqual(CloudFormationModel.CreateComplete, stack.Status);
            await Skopeo.PullByDigestAsync($"127.0.0.1:{registryPort}", "team-a/api", imageA, Path.Combine(root, "pulled-2a"));
            Assert.AreEqual(1L, await CountManifestAsync(cluster, imageA));
            // Healthy and backing up.
            node2.Worker = StartWorker(node2);
            var b2 = await WaitForBackupAsync(store, s => string.CompareOrdinal(s.BackupId, b1Restored) > 0, "node 2 backs up");

            // ---- 3. A rolling update: a push, then at once the update replaces the node.
            var imageB = await PushAsync(root, registryPort, "team-b/web", 22);
            stack.BeginUpdate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
            watch.Restart();
            groups.Terminate(node2.InstanceId);
            Assert.AreEqual("Terminating:Wait", groups.LifecycleState(node2.InstanceId));
            await WaitUntilAsync(() => groups.LifecycleState(node2.InstanceId) == "Terminated", "node 2's terminating hook is completed", node2);
            timings.Add($"rolling update: termination noticed, final backup, hook completed {watch.Elapsed.TotalSeconds:F1} s");
            var finalLine = File.ReadAllLines(node2.WorkerLog).Single(l => l.Contains("Final backup ", StringComparison.Ordinal) && l.Contains(" complete in ", StringComparison.Ordinal));
            var finalId = finalLine[(finalLine.IndexOf("Final backup ", StringComparison.Ordinal) + "Final backup ".Length)..].Split(' ')[0];
            Assert.IsGreaterThan(0, string.CompareOrdinal(finalId, b2));
            await LoseNodeAsync(node2);

            var node3 = NewNode("node-3", "i-0000000000000003c", allowFirstBoot: false);
            groups.Launch(GroupName, node3.InstanceId);
            watch.Restart();
            var boot3 = await RunCliAsync(node3, "bootstrap");
            timings.Add($"rolling update: new node's bootstrap (restore of the final backup) {watch.Elapsed.TotalSeconds:F1} s");
            Assert.AreEqual(0, boot3.ExitCode, boot3.Output);
            StringAssert.Contains(boot3.Output, "Lifecycle action: Completed; CloudFormation signal: Accepted.");
            Assert.AreEqual(NodeStatus.Restored, node3.State.Status);
            Assert.AreEqual(finalId, node3.State.BackupId, "the new node restores the final backup");
            Assert.AreEqual(CloudFormationModel.UpdateComplete, stack.Status);
            await Skopeo.PullByDigestAsync($"127.0.0.1:{registryPort}", "team-a/api", imageA, Path.Combine(root, "pulled-3a"));
            await Skopeo.PullByDigestAsync($"127.0.0.1:{registryPort}", "team-b/web", imageB, Path.Combine(root, "pulled-3b"));
            Assert.AreEqual(1L, await CountManifestAsync(cluster, imageA));
            Assert.AreEqual(1L, await CountManifestAsync(cluster, imageB), "the push made just before the update is in the final backup");

            // What AWS heard, in order.
            CollectionAssert.AreEqual(new[]
            {
                $"{node1.InstanceId} SUCCESS accepted",
                $"{node2.InstanceId} SUCCESS ValidationError: Stack {stack.StackId} is in CREATE_COMPLETE state and cannot be signaled",
                $"{node3.InstanceId} SUCCESS accepted",
            }, cloudFormation.Calls.Select(c => $"{c.Parameters["UniqueId"]} {c.Parameters["Status"]} {c.Refusal ?? "accepted"}").ToArray());
            CollectionAssert.AreEqual(new[]
            {
                $"{node1.InstanceId} registry-dr-launch CONTINUE",
                $"{node2.InstanceId} registry-dr-launch CONTINUE",
                $"{node2.InstanceId} registry-dr-terminate CONTINUE",
                $"{node3.InstanceId} registry-dr-launch CONTINUE",
            }, groups.FinishedActions.Select(a => $"{a.InstanceId} {a.Hook} {a.Result}{(a.TimedOut ? " (timed out)" : "")}").ToArray());
            Assert.IsTrue(autoScaling.Calls.All(c => c.Accepted), string.Join("; ", autoScaling.Calls.Where(c => !c.Accepted).Select(c => c.Refusal)));
            foreach (var line in timings) TestContext.WriteLine(line);
        }
        finally
        {
            foreach (var node in nodes)
            {
                if (node.Worker is { HasExited: false } worker)
                {
                    worker.Kill(entireProcessTree: true);
                    await worker.WaitForExitAsync();
                }
                await node.Imds.DisposeAsync();
            }
            if (File.Exists(controlScript)) await RunAsync(controlScript, ["stop"], null);
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }

        // Pushes an image with skopeo and records it in the metadata database, as the registry does.
        async Task<string> PushAsync(string dir, int port, string repository, int seed)
        {
            var layout = OciImages.CreateImageLayout(Path.Combine(dir, "layouts", repository.Replace('/', '_')), "v1", seed, layers: 1, layerBytes: 50_000);
            var digest = await Skopeo.PushAsync(layout, "v1", $"127.0.0.1:{port}", repository);
            await using var connection = new NpgsqlConnection(cluster.ConnectionString(DatabaseName));
            await connection.OpenAsync();
            await using var insert = new NpgsqlCommand(
                "INSERT INTO manifests (repository_id, digest, media_type, size_bytes, created_at) " +
                "SELECT min(id), @digest, 'application/vnd.oci.image.manifest.v1+json', 0, now() FROM repositories", connection);
            insert.Parameters.AddWithValue("digest", digest);
            Assert.AreEqual(1, await insert.ExecuteNonQueryAsync());
            return digest;
        }

        // The instance is gone: its worker, its registry, its database and its disks.
        async Task LoseNodeAsync(Node node)
        {
            if (node.Worker is { HasExited: false } worker)
            {
                worker.Kill(entireProcessTree: true);
                await worker.WaitForExitAsync();
            }
            await RunAsync(controlScript, ["stop"], null);
            await cluster.DropDatabaseAsync(DatabaseName);
            Directory.Delete(nodeRoot, recursive: true);
        }
    }

    private static async Task<long> CountManifestAsync(PostgresCluster cluster, string digest)
    {
        await using var connection = new NpgsqlConnection(cluster.ConnectionString(DatabaseName));
        await connection.OpenAsync();
        await using var count = new NpgsqlCommand("SELECT count(*) FROM manifests WHERE digest = @digest", connection);
        count.Parameters.AddWithValue("digest", digest);
        return (long)(await count.ExecuteScalarAsync())!;
    }

    private static async Task<string> WaitForBackupAsync(IBackupStore store, Func<BackupSetInfo, bool> wanted, string what)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            var found = (await new BackupCatalog(store).ListAsync(CancellationToken.None)).FirstOrDefault(s => s.IsComplete && wanted(s));
            if (found is not null) return found.BackupId;
            if (DateTime.UtcNow > deadline) Assert.Fail($"not within {Bound}: {what}");
            await Task.Delay(250);
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what, Node node)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"not within {Bound}: {what}\n{(File.Exists(node.WorkerLog) ? File.ReadAllText(node.WorkerLog) : "")}");
            await Task.Delay(100);
        }
    }

    /// <summary>AWS credentials for the S3 server and the stand-ins in the environment, as on EC2 they come from the instance role.</summary>
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

    private static Task<CommandResult> RunCliAsync(Node node, string command) =>
        RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"), command, "--config", node.ConfigPath], AwsEnvironment());

    private static Process StartWorker(Node node)
    {
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("exec dotnet \"$0\" worker --config \"$1\" >>\"$2\" 2>&1");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        psi.ArgumentList.Add(node.ConfigPath);
        psi.ArgumentList.Add(node.WorkerLog);
        foreach (var (k, v) in AwsEnvironment()) { if (v is null) psi.Environment.Remove(k); else psi.Environment[k] = v; }
        return Process.Start(psi)!;
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
}
