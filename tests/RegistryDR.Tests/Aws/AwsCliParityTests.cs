using RegistryDR.Aws;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Aws;

/// <summary>
/// The same calls made by Debian's awscli 2 and by <see cref="AwsQueryControlPlane"/> must both
/// pass the stand-in's strict verifier and arrive as the same parameters. awscli being accepted
/// is what shows the verifier (written separately from our signer) implements SigV4 correctly,
/// so that our client being accepted means something.
/// </summary>
[TestClass]
public sealed class AwsCliParityTests
{
    private const string Group = "registry-prod-Asg-1ABC2DEF";
    private const string Hook = "registry-launch";
    private const string Instance = "i-0123456789abcdef0";

    [TestInitialize]
    public void RequireAwsCli()
    {
        // Installed by scripts/install-prerequisites.sh: missing is a failure, not a skip.
        if (!File.Exists(AwsCli.Path)) Assert.Fail($"{AwsCli.Path} (Debian's awscli) is not installed: run scripts/install-prerequisites.sh.");
    }

    [TestMethod]
    public async Task CompleteLifecycleAction_AwsCliAndClient_SendTheSameAcceptedCall()
    {
        await using var asg = AwsQueryStandIn.Start(AwsQueryStandIn.AutoScaling, AwsTestKeys.Region, AwsTestKeys.Long);

        await RunCliAsync(AwsTestKeys.Long, "autoscaling", "complete-lifecycle-action",
            "--lifecycle-hook-name", Hook, "--auto-scaling-group-name", Group, "--lifecycle-action-result", "CONTINUE",
            "--instance-id", Instance, "--endpoint-url", asg.Endpoint, "--region", AwsTestKeys.Region);
        await Client(asg, null).CompleteLifecycleActionAsync(new LifecycleAction(Group, Hook, Instance), LifecycleActionResult.Continue, CancellationToken.None);

        AssertSameTwoCalls(asg, "CompleteLifecycleAction");
    }

    [TestMethod]
    public async Task RecordLifecycleActionHeartbeat_AwsCliAndClient_SendTheSameAcceptedCall()
    {
        await using var asg = AwsQueryStandIn.Start(AwsQueryStandIn.AutoScaling, AwsTestKeys.Region, AwsTestKeys.Long);

        await RunCliAsync(AwsTestKeys.Long, "autoscaling", "record-lifecycle-action-heartbeat",
            "--lifecycle-hook-name", Hook, "--auto-scaling-group-name", Group, "--instance-id", Instance,
            "--endpoint-url", asg.Endpoint, "--region", AwsTestKeys.Region);
        await Client(asg, null).RecordLifecycleActionHeartbeatAsync(new LifecycleAction(Group, Hook, Instance), CancellationToken.None);

        AssertSameTwoCalls(asg, "RecordLifecycleActionHeartbeat");
    }

    [TestMethod]
    public async Task SignalResource_WithSessionToken_AwsCliAndClient_SendTheSameAcceptedCall()
    {
        await using var cfn = AwsQueryStandIn.Start(AwsQueryStandIn.CloudFormation, AwsTestKeys.Region, AwsTestKeys.Session);
        // A stack ARN has ':' and '/', which both tools must encode the same in body and signature.
        const string stack = "arn:aws:cloudformation:eu-west-1:123456789012:stack/registry-prod/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab";

        await RunCliAsync(AwsTestKeys.Session, "cloudformation", "signal-resource",
            "--stack-name", stack, "--logical-resource-id", "RegistryGroup", "--unique-id", Instance, "--status", "SUCCESS",
            "--endpoint-url", cfn.Endpoint, "--region", AwsTestKeys.Region);
        await Client(null, cfn, AwsTestKeys.Session).SignalResourceAsync(stack, "RegistryGroup", Instance, ResourceSignalStatus.Success, CancellationToken.None);

        AssertSameTwoCalls(cfn, "SignalResource");
        Assert.IsTrue(cfn.Calls.All(c => c.SessionToken == AwsTestKeys.Session.SessionToken), "both must send the session token");
    }

    [TestMethod]
    public async Task AwsCliWithWrongSecret_IsRejectedByTheSameVerifier()
    {
        await using var cfn = AwsQueryStandIn.Start(AwsQueryStandIn.CloudFormation, AwsTestKeys.Region, AwsTestKeys.Long);
        var wrong = AwsTestKeys.Long with { SecretAccessKey = "not-the-secret-0000000000000000000000" };

        var result = await AwsCli.RunAsync(wrong, "cloudformation", "signal-resource",
            "--stack-name", "registry-prod", "--logical-resource-id", "RegistryGroup", "--unique-id", Instance, "--status", "FAILURE",
            "--endpoint-url", cfn.Endpoint, "--region", AwsTestKeys.Region);

        Assert.AreNotEqual(0, result.ExitCode);
        StringAssert.Contains(result.StandardError, "SignatureDoesNotMatch");
        Assert.IsEmpty(cfn.Calls);
        Assert.AreEqual(1, cfn.RequestCount);
    }

    private static AwsQueryControlPlane Client(AwsQueryStandIn? autoScaling, AwsQueryStandIn? cloudFormation, StandInCredentials? keys = null) =>
        new(AwsTestKeys.Region, AwsTestKeys.Sdk(keys ?? AwsTestKeys.Long), autoScaling?.Endpoint, cloudFormation?.Endpoint);

    private static async Task RunCliAsync(StandInCredentials keys, params string[] arguments)
    {
        var result = await AwsCli.RunAsync(keys, arguments);
        Assert.AreEqual(0, result.ExitCode, $"awscli failed: {result.StandardError}");
    }

    private static void AssertSameTwoCalls(AwsQueryStandIn standIn, string action)
    {
        var calls = standIn.Calls;
        Assert.HasCount(2, calls, "awscli's call and ours must both be accepted; rejections: " + string.Join(" | ", standIn.Rejections));
        Assert.IsTrue(calls.All(c => c.Action == action));
        var (cli, ours) = (calls[0].Parameters, calls[1].Parameters);
        CollectionAssert.AreEquivalent(cli.ToDictionary(), ours.ToDictionary(),
            $"awscli sent {Describe(cli)}, we sent {Describe(ours)}");
    }

    private static string Describe(IReadOnlyDictionary<string, string> parameters) =>
        string.Join("&", parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));
}
