using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using RegistryDR.Agent;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Monitoring;

/// <summary>
/// <c>GET /load_balancer_status</c> against a real Debian docker-registry (on Ceph S3), a restore
/// reported through <see cref="OperationMetrics"/>, and the node state file.
/// </summary>
[TestClass]
public sealed class LoadBalancerStatusTests
{
    public TestContext TestContext { get; set; } = null!;

    private const string StatusPath = "/load_balancer_status";

    private Task<HttpAnswer> GetAsync(MonitoringServer server) => MonitoringTestSupport.GetAsync(server, StatusPath, TestContext.CancellationToken);

    private static string? Reason(HttpAnswer answer) =>
        JsonDocument.Parse(answer.Body).RootElement.TryGetProperty("reason", out var reason) ? reason.GetString() : null;

    private static void AssertUnavailable(HttpAnswer answer, string reason)
    {
        Assert.AreEqual(HttpStatusCode.ServiceUnavailable, answer.Status, answer.ToString());
        StringAssert.StartsWith(answer.ContentType, "application/json");
        Assert.AreEqual("unavailable", JsonDocument.Parse(answer.Body).RootElement.GetProperty("status").GetString());
        Assert.AreEqual(reason, Reason(answer), answer.ToString());
    }

    private static void AssertOk(HttpAnswer answer)
    {
        Assert.AreEqual(HttpStatusCode.OK, answer.Status, answer.ToString());
        Assert.AreEqual("{\"status\":\"ok\"}", answer.Body);
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task FollowsTheRealRegistry_TheRestore_AndTheNodeState()
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "regdr-lbstatus-" + Guid.NewGuid().ToString("N")[..12];
        await s3.CreateBucketAsync(bucket, TestContext.CancellationToken);
        using var rootScope = new TempDirectory("rdr-lbstatus-");
        var root = rootScope.Path;
        var port = DockerRegistryProcess.FreePort();
        var config = DockerRegistryProcess.WriteConfig(Path.Combine(root, "registry", "config.yml"), port, s3, bucket);
        var options = new RegistryDrOptions();
        options.Registry.HealthUrl = $"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}/v2/";
        options.Agent.StateFile = Path.Combine(root, "state", "node-state.json");
        var metrics = new OperationMetrics(TimeProvider.System);
        await using var server = await MonitoringTestSupport.StartServerAsync(options, metrics);

        // 1. The registry is not running: unavailable, and the reason says why. The process itself is up.
        var down = await GetAsync(server);
        Assert.AreEqual(HttpStatusCode.ServiceUnavailable, down.Status, down.ToString());
        StringAssert.StartsWith(Reason(down), "registry unhealthy: ");
        Assert.AreEqual(HttpStatusCode.OK, (await MonitoringTestSupport.GetAsync(server, "/healthz", TestContext.CancellationToken)).Status);

        // 2. A real docker-registry serves: available (within the probe cache's second).
        await using (var registry = await DockerRegistryProcess.StartAsync(config, port, TestContext.CancellationToken))
        {
            AssertOk(await MonitoringTestSupport.GetUntilAsync(server, StatusPath, a => a.Status == HttpStatusCode.OK, TestContext.CancellationToken));

            // 3. A restore is running: unavailable at once, without asking the registry.
            metrics.RestoreStarted("20261122T021500Z-3fa9c1");
            AssertUnavailable(await GetAsync(server), "restoring");
            metrics.RestoreFinished("20261122T021500Z-3fa9c1", succeeded: true, TimeSpan.FromMinutes(4));
            AssertOk(await GetAsync(server));

            // 4. With Schedule:RequireRestoredNode, only a node that restored (or first-booted) takes traffic.
            options.Schedule.RequireRestoredNode = true;
            AssertUnavailable(await GetAsync(server), "node did not restore: no readable node state file");
            WriteState(options, NodeStatus.Failed);
            AssertUnavailable(await GetAsync(server), "node did not restore: Failed");
            WriteState(options, NodeStatus.Restoring);
            AssertUnavailable(await GetAsync(server), "restoring");
            WriteState(options, NodeStatus.Restored);
            AssertOk(await GetAsync(server));
            WriteState(options, NodeStatus.FirstBoot);
            AssertOk(await GetAsync(server));
            File.Delete(options.Agent.StateFile);
            AssertUnavailable(await GetAsync(server), "node did not restore: no readable node state file");
            WriteState(options, NodeStatus.Restored);
            AssertOk(await GetAsync(server));

            // 5. The registry goes away: unavailable again once the cached answer expires.
            await registry.StopAsync();
            var gone = await MonitoringTestSupport.GetUntilAsync(server, StatusPath, a => a.Status != HttpStatusCode.OK, TestContext.CancellationToken);
            Assert.AreEqual(HttpStatusCode.ServiceUnavailable, gone.Status, gone.ToString());
            StringAssert.StartsWith(Reason(gone), "registry unhealthy: ");
        }
    }

    private static void WriteState(RegistryDrOptions options, NodeStatus status) =>
        NodeStateFile.Write(options.Agent.StateFile, new NodeState(status, DateTimeOffset.UtcNow, null, "i-0123456789abcdef0", status == NodeStatus.Failed ? "restore failed" : null));

    [TestMethod]
    [Timeout(120_000, CooperativeCancellation = true)]
    public async Task ARegistryAnswering502_IsNamedInTheReason_AndAStormOfChecksCostsItOneProbe()
    {
        await using var registry = await FakeRegistry.StartAsync(502, "Bad Gateway");
        var options = new RegistryDrOptions();
        options.Registry.HealthUrl = registry.Url;
        await using var server = await MonitoringTestSupport.StartServerAsync(options, new OperationMetrics(TimeProvider.System));

        var answers = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => GetAsync(server)));
        foreach (var answer in answers) AssertUnavailable(answer, "registry unhealthy: HTTP 502");
        // Forty load-balancer checks at once share one probe (two at most, if the burst straddled the cache's second).
        Assert.IsLessThanOrEqualTo(2, registry.Requests, $"{registry.Requests} probes for 40 checks");

        registry.Status = (200, "OK");
        AssertOk(await MonitoringTestSupport.GetUntilAsync(server, StatusPath, a => a.Status == HttpStatusCode.OK, TestContext.CancellationToken));
    }

    [TestMethod]
    [Timeout(120_000, CooperativeCancellation = true)]
    public async Task ARegistryThatNeverAnswers_IsUnavailableWithinTheProbeTimeout()
    {
        await using var registry = await FakeRegistry.StartAsync(0, "never answers");
        var options = new RegistryDrOptions();
        options.Registry.HealthUrl = registry.Url;
        await using var server = await MonitoringTestSupport.StartServerAsync(options, new OperationMetrics(TimeProvider.System));
        // The answer names the probe's own 2 s timeout: the endpoint gave up on the registry and
        // answered, rather than waiting for it (the [Timeout] bounds a status that would wait).
        AssertUnavailable(await GetAsync(server), "registry unhealthy: no answer within 2 s");
    }

    [TestMethod]
    [Timeout(120_000, CooperativeCancellation = true)]
    public async Task WithoutAHealthUrl_TheAnswerSaysTheRegistryWasNotChecked()
    {
        await using var server = await MonitoringTestSupport.StartServerAsync(new RegistryDrOptions(), new OperationMetrics(TimeProvider.System));
        var answer = await GetAsync(server);
        Assert.AreEqual(HttpStatusCode.OK, answer.Status, answer.ToString());
        var body = JsonDocument.Parse(answer.Body).RootElement;
        Assert.AreEqual("ok", body.GetProperty("status").GetString());
        Assert.AreEqual("not checked: Registry:HealthUrl is not set", body.GetProperty("registry").GetString());
    }

    [TestMethod]
    [Timeout(120_000, CooperativeCancellation = true)]
    public async Task TheStandaloneServer_ServesAroundARestore_AndAPortInUseDoesNotThrow()
    {
        // As `bootstrap` uses it: started from the options, stopped by disposing.
        var metrics = new OperationMetrics(TimeProvider.System);
        var options = new RegistryDrOptions();
        var server = new MonitoringServer(options, MonitoringTestSupport.EphemeralPort(), metrics, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System);
        await server.StartAsync(TestContext.CancellationToken);
        var address = server.Addresses.Single();
        metrics.RestoreStarted("a");
        AssertUnavailable(await GetAsync(server), "restoring");

        // A second server on the same port logs the failure and carries on, listening nowhere.
        var taken = new MonitoringOptions { Urls = [address], EmfLogPath = "" };
        await using (var second = new MonitoringServer(options, taken, metrics, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System))
        {
            await second.StartAsync(TestContext.CancellationToken);
            Assert.IsEmpty(second.Addresses);
        }

        await server.DisposeAsync();
        Assert.IsEmpty(server.Addresses);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(new Uri(address + "/healthz"), TestContext.CancellationToken));
        await server.DisposeAsync(); // idempotent
    }

    /// <summary>A registry stand-in on 127.0.0.1 that answers every request with one status line (or, with status 0, never), counting requests.</summary>
    private sealed class FakeRegistry : IAsyncDisposable
    {
        private readonly TcpListener _listener;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private int _requests;

        private FakeRegistry(TcpListener listener, int status, string text)
        {
            _listener = listener;
            Status = (status, text);
            _loop = Task.Run(AcceptLoopAsync);
        }

        private volatile StatusLine _status = new(0, "");

        /// <summary>What the next request is answered with; settable while the test runs.</summary>
        public (int Code, string Text) Status
        {
            get => (_status.Code, _status.Text);
            set => _status = new StatusLine(value.Code, value.Text);
        }

        private sealed record StatusLine(int Code, string Text);

        public int Requests => Volatile.Read(ref _requests);

        public string Url => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture)}/load_balancer_status";

        public static Task<FakeRegistry> StartAsync(int status, string text)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return Task.FromResult(new FakeRegistry(listener, status, text));
        }

        private async Task AcceptLoopAsync()
        {
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    _ = Task.Run(() => ServeAsync(client));
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private async Task ServeAsync(TcpClient client)
        {
            using (client)
            {
                try
                {
                    var stream = client.GetStream();
                    var buffer = new byte[4096];
                    var seen = new StringBuilder();
                    while (!seen.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                    {
                        var n = await stream.ReadAsync(buffer, _stop.Token);
                        if (n == 0) return;
                        seen.Append(Encoding.ASCII.GetString(buffer, 0, n));
                    }
                    Interlocked.Increment(ref _requests);
                    var (code, text) = Status;
                    if (code == 0)
                    {
                        await Task.Delay(Timeout.Infinite, _stop.Token);
                        return;
                    }
                    var response = $"HTTP/1.1 {code.ToString(CultureInfo.InvariantCulture)} {text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    await stream.WriteAsync(Encoding.ASCII.GetBytes(response), _stop.Token);
                }
                catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException)
                {
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            try { await _loop; } catch (Exception ex) when (ex is ObjectDisposedException or SocketException) { }
            _stop.Dispose();
        }
    }
}
