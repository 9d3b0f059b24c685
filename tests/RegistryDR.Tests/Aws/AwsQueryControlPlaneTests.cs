using Amazon.Runtime;
using RegistryDR.Aws;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Aws;

[TestClass]
public sealed class AwsQueryControlPlaneTests
{
    private static readonly LifecycleAction Action = new("registry-prod-Asg-1ABC2DEF", "registry-launch", "i-0123456789abcdef0");

    private static AwsQueryStandIn StartAutoScaling() =>
        AwsQueryStandIn.Start(AwsQueryStandIn.AutoScaling, AwsTestKeys.Region, AwsTestKeys.Long, AwsTestKeys.Session);

    private static AwsQueryStandIn StartCloudFormation() =>
        AwsQueryStandIn.Start(AwsQueryStandIn.CloudFormation, AwsTestKeys.Region, AwsTestKeys.Long, AwsTestKeys.Session);

    private static AwsQueryControlPlane Client(AwsQueryStandIn? autoScaling, AwsQueryStandIn? cloudFormation, AWSCredentials? credentials = null) =>
        new(AwsTestKeys.Region, credentials ?? AwsTestKeys.Sdk(AwsTestKeys.Long), autoScaling?.Endpoint, cloudFormation?.Endpoint)
        {
            RetryBaseDelay = TimeSpan.FromMilliseconds(5),
            RetryMaxDelay = TimeSpan.FromMilliseconds(20),
        };

    private static void AssertRecorded(AwsQueryStandIn standIn, Dictionary<string, string> expected)
    {
        Assert.HasCount(1, standIn.Calls, "rejections: " + string.Join(" | ", standIn.Rejections));
        var call = standIn.Calls[0];
        Assert.AreEqual(expected["Action"], call.Action);
        CollectionAssert.AreEquivalent(expected, call.Parameters.ToDictionary());
    }

    [TestMethod]
    public async Task CompleteLifecycleAction_Continue_IsAcceptedAndRecorded()
    {
        await using var asg = StartAutoScaling();

        await Client(asg, null).CompleteLifecycleActionAsync(Action, LifecycleActionResult.Continue, CancellationToken.None);

        AssertRecorded(asg, new()
        {
            ["Action"] = "CompleteLifecycleAction",
            ["Version"] = "2011-01-01",
            ["AutoScalingGroupName"] = "registry-prod-Asg-1ABC2DEF",
            ["LifecycleHookName"] = "registry-launch",
            ["LifecycleActionResult"] = "CONTINUE",
            ["InstanceId"] = "i-0123456789abcdef0",
        });
        Assert.AreEqual(AwsTestKeys.Long.AccessKeyId, asg.Calls[0].AccessKeyId);
        Assert.IsNull(asg.Calls[0].SessionToken);
    }

    [TestMethod]
    public async Task CompleteLifecycleAction_AbandonWithToken_SendsTokenAndInstance()
    {
        await using var asg = StartAutoScaling();
        var withToken = Action with { LifecycleActionToken = "bcd2f1b8-9a78-44d3-8a7a-4dd07d7cf635" };

        await Client(asg, null).CompleteLifecycleActionAsync(withToken, LifecycleActionResult.Abandon, CancellationToken.None);

        AssertRecorded(asg, new()
        {
            ["Action"] = "CompleteLifecycleAction",
            ["Version"] = "2011-01-01",
            ["AutoScalingGroupName"] = "registry-prod-Asg-1ABC2DEF",
            ["LifecycleHookName"] = "registry-launch",
            ["LifecycleActionResult"] = "ABANDON",
            ["InstanceId"] = "i-0123456789abcdef0",
            ["LifecycleActionToken"] = "bcd2f1b8-9a78-44d3-8a7a-4dd07d7cf635",
        });
    }

    [TestMethod]
    public async Task RecordLifecycleActionHeartbeat_IsAcceptedAndRecorded()
    {
        await using var asg = StartAutoScaling();

        await Client(asg, null).RecordLifecycleActionHeartbeatAsync(Action, CancellationToken.None);

        AssertRecorded(asg, new()
        {
            ["Action"] = "RecordLifecycleActionHeartbeat",
            ["Version"] = "2011-01-01",
            ["AutoScalingGroupName"] = "registry-prod-Asg-1ABC2DEF",
            ["LifecycleHookName"] = "registry-launch",
            ["InstanceId"] = "i-0123456789abcdef0",
        });
    }

    [TestMethod]
    [DataRow(ResourceSignalStatus.Success, "SUCCESS")]
    [DataRow(ResourceSignalStatus.Failure, "FAILURE")]
    public async Task SignalResource_IsAcceptedAndRecorded(ResourceSignalStatus status, string wire)
    {
        await using var cfn = StartCloudFormation();

        // Characters that need encoding, to prove body and signature agree on them.
        await Client(null, cfn).SignalResourceAsync("arn:aws:cloudformation:eu-west-1:123456789012:stack/registry-prod/1a2b+c d", "RegistryGroup", "i-0123456789abcdef0", status, CancellationToken.None);

        AssertRecorded(cfn, new()
        {
            ["Action"] = "SignalResource",
            ["Version"] = "2010-05-15",
            ["StackName"] = "arn:aws:cloudformation:eu-west-1:123456789012:stack/registry-prod/1a2b+c d",
            ["LogicalResourceId"] = "RegistryGroup",
            ["UniqueId"] = "i-0123456789abcdef0",
            ["Status"] = wire,
        });
    }

    [TestMethod]
    public async Task WrongSecretKey_IsRejectedAsSignatureDoesNotMatch_AndNothingIsRecorded()
    {
        await using var asg = StartAutoScaling();
        const string wrongSecret = "not-the-secret-0000000000000000000000";
        var client = Client(asg, null, new BasicAWSCredentials(AwsTestKeys.Long.AccessKeyId, wrongSecret));

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.CompleteLifecycleActionAsync(Action, LifecycleActionResult.Continue, CancellationToken.None));

        Assert.AreEqual(403, ex.StatusCode);
        Assert.AreEqual("SignatureDoesNotMatch", ex.ErrorCode);
        StringAssert.StartsWith(ex.Message, "AutoScaling CompleteLifecycleAction failed: SignatureDoesNotMatch (HTTP 403): The request signature we calculated does not match");
        Assert.DoesNotContain(wrongSecret, ex.ToString());
        Assert.DoesNotContain("Signature=", ex.ToString());
        Assert.IsEmpty(asg.Calls);
        Assert.AreEqual(1, asg.RequestCount, "an authentication failure is not retried");
    }

    [TestMethod]
    public async Task BodyChangedAfterSigning_IsRejected()
    {
        await using var asg = StartAutoScaling();
        using var http = new HttpClient(new RewriteBody(body => body.Replace("i-0123456789abcdef0", "i-0fffffffffffffff0", StringComparison.Ordinal))
        {
            InnerHandler = new SocketsHttpHandler(),
        });
        var client = new AwsQueryControlPlane(AwsTestKeys.Region, AwsTestKeys.Sdk(AwsTestKeys.Long), asg.Endpoint, null, http);

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.CompleteLifecycleActionAsync(Action, LifecycleActionResult.Continue, CancellationToken.None));

        Assert.AreEqual("SignatureDoesNotMatch", ex.ErrorCode);
        Assert.IsEmpty(asg.Calls);
    }

    [TestMethod]
    public async Task SuccessStatusWithoutTheActionsResponseDocument_IsAnError()
    {
        using var http = new HttpClient(new FixedAnswer("<html><body>Welcome to the proxy</body></html>"));
        var client = new AwsQueryControlPlane(AwsTestKeys.Region, AwsTestKeys.Sdk(AwsTestKeys.Long), null, null, http);

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.SignalResourceAsync("s", "R", "i-1", ResourceSignalStatus.Success, CancellationToken.None));

        Assert.AreEqual(200, ex.StatusCode);
        StringAssert.Contains(ex.Message, "was not a SignalResourceResponse document (got html)");
    }

    [TestMethod]
    public async Task UnknownAccessKey_IsRejectedAsInvalidClientTokenId()
    {
        await using var cfn = StartCloudFormation();
        var client = Client(null, cfn, new BasicAWSCredentials("AKIDNOBODYKNOWS00000", AwsTestKeys.Long.SecretAccessKey));

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.SignalResourceAsync("s", "R", "i-1", ResourceSignalStatus.Success, CancellationToken.None));

        Assert.AreEqual(403, ex.StatusCode);
        Assert.AreEqual("InvalidClientTokenId", ex.ErrorCode);
        Assert.IsEmpty(cfn.Calls);
    }

    [TestMethod]
    public async Task SessionCredentials_SendTheTokenAndTheStandInChecksIt()
    {
        await using var asg = StartAutoScaling();
        var keys = AwsTestKeys.Session;

        await Client(asg, null, AwsTestKeys.Sdk(keys)).RecordLifecycleActionHeartbeatAsync(Action, CancellationToken.None);
        Assert.HasCount(1, asg.Calls, string.Join(" | ", asg.Rejections));
        Assert.AreEqual(keys.SessionToken, asg.Calls[0].SessionToken);

        // The same temporary keys without their token, or with another token, are refused.
        var noToken = await Assert.ThrowsExactlyAsync<AwsApiException>(() =>
            Client(asg, null, new BasicAWSCredentials(keys.AccessKeyId, keys.SecretAccessKey)).RecordLifecycleActionHeartbeatAsync(Action, CancellationToken.None));
        Assert.AreEqual("InvalidClientTokenId", noToken.ErrorCode);
        var wrongToken = await Assert.ThrowsExactlyAsync<AwsApiException>(() =>
            Client(asg, null, new SessionAWSCredentials(keys.AccessKeyId, keys.SecretAccessKey, "another-token")).RecordLifecycleActionHeartbeatAsync(Action, CancellationToken.None));
        Assert.AreEqual("InvalidClientTokenId", wrongToken.ErrorCode);
        Assert.DoesNotContain("another-token", wrongToken.ToString());
        Assert.HasCount(1, asg.Calls);
    }

    [TestMethod]
    [DataRow(nameof(InjectedFailure.ServiceUnavailable))]
    [DataRow(nameof(InjectedFailure.Throttling))]
    public async Task TransientFailures_AreRetriedWithFreshSignatures_ThenSucceed(string failure)
    {
        await using var cfn = StartCloudFormation();
        cfn.FailNext(3, Enum.Parse<InjectedFailure>(failure));

        await Client(null, cfn).SignalResourceAsync("registry-prod", "RegistryGroup", "i-1", ResourceSignalStatus.Success, CancellationToken.None);

        Assert.AreEqual(4, cfn.RequestCount);
        Assert.HasCount(1, cfn.Calls);
        Assert.HasCount(3, cfn.Rejections);
    }

    [TestMethod]
    public async Task PersistentServerError_GivesUpAfterMaxAttempts()
    {
        await using var asg = StartAutoScaling();
        asg.FailNext(100, InjectedFailure.ServiceUnavailable);
        var client = Client(asg, null);

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.CompleteLifecycleActionAsync(Action, LifecycleActionResult.Continue, CancellationToken.None));

        Assert.AreEqual(503, ex.StatusCode);
        Assert.AreEqual("ServiceUnavailable", ex.ErrorCode);
        Assert.AreEqual(client.MaxAttempts, asg.RequestCount);
        Assert.IsEmpty(asg.Calls);
    }

    [TestMethod]
    public async Task ValidationError_SurfacesWithCodeAndMessage_WithoutRetrying()
    {
        await using var asg = StartAutoScaling();

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() =>
            Client(asg, null).CompleteLifecycleActionAsync(Action with { AutoScalingGroupName = "" }, LifecycleActionResult.Continue, CancellationToken.None));

        Assert.AreEqual(400, ex.StatusCode);
        Assert.AreEqual("ValidationError", ex.ErrorCode);
        Assert.AreEqual(
            "AutoScaling CompleteLifecycleAction failed: ValidationError (HTTP 400): 1 validation error(s) detected: Value at 'autoScalingGroupName' failed to satisfy constraint: Member must not be null or empty",
            ex.Message);
        Assert.AreEqual(1, asg.RequestCount);
    }

    [TestMethod]
    public async Task ClockFarOff_IsRejectedBecauseTheSignatureExpired()
    {
        await using var asg = StartAutoScaling();
        var client = new AwsQueryControlPlane(AwsTestKeys.Region, AwsTestKeys.Sdk(AwsTestKeys.Long), asg.Endpoint)
        {
            Time = new SkewedClock(TimeSpan.FromMinutes(-10)),
        };

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.RecordLifecycleActionHeartbeatAsync(Action, CancellationToken.None));

        Assert.AreEqual("SignatureDoesNotMatch", ex.ErrorCode);
        StringAssert.Contains(ex.Message, "Signature expired");
        Assert.IsEmpty(asg.Calls);
    }

    [TestMethod]
    public async Task WrongRegion_IsRejectedByTheCredentialScope()
    {
        await using var asg = StartAutoScaling();
        var client = new AwsQueryControlPlane("us-east-1", AwsTestKeys.Sdk(AwsTestKeys.Long), asg.Endpoint);

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.RecordLifecycleActionHeartbeatAsync(Action, CancellationToken.None));

        Assert.AreEqual("SignatureDoesNotMatch", ex.ErrorCode);
        StringAssert.Contains(ex.Message, "Credential should be scoped to a valid region, not 'us-east-1'.");
    }

    [TestMethod]
    public async Task EndpointNotListening_FailsWithStatusZeroAfterRetries()
    {
        var endpoint = $"http://127.0.0.1:{LoopbackHttpServer.FreePort()}/";
        var client = new AwsQueryControlPlane(AwsTestKeys.Region, AwsTestKeys.Sdk(AwsTestKeys.Long), null, endpoint)
        {
            MaxAttempts = 3,
            RetryBaseDelay = TimeSpan.FromMilliseconds(5),
        };

        var ex = await Assert.ThrowsExactlyAsync<AwsApiException>(() => client.SignalResourceAsync("s", "R", "i-1", ResourceSignalStatus.Failure, CancellationToken.None));

        Assert.AreEqual(0, ex.StatusCode);
        Assert.IsNull(ex.ErrorCode);
        StringAssert.StartsWith(ex.Message, $"CloudFormation SignalResource failed: {endpoint} could not be reached (3 tries)");
        Assert.IsInstanceOfType<HttpRequestException>(ex.InnerException);
    }

    [TestMethod]
    public void Endpoints_DefaultToTheRegionalServiceEndpoints()
    {
        var credentials = AwsTestKeys.Sdk(AwsTestKeys.Long);

        var eu = new AwsQueryControlPlane("eu-west-1", credentials);
        Assert.AreEqual(new Uri("https://autoscaling.eu-west-1.amazonaws.com/"), eu.AutoScalingEndpoint);
        Assert.AreEqual(new Uri("https://cloudformation.eu-west-1.amazonaws.com/"), eu.CloudFormationEndpoint);

        var china = new AwsQueryControlPlane("cn-north-1", credentials);
        Assert.AreEqual(new Uri("https://autoscaling.cn-north-1.amazonaws.com.cn/"), china.AutoScalingEndpoint);

        var vpce = new AwsQueryControlPlane("eu-west-1", credentials, "https://vpce-0abc-autoscaling.eu-west-1.vpce.amazonaws.com", null);
        Assert.AreEqual(new Uri("https://vpce-0abc-autoscaling.eu-west-1.vpce.amazonaws.com/"), vpce.AutoScalingEndpoint);
        Assert.AreEqual(new Uri("https://cloudformation.eu-west-1.amazonaws.com/"), vpce.CloudFormationEndpoint);

        Assert.ThrowsExactly<ArgumentException>(() => new AwsQueryControlPlane("eu-west-1", credentials, "autoscaling.example", null));
    }

    /// <summary>
    /// The default chain reads process-wide environment variables, so this runs alone. With
    /// keys in the environment the chain never reaches instance metadata (and IMDS is off too).
    /// </summary>
    [TestMethod]
    [DoNotParallelize]
    public async Task FromDefaultCredentials_UsesTheSdkDefaultChain()
    {
        await using var cfn = StartCloudFormation();
        var keys = AwsTestKeys.Session;
        var variables = new Dictionary<string, string?>
        {
            ["AWS_ACCESS_KEY_ID"] = keys.AccessKeyId,
            ["AWS_SECRET_ACCESS_KEY"] = keys.SecretAccessKey,
            ["AWS_SESSION_TOKEN"] = keys.SessionToken,
            ["AWS_EC2_METADATA_DISABLED"] = "true",
            ["AWS_PROFILE"] = null,
        };
        var saved = variables.Keys.ToDictionary(k => k, Environment.GetEnvironmentVariable);
        try
        {
            foreach (var (name, value) in variables) Environment.SetEnvironmentVariable(name, value);

            var client = AwsQueryControlPlane.FromDefaultCredentials(AwsTestKeys.Region, null, cfn.Endpoint);
            await client.SignalResourceAsync("registry-prod", "RegistryGroup", "i-1", ResourceSignalStatus.Success, CancellationToken.None);
        }
        finally
        {
            foreach (var (name, value) in saved) Environment.SetEnvironmentVariable(name, value);
        }

        Assert.HasCount(1, cfn.Calls, string.Join(" | ", cfn.Rejections));
        Assert.AreEqual(keys.AccessKeyId, cfn.Calls[0].AccessKeyId);
        Assert.AreEqual(keys.SessionToken, cfn.Calls[0].SessionToken);
    }

    /// <summary>Changes the form body in transit, after the client signed it.</summary>
    private sealed class RewriteBody(Func<string, string> rewrite) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var original = request.Content!;
            var body = rewrite(await original.ReadAsStringAsync(cancellationToken));
            request.Content = new StringContent(body);
            request.Content.Headers.Clear();
            foreach (var header in original.Headers.Where(h => h.Key != "Content-Length"))
                request.Content.Headers.TryAddWithoutValidation(header.Key, header.Value);
            return await base.SendAsync(request, cancellationToken);
        }
    }

    /// <summary>Answers every request with 200 and the given body, as a captive portal or misrouted proxy would.</summary>
    private sealed class FixedAnswer(string body) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(new HttpResponseMessage(System.Net.HttpStatusCode.OK) { Content = new StringContent(body), RequestMessage = request });
    }

    private sealed class SkewedClock(TimeSpan offset) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + offset;
    }
}
