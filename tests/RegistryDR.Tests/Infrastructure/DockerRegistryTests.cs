using System.Diagnostics;
using RegistryDR.Processes;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// Checks the registry test harness (docker-registry on Ceph S3, OCI images built on disk,
/// skopeo, the registry-ctl script) so an end-to-end disaster-recovery test that fails can be
/// trusted to point at RegistryDR and not at the harness.
/// </summary>
[TestClass]
public sealed class DockerRegistryTests
{
    private readonly TestContext _testContext;

    public DockerRegistryTests(TestContext testContext) => _testContext = testContext;

    [TestMethod]
    public void Oci_images_are_deterministic_per_seed_and_differ_between_seeds()
    {
        using var rootScope = new TempDirectory("registrydr-oci-");
        var root = rootScope.Path;
        var first = OciImages.CreateImageLayout(Path.Combine(root, "a"), "v1", seed: 1, layers: 2, layerBytes: 10_000);
        var again = OciImages.CreateImageLayout(Path.Combine(root, "b"), "v1", seed: 1, layers: 2, layerBytes: 10_000);
        var other = OciImages.CreateImageLayout(Path.Combine(root, "c"), "v1", seed: 2, layers: 2, layerBytes: 10_000);

        Assert.AreEqual(OciImages.ManifestDigest(first, "v1"), OciImages.ManifestDigest(again, "v1"));
        Assert.AreNotEqual(OciImages.ManifestDigest(first, "v1"), OciImages.ManifestDigest(other, "v1"));
        // Manifest, config and two layers, none shared between the seeds.
        var firstBlobs = Directory.GetFiles(Path.Combine(first, "blobs", "sha256")).Select(Path.GetFileName).ToHashSet();
        var otherBlobs = Directory.GetFiles(Path.Combine(other, "blobs", "sha256")).Select(Path.GetFileName).ToHashSet();
        Assert.HasCount(4, firstBlobs);
        Assert.IsFalse(firstBlobs.Overlaps(otherBlobs), "different seeds must not share blobs");

        // A second tag in the same layout keeps the first.
        OciImages.CreateImageLayout(first, "v2", seed: 3, layers: 1, layerBytes: 10_000);
        Assert.AreEqual(OciImages.ManifestDigest(again, "v1"), OciImages.ManifestDigest(first, "v1"));
        Assert.AreNotEqual(OciImages.ManifestDigest(first, "v1"), OciImages.ManifestDigest(first, "v2"));
    }

    [TestMethod]
    [Timeout(180_000, CooperativeCancellation = true)]
    public async Task A_replacement_node_on_the_same_bucket_serves_the_images_pushed_to_the_first()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "regdr-registry-" + Guid.NewGuid().ToString("N")[..12];
        await s3.CreateBucketAsync(bucket);
        var root = Directory.CreateTempSubdirectory("registrydr-registry-").FullName;
        DockerRegistryProcess? first = null;
        DockerRegistryProcess? second = null;
        try
        {
            var layouts = Path.Combine(root, "images");
            var stopwatch = Stopwatch.StartNew();
            var app = OciImages.CreateImageLayout(Path.Combine(layouts, "app"), "1.0", seed: 101);
            var tools = OciImages.CreateImageLayout(Path.Combine(layouts, "tools"), "2.3", seed: 202, layers: 3);
            _testContext.WriteLine($"build 2 OCI layouts: {stopwatch.ElapsedMilliseconds} ms");

            // The original node.
            var port1 = DockerRegistryProcess.FreePort();
            var config1 = DockerRegistryProcess.WriteConfig(Path.Combine(root, "node1", "config.yml"), port1, s3, bucket);
            stopwatch.Restart();
            first = await DockerRegistryProcess.StartAsync(config1, port1);
            _testContext.WriteLine($"start node 1: {stopwatch.ElapsedMilliseconds} ms ({first})");
            // Pid is the registry itself (sh exec'd it), and it runs without AWS_CA_BUNDLE (2.8.2 panics on it).
            Assert.AreEqual(DockerRegistryProcess.RegistryPath, new FileInfo($"/proc/{first.Pid}/exe").LinkTarget);
            Assert.DoesNotContain("AWS_CA_BUNDLE=", await File.ReadAllTextAsync($"/proc/{first.Pid}/environ"));

            // Both at once: each blob costs the registry ~15 S3 requests, most of the push time.
            stopwatch.Restart();
            var pushApp = TimedAsync(() => Skopeo.PushAsync(app, "1.0", first.HostPort, "team/app"));
            var pushTools = TimedAsync(() => Skopeo.PushAsync(tools, "2.3", first.HostPort, "infra/tools"));
            var (appDigest, appMs) = await pushApp;
            var (toolsDigest, toolsMs) = await pushTools;
            _testContext.WriteLine($"push team/app:1.0 (2 layers): {appMs} ms ({appDigest})");
            _testContext.WriteLine($"push infra/tools:2.3 (3 layers): {toolsMs} ms ({toolsDigest})");
            _testContext.WriteLine($"both pushes: {stopwatch.ElapsedMilliseconds} ms");

            // skopeo pushes the OCI manifest unchanged, so the registry's digest is the local one.
            Assert.AreEqual(OciImages.ManifestDigest(app, "1.0"), appDigest);
            Assert.AreEqual(OciImages.ManifestDigest(tools, "2.3"), toolsDigest);
            Assert.AreEqual(appDigest, await Skopeo.InspectDigestAsync(first.HostPort, "team/app", "1.0"));

            stopwatch.Restart();
            await first.StopAsync();
            _testContext.WriteLine($"stop node 1: {stopwatch.ElapsedMilliseconds} ms");
            Assert.IsFalse(await DockerRegistryProcess.IsServingAsync(port1));

            // The replacement node: another process, another port, the same bucket.
            var port2 = DockerRegistryProcess.FreePort();
            var config2 = DockerRegistryProcess.WriteConfig(Path.Combine(root, "node2", "config.yml"), port2, s3, bucket);
            stopwatch.Restart();
            second = await DockerRegistryProcess.StartAsync(config2, port2);
            _testContext.WriteLine($"start node 2: {stopwatch.ElapsedMilliseconds} ms ({second})");

            stopwatch.Restart();
            await Skopeo.PullByDigestAsync(second.HostPort, "team/app", appDigest, Path.Combine(root, "pulled", "app"));
            _testContext.WriteLine($"pull team/app@digest: {stopwatch.ElapsedMilliseconds} ms");
            stopwatch.Restart();
            await Skopeo.PullByDigestAsync(second.HostPort, "infra/tools", toolsDigest, Path.Combine(root, "pulled", "tools"));
            _testContext.WriteLine($"pull infra/tools@digest: {stopwatch.ElapsedMilliseconds} ms");

            // Tags survived too, and a digest the registry never saw is refused.
            Assert.AreEqual(toolsDigest, await Skopeo.InspectDigestAsync(second.HostPort, "infra/tools", "2.3"));
            var missing = OciImages.Digest("not a manifest"u8);
            await Assert.ThrowsAsync<InvalidOperationException>(
                () => Skopeo.PullByDigestAsync(second.HostPort, "team/app", missing, Path.Combine(root, "pulled", "missing")));
        }
        catch
        {
            WriteLogTails(first, second);
            throw;
        }
        finally
        {
            if (first is not null) await first.DisposeAsync();
            if (second is not null) await second.DisposeAsync();
            Directory.Delete(root, recursive: true);
        }
    }

    [TestMethod]
    [Timeout(120_000, CooperativeCancellation = true)]
    public async Task The_control_script_starts_and_stops_the_registry_idempotently()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "regdr-registry-" + Guid.NewGuid().ToString("N")[..12];
        await s3.CreateBucketAsync(bucket);
        var root = Directory.CreateTempSubdirectory("registrydr-registry-ctl-").FullName;
        var port = DockerRegistryProcess.FreePort();
        var config = DockerRegistryProcess.WriteConfig(Path.Combine(root, "config.yml"), port, s3, bucket);
        var script = DockerRegistryProcess.WriteControlScript(root, config);
        try
        {
            await ShellcheckAsync(script);

            // Through RegistryDR's own runner, as Registry:StartCommand is run: it waits for
            // stdout and stderr to close, so this also proves the registry does not hold them.
            var stopwatch = Stopwatch.StartNew();
            var started = await RunScriptAsync(script, "start");
            _testContext.WriteLine($"registry-ctl start: {stopwatch.ElapsedMilliseconds} ms (exit {started.ExitCode})");
            Assert.AreEqual(0, started.ExitCode, started.StandardError);
            var pid = int.Parse(File.ReadAllText(Path.Combine(root, "registry.pid")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
            // start returned while the registry it started still runs (it did not wait for it; the runner's
            // 30 s timeout bounds a start that would).
            Assert.IsTrue(Directory.Exists($"/proc/{pid}"), "start must return while the registry runs");

            stopwatch.Restart();
            // A bounded wait for the registry to serve (generous: a loaded machine is slow), not a threshold.
            using var serving = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            while (!await DockerRegistryProcess.IsServingAsync(port))
            {
                if (serving.IsCancellationRequested)
                    Assert.Fail($"not serving on {port} after 2 minutes: {File.ReadAllText(Path.Combine(root, DockerRegistryProcess.LogFileName))}");
                await Task.Delay(50);
            }

            _testContext.WriteLine($"serving after: {stopwatch.ElapsedMilliseconds} ms (pid {pid})");
            Assert.AreEqual(DockerRegistryProcess.RegistryPath, new FileInfo($"/proc/{pid}/exe").LinkTarget);
            Assert.DoesNotContain("AWS_CA_BUNDLE=", File.ReadAllText($"/proc/{pid}/environ"));
            Assert.AreEqual(0, (await RunScriptAsync(script, "status")).ExitCode);

            // Starting again is a no-op that keeps the same process.
            Assert.AreEqual(0, (await RunScriptAsync(script, "start")).ExitCode);
            Assert.AreEqual(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText(Path.Combine(root, "registry.pid")).Trim());

            stopwatch.Restart();
            var stopped = await RunScriptAsync(script, "stop");
            _testContext.WriteLine($"registry-ctl stop: {stopwatch.ElapsedMilliseconds} ms");
            Assert.AreEqual(0, stopped.ExitCode, stopped.StandardError);
            Assert.IsFalse(await DockerRegistryProcess.IsServingAsync(port));
            Assert.IsFalse(File.Exists(Path.Combine(root, "registry.pid")));
            Assert.AreEqual(3, (await RunScriptAsync(script, "status")).ExitCode);

            // Stopping a stopped registry is fine, and so is a stale pid file.
            Assert.AreEqual(0, (await RunScriptAsync(script, "stop")).ExitCode);
            await File.WriteAllTextAsync(Path.Combine(root, "registry.pid"), "1\n");
            Assert.AreEqual(3, (await RunScriptAsync(script, "status")).ExitCode);
            Assert.AreEqual(0, (await RunScriptAsync(script, "stop")).ExitCode);
        }
        catch
        {
            _testContext.WriteLine(File.Exists(Path.Combine(root, DockerRegistryProcess.LogFileName))
                ? File.ReadAllText(Path.Combine(root, DockerRegistryProcess.LogFileName))
                : "(no registry.log)");
            throw;
        }
        finally
        {
            await RunScriptAsync(script, "stop");
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task<(T Result, long Milliseconds)> TimedAsync<T>(Func<Task<T>> action)
    {
        var stopwatch = Stopwatch.StartNew();
        var result = await action();
        return (result, stopwatch.ElapsedMilliseconds);
    }

    private static Task<ProcessResult> RunScriptAsync(string script, string command) =>
        ProcessRunner.RunAsync(new ProcessSpec(script, [command]) { Timeout = TimeSpan.FromSeconds(30) });

    private static async Task ShellcheckAsync(string script)
    {
        const string Shellcheck = "/usr/bin/shellcheck";
        if (!File.Exists(Shellcheck))
        {
            return;
        }

        var output = new MemoryStream();
        var result = await ProcessRunner.RunAsync(
            new ProcessSpec(Shellcheck, ["--severity=style", script]) { Timeout = TimeSpan.FromSeconds(30) },
            readStdout: (stream, ct) => stream.CopyToAsync(output, ct));
        Assert.AreEqual(0, result.ExitCode, System.Text.Encoding.UTF8.GetString(output.ToArray()) + result.StandardError);
    }

    private void WriteLogTails(params DockerRegistryProcess?[] registries)
    {
        foreach (var registry in registries)
        {
            if (registry is not null)
            {
                _testContext.WriteLine(registry.LogTail());
            }
        }
    }
}
