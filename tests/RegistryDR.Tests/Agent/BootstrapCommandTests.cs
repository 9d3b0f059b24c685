using System.Diagnostics;
using System.Text.Json;
using RegistryDR.Agent;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Agent;

/// <summary>
/// <c>registry-dr bootstrap</c> that cannot even start still tells AWS, at once: exit 2, the node
/// marked Failed, ABANDON for the launch hook and FAILURE to the stack.
/// </summary>
[TestClass]
public sealed class BootstrapCommandTests
{
    private const string Region = "eu-west-1";
    private const string InstanceId = "i-0badc0ffee0000001";

    [TestMethod]
    [DataRow(false, DisplayName = "a value the validator refuses")]
    [DataRow(true, DisplayName = "a file that is not JSON; Agent settings from REGISTRYDR__ variables")]
    public async Task InvalidConfiguration_Exit2_NodeFailed_AbandonAndFailureReported(bool unparseable)
    {
        using var dir = new TempDirectory("rdr-badconfig-");
        var keys = new StandInCredentials(CephS3Server.TestAccessKey, CephS3Server.TestSecretKey);
        var groups = new AutoScalingModel(TimeProvider.System);
        groups.AddGroup("registry-prod-registry", new AutoScalingModel.Hook("registry-dr-launch", AutoScalingModel.Launching, TimeSpan.FromSeconds(1800), "ABANDON"));
        groups.Launch("registry-prod-registry", InstanceId);
        var stack = new CloudFormationModel("registry-prod", Region, TimeProvider.System);
        stack.BeginCreate("RegistryGroup", 1, TimeSpan.FromMinutes(60));
        await using var imds = ImdsStandIn.Start(InstanceId, Region);
        await using var autoScaling = AwsQueryStandIn.StartAutoScaling(groups, Region, keys);
        await using var cloudFormation = AwsQueryStandIn.StartCloudFormation(stack, Region, keys);
        var stateFile = Path.Combine(dir.Path, "state", "node-state.json");
        var agent = new Dictionary<string, string>
        {
            ["MetadataEndpoint"] = imds.Endpoint,
            ["AutoScalingEndpoint"] = autoScaling.Endpoint,
            ["CloudFormationEndpoint"] = cloudFormation.Endpoint,
            ["StackName"] = "registry-prod",
            ["StateFile"] = stateFile,
        };
        var config = Path.Combine(dir.Path, "registry-dr.json");
        var environment = new Dictionary<string, string?>
        {
            ["AWS_ACCESS_KEY_ID"] = keys.AccessKeyId,
            ["AWS_SECRET_ACCESS_KEY"] = keys.SecretAccessKey,
            ["AWS_EC2_METADATA_DISABLED"] = "true",
            ["AWS_CONFIG_FILE"] = "/dev/null",
            ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null",
        };
        if (unparseable)
        {
            File.WriteAllText(config, "{ \"Database\": { \"Port\": 5432, ");
            foreach (var (key, value) in agent) environment["REGISTRYDR__Agent__" + key] = value;
        }
        else
        {
            File.WriteAllText(config, JsonSerializer.Serialize(new { Database = new { Port = 0 }, Agent = agent }));
        }

        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"), "bootstrap", "--config", config }) psi.ArgumentList.Add(a);
        foreach (var name in psi.Environment.Keys.Where(k => k.StartsWith("AWS_", StringComparison.Ordinal) || k.StartsWith("REGISTRYDR__", StringComparison.Ordinal)).ToList())
            psi.Environment.Remove(name);
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        var output = await stdout + await stderr;

        Assert.AreEqual(2, process.ExitCode, output);
        StringAssert.Contains(output, unparseable ? "is not valid JSON" : "Database:Port is 0");
        StringAssert.Contains(output, "Reported to AWS: lifecycle action Completed, CloudFormation signal Accepted.");
        var state = NodeStateFile.Read(stateFile)!;
        Assert.AreEqual(NodeStatus.Failed, state.Status);
        StringAssert.StartsWith(state.Reason, "invalid configuration: ");
        var abandon = autoScaling.Calls.Single(c => c.Action == "CompleteLifecycleAction");
        Assert.AreEqual("ABANDON", abandon.Parameters["LifecycleActionResult"]);
        Assert.AreEqual("registry-prod-registry", abandon.Parameters["AutoScalingGroupName"]);
        Assert.AreEqual("Terminated", groups.LifecycleState(InstanceId));
        var failure = cloudFormation.Calls.Single();
        Assert.AreEqual("FAILURE", failure.Parameters["Status"]);
        Assert.AreEqual(InstanceId, failure.Parameters["UniqueId"]);
        Assert.AreEqual(CloudFormationModel.RollbackInProgress, stack.Status, "the stack fails now, not after its 60-minute signal timeout");
    }
}
