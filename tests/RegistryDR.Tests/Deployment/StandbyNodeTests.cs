using System.Diagnostics;
using Amazon.S3.Model;
using Microsoft.Extensions.Logging;
using RegistryDR.Registry;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// A node in the recovery region serves the replica image bucket although its restored registry
/// configuration names the primary's: the primary's registry pushes with skopeo into its bucket,
/// the replication stand-in copies that bucket to the replica (one layer still in flight when the
/// primary region dies), the standby's user-data.sh writes the storage overrides, and the real
/// docker-registry started as the reference node's unit starts it (the restored config.yml plus
/// that EnvironmentFile) serves every image whose blobs arrived; check-registry names exactly the
/// one whose layer did not.
/// </summary>
[TestClass]
public sealed class StandbyNodeTests
{
    public TestContext TestContext { get; set; } = null!;

    private static string BlobKey(string digest) => $"registry/docker/registry/v2/blobs/sha256/{digest[7..9]}/{digest[7..]}/data";

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task TheRecoveryNodeServesTheReplicaBucket_AndCheckRegistryNamesTheImageWhoseLayerDidNotArrive()
    {
        var s3 = await TestEnvironment.S3Async();
        var id = Guid.NewGuid().ToString("N")[..10];
        var (primaryBucket, replicaBucket) = ($"regdr-images-{id}", $"regdr-images-replica-{id}");
        await s3.CreateBucketAsync(primaryBucket);
        await s3.CreateBucketAsync(replicaBucket);
        using var client = s3.CreateClient();
        using var rootScope = new TempDirectory("rdr-standby-");
        var root = rootScope.Path;

        // Region 1: the registry and its images.
        var layouts = Path.Combine(root, "images");
        var web = OciImages.CreateImageLayout(Path.Combine(layouts, "web"), "1.0", seed: 31, layers: 2, layerBytes: 4_000);
        var worker = OciImages.CreateImageLayout(Path.Combine(layouts, "worker"), "2.0", seed: 32, layers: 2, layerBytes: 4_000);
        var lateLayer = OciImages.ImageBlobs(worker, OciImages.ManifestDigest(worker, "2.0")).Layers[1];
        var time = new ManualTimeProvider(new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero));
        var replication = await S3ReplicationStandIn.StartAsync(client, new BucketReplicationRule(primaryBucket, replicaBucket),
            new ReplicationTiming { Seed = 15, LagFor = (key, _) => key == BlobKey(lateLayer) ? TimeSpan.FromHours(10) : null }, time);
        var primaryPort = DockerRegistryProcess.FreePort();
        var primaryConfig = DockerRegistryProcess.WriteConfig(Path.Combine(root, "primary", "config.yml"), primaryPort, s3, primaryBucket);
        string webDigest, workerDigest;
        await using (var primary = await DockerRegistryProcess.StartAsync(primaryConfig, primaryPort))
        {
            webDigest = await Skopeo.PushAsync(web, "1.0", primary.HostPort, "apps/web");
            workerDigest = await Skopeo.PushAsync(worker, "2.0", primary.HostPort, "apps/worker");
        }
        // Replication runs for an hour; the late layer's 10 hours have not passed when region 1 dies.
        await replication.ScanAsync();
        time.Advance(TimeSpan.FromHours(1));
        await replication.DeliverDueAsync();
        var lost = replication.DropInFlight();
        CollectionAssert.AreEqual(new[] { BlobKey(lateLayer) }, lost.Select(p => p.Key).ToList(), "only the late layer is lost");
        // Region 1 is gone: nothing can be read from its bucket any more.
        var primaryKeys = (await client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = primaryBucket })).S3Objects ?? [];
        foreach (var o in primaryKeys) await client.DeleteObjectAsync(primaryBucket, o.Key);

        // Region 2: the standby stack's user data writes the storage overrides (this region, the replica bucket).
        var nodeRoot = Path.Combine(root, "standby-node");
        var values = DeploymentTestSupport.UserDataValues(nodeRoot);
        values["RDR_REGION"] = s3.Region;
        values["RDR_IMAGE_BUCKET"] = replicaBucket;
        values["RDR_IMAGE_PREFIX"] = "registry";
        var run = await DeploymentTestSupport.RunUserDataAsync(values, TestContext.CancellationToken);
        Assert.AreEqual(0, run.ExitCode, run.ToString());
        var storageEnv = Path.Combine(nodeRoot, "etc", "registry-dr", "registry-storage.env");
        Assert.AreEqual(
            $"# Written by user-data.sh for stack registry-prod: the registry's S3 storage on this node.\n" +
            $"REGISTRY_STORAGE_S3_REGION={s3.Region}\nREGISTRY_STORAGE_S3_BUCKET={replicaBucket}\nREGISTRY_STORAGE_S3_ROOTDIRECTORY=/registry\n" +
            "REGISTRY_STORAGE_S3_ENCRYPT=true\nREGISTRY_STORAGE_S3_KEYID=\n",
            await File.ReadAllTextAsync(storageEnv));
        Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(storageEnv));
        // The reference node's unit reads exactly that file.
        StringAssert.Contains(await File.ReadAllTextAsync(Path.Combine(DeploymentTestSupport.BootstrapDirectory, "reference-node.sh")),
            "\nEnvironmentFile=/etc/registry-dr/registry-storage.env\nExecStart=$registry_bin serve $registry_dir/config.yml\n");

        // The restored configuration is the primary's (its bucket, its region).
        var restored = Path.Combine(root, "restored", "config.yml");
        Directory.CreateDirectory(Path.GetDirectoryName(restored)!);
        var restoredText = (await File.ReadAllTextAsync(primaryConfig)).Replace($"region: \"{s3.Region}\"", "region: \"eu-west-1\"", StringComparison.Ordinal);
        StringAssert.Contains(restoredText, $"bucket: \"{primaryBucket}\"");
        await File.WriteAllTextAsync(restored, restoredText);
        File.SetUnixFileMode(restored, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        var environment = ReadEnvironmentFile(storageEnv);
        // Ceph has no SSE: the only override the tests add (the endpoint and keys come from the restored file).
        environment["REGISTRY_STORAGE_S3_ENCRYPT"] = "false";
        var standbyPort = DockerRegistryProcess.FreePort();
        await using (var standby = await StartRegistryAsync(restored, standbyPort, environment))
        {
            await Skopeo.PullByDigestAsync(standby.HostPort, "apps/web", webDigest, Path.Combine(root, "pulled", "web"));
            var report = await new RegistryChecker(new RegistryCheckOptions { RegistryUrl = new Uri(standby.BaseUrl) },
                LoggerFactory.Create(_ => { }).CreateLogger<RegistryChecker>()).CheckAsync(TestContext.CancellationToken);
            Assert.IsTrue(report.Complete, string.Join("; ", report.Errors.Select(e => e.Reason)));
            Assert.AreEqual((2, 2), (report.Repositories, report.Tags));
            var problem = report.Problems.Single();
            Assert.AreEqual(("apps/worker", "2.0"), (problem.Repository, problem.BrokenTags.Single()));
            var missing = problem.MissingBlobs.Single();
            Assert.AreEqual((lateLayer, "layer", workerDigest, "2.0"), (missing.Digest, missing.Kind, missing.ReferencedBy.Single(), missing.Tags.Single()));
            Assert.IsEmpty(problem.UnresolvedTags);
            Assert.IsEmpty(problem.UnresolvedManifests);

            // The agent's check after a failover restore records the same, per repository, for status and the metric.
            var summary = await RegistryDR.Agent.RegistryCheckAfterRestore.RunAsync(new RegistryCheckOptions { RegistryUrl = new Uri(standby.BaseUrl) },
                LoggerFactory.Create(_ => { }), TimeProvider.System, TestContext.CancellationToken);
            Assert.AreEqual((true, 1, (string?)null), (summary.Complete, summary.MissingBlobs, summary.Error));
            CollectionAssert.AreEqual(new[] { $"apps/worker: tags 2.0 cannot be pulled; 1 missing blob(s): {lateLayer} (layer)" }, summary.Repositories.ToList());
        }

        // Control: the same restored configuration without the overrides reads the dead region's bucket and serves nothing.
        var bare = DockerRegistryProcess.FreePort();
        await using (var withoutOverrides = await StartRegistryAsync(restored, bare, new Dictionary<string, string> { ["REGISTRY_STORAGE_S3_REGION"] = s3.Region }))
        {
            var error = await Assert.ThrowsAsync<InvalidOperationException>(
                () => Skopeo.PullByDigestAsync(withoutOverrides.HostPort, "apps/web", webDigest, Path.Combine(root, "pulled", "web-bare")));
            StringAssert.Contains(error.Message, "manifest unknown");
        }
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task AKmsStackNamesItsOwnKey_NeverTheRestoredOne()
    {
        using var rootScope = new TempDirectory("rdr-standby-kms-");
        var values = DeploymentTestSupport.UserDataValues(rootScope.Path);
        values["RDR_REGION"] = "eu-central-1";
        values["RDR_IMAGE_BUCKET"] = "registry-dr-replica-replicaimagebucket-4u5v6w";
        values["RDR_IMAGE_PREFIX"] = "images";
        values["RDR_SSE"] = "Kms";
        values["RDR_KMS_KEY_ID"] = "arn:aws:kms:eu-central-1:123456789012:key/9876abcd-12ab-34cd-56ef-1234567890ab";

        var run = await DeploymentTestSupport.RunUserDataAsync(values, TestContext.CancellationToken);

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        Assert.AreEqual(
            "# Written by user-data.sh for stack registry-prod: the registry's S3 storage on this node.\n" +
            "REGISTRY_STORAGE_S3_REGION=eu-central-1\nREGISTRY_STORAGE_S3_BUCKET=registry-dr-replica-replicaimagebucket-4u5v6w\nREGISTRY_STORAGE_S3_ROOTDIRECTORY=/images\n" +
            "REGISTRY_STORAGE_S3_ENCRYPT=true\nREGISTRY_STORAGE_S3_KEYID=arn:aws:kms:eu-central-1:123456789012:key/9876abcd-12ab-34cd-56ef-1234567890ab\n",
            await File.ReadAllTextAsync(Path.Combine(rootScope.Path, "etc", "registry-dr", "registry-storage.env")));
        StringAssert.Contains(run.Output, "(the registry's storage: s3://registry-dr-replica-replicaimagebucket-4u5v6w/images in eu-central-1)");
    }

    /// <summary>KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blank lines skipped; values unquoted here).</summary>
    private static Dictionary<string, string> ReadEnvironmentFile(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);

    /// <summary>docker-registry serve CONFIG with <paramref name="environment"/> (as the unit gives it), waiting for GET /v2/.</summary>
    private static async Task<DockerRegistryProcess> StartRegistryAsync(string config, int port, IReadOnlyDictionary<string, string> environment)
    {
        var text = await File.ReadAllTextAsync(config);
        var copy = Path.Combine(Path.GetDirectoryName(config)!, $"config-{port}.yml");
        // The address is this test's; everything else is the restored file.
        await File.WriteAllTextAsync(copy, System.Text.RegularExpressions.Regex.Replace(text, @"addr: 127\.0\.0\.1:\d+", $"addr: 127.0.0.1:{port}"));
        File.SetUnixFileMode(copy, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        // docker-registry reads REGISTRY_* from its environment; DockerRegistryProcess clears the
        // inherited ones, so the overrides are passed through a wrapper that sets exactly these.
        var wrapper = Path.Combine(Path.GetDirectoryName(config)!, $"registry-{port}.sh");
        DeploymentTestSupport.WriteExecutable(wrapper, "#!/bin/sh\n" + string.Concat(environment.Select(e => $"export {e.Key}='{e.Value}'\n")) +
                                                       $"exec {DockerRegistryProcess.RegistryPath} \"$@\"\n");
        var registry = DockerRegistryProcess.StartWith(wrapper, copy, port);
        try
        {
            await registry.WaitUntilServingAsync(TimeSpan.FromSeconds(60));
            return registry;
        }
        catch
        {
            Trace.WriteLine(registry.LogTail());
            await registry.DisposeAsync();
            throw;
        }
    }
}
