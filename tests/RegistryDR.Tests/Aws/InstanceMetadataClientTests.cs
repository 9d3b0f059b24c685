using System.Net;
using System.Net.Sockets;
using RegistryDR.Aws;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Aws;

[TestClass]
public sealed class InstanceMetadataClientTests
{
    private const string InstanceId = "i-0123456789abcdef0";
    private const string Region = "eu-west-1";

    private static readonly Dictionary<string, string> Tags = new()
    {
        [ImdsStandIn.StackNameTag] = "registry-prod",
        [ImdsStandIn.AutoScalingGroupTag] = "registry-prod-Asg-1ABC2DEF",
        ["Name"] = "registry",
    };

    [TestMethod]
    public async Task StandIn_IsStrictAboutImdsV2Tokens()
    {
        await using var imds = ImdsStandIn.Start(InstanceId, Region, Tags);
        using var http = new HttpClient();

        using var noToken = await http.GetAsync(imds.Endpoint + "/latest/meta-data/instance-id");
        Assert.AreEqual(HttpStatusCode.Unauthorized, noToken.StatusCode, "a GET without a token must be refused (IMDSv1)");

        using var badToken = new HttpRequestMessage(HttpMethod.Get, imds.Endpoint + "/latest/meta-data/instance-id");
        badToken.Headers.Add("X-aws-ec2-metadata-token", "made-up");
        using (var response = await http.SendAsync(badToken))
            Assert.AreEqual(HttpStatusCode.Unauthorized, response.StatusCode, "a made-up token must be refused");

        using (var response = await http.PutAsync(imds.Endpoint + "/latest/api/token", null))
            Assert.AreEqual(HttpStatusCode.BadRequest, response.StatusCode, "a token PUT without a TTL must be refused");

        using var put = new HttpRequestMessage(HttpMethod.Put, imds.Endpoint + "/latest/api/token");
        put.Headers.Add("X-aws-ec2-metadata-token-ttl-seconds", "60");
        using var tokenResponse = await http.SendAsync(put);
        Assert.AreEqual(HttpStatusCode.OK, tokenResponse.StatusCode);
        var token = await tokenResponse.Content.ReadAsStringAsync();

        using var get = new HttpRequestMessage(HttpMethod.Get, imds.Endpoint + "/latest/meta-data/instance-id");
        get.Headers.Add("X-aws-ec2-metadata-token", token);
        using var ok = await http.SendAsync(get);
        Assert.AreEqual(HttpStatusCode.OK, ok.StatusCode);
        Assert.AreEqual(InstanceId, await ok.Content.ReadAsStringAsync());
        Assert.AreEqual(2, imds.UnauthorizedRequests);
    }

    [TestMethod]
    public async Task GetIdentity_ReadsInstanceRegionAndTagsWithOneToken()
    {
        await using var imds = ImdsStandIn.Start(InstanceId, Region, Tags);
        var client = new InstanceMetadataClient(imds.Endpoint);

        var identity = await client.GetIdentityAsync(CancellationToken.None);

        Assert.AreEqual(new InstanceIdentity(InstanceId, Region, "registry-prod", "registry-prod-Asg-1ABC2DEF"), identity);
        Assert.AreEqual(1, imds.TokenRequests);
        Assert.AreEqual(4, imds.MetadataRequests);
        Assert.AreEqual(0, imds.UnauthorizedRequests, "every GET must carry the session token");
    }

    [TestMethod]
    public async Task GetIdentity_TagsNotInMetadata_GivesNullStackAndGroup()
    {
        await using var imds = ImdsStandIn.Start(InstanceId, "ap-southeast-2", tags: null);
        var client = new InstanceMetadataClient(imds.Endpoint + "/");

        var identity = await client.GetIdentityAsync(CancellationToken.None);

        Assert.AreEqual(new InstanceIdentity(InstanceId, "ap-southeast-2", null, null), identity);
    }

    [TestMethod]
    public async Task GetIdentity_TokenExpiresMidway_FetchesANewOneOnce()
    {
        await using var imds = ImdsStandIn.Start(InstanceId, Region, Tags);
        imds.TokenUses = 2;
        var client = new InstanceMetadataClient(imds.Endpoint);

        var identity = await client.GetIdentityAsync(CancellationToken.None);

        Assert.AreEqual("registry-prod-Asg-1ABC2DEF", identity.AutoScalingGroupName);
        Assert.AreEqual(2, imds.TokenRequests);
        Assert.AreEqual(1, imds.UnauthorizedRequests);
    }

    [TestMethod]
    public async Task GetIdentity_TransientServerErrors_AreRetried()
    {
        await using var imds = ImdsStandIn.Start(InstanceId, Region, Tags);
        imds.FailNext(2, HttpStatusCode.ServiceUnavailable);
        var client = new InstanceMetadataClient(imds.Endpoint) { RetryBaseDelay = TimeSpan.FromMilliseconds(10) };

        var identity = await client.GetIdentityAsync(CancellationToken.None);

        Assert.AreEqual(InstanceId, identity.InstanceId);
        Assert.AreEqual(1, imds.TokenRequests, "two failed token PUTs, then one that worked");
    }

    [TestMethod]
    public async Task GetIdentity_NothingListening_FailsClearlyWithinSeconds()
    {
        var endpoint = $"http://127.0.0.1:{LoopbackHttpServer.FreePort()}";
        var client = new InstanceMetadataClient(endpoint);

        // The bound only ends a hung test. "Quickly" is checked by what the client waited for:
        // a refused connection ends a try at once, so no try may have waited out its request
        // timeout (2 s each by default), which a wall-clock limit on a loaded machine cannot tell.
        var ex = await Assert.ThrowsExactlyAsync<InstanceMetadataUnavailableException>(() => client.GetIdentityAsync(CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(2)));

        StringAssert.Contains(ex.Message, "PUT /latest/api/token: Connection refused");
        Assert.DoesNotContain("no answer within", ex.Message, "a refused connection was waited on as if it were silent");
        StringAssert.Contains(ex.Message, $"EC2 instance metadata (IMDSv2) at {endpoint} could not be reached");
        StringAssert.Contains(ex.Message, "Is this an EC2 instance, with IMDSv2 enabled and a hop limit that reaches it?");
        StringAssert.Contains(ex.Message, "Set Agent:InstanceId, Agent:Region");
        StringAssert.Contains(ex.Message, "(3 tries)");
    }

    [TestMethod]
    public async Task GetIdentity_EndpointNeverAnswers_TimesOutPerRequest()
    {
        // Accepts connections and never answers: what a hop limit of 1 looks like from a
        // container, where the PUT's answer is dropped on the way back.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var endpoint = $"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}";
        var client = new InstanceMetadataClient(endpoint)
        {
            RequestTimeout = TimeSpan.FromMilliseconds(300),
            MaxAttempts = 2,
            RetryBaseDelay = TimeSpan.FromMilliseconds(10),
        };

        // The bound only ends a hung test; the per-request deadline is checked by the message
        // (each try gave up after 0.3 s) and by the server, which saw exactly one connection per try.
        var ex = await Assert.ThrowsExactlyAsync<InstanceMetadataUnavailableException>(() => client.GetIdentityAsync(CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(2)));

        StringAssert.Contains(ex.Message, "could not be reached: PUT /latest/api/token: no answer within 0.3 s (2 tries)");
        var connections = 0;
        while (silent.Pending())
        {
            using var accepted = await silent.AcceptTcpClientAsync();
            connections++;
        }
        Assert.AreEqual(2, connections, "one connection per try");
    }

    [TestMethod]
    public async Task GetIdentity_CallerCancels_IsCancellationNotUnavailable()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var client = new InstanceMetadataClient($"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}");
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAsync<OperationCanceledException>(() => client.GetIdentityAsync(cts.Token));
    }
}
