using System.Text.RegularExpressions;
using RegistryDR.Configuration;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// What the node's agent and boot scripts rely on in cloudformation/registry.yaml: names that
/// must match the product's defaults, and the values the user data stub hands to user-data.sh.
/// (Whether the template is valid CloudFormation is <see cref="CloudFormationLintTests"/>' job.)
/// </summary>
[TestClass]
public sealed partial class RegistryTemplateTests
{
    private static readonly string Template = File.ReadAllText(Path.Combine(DeploymentTestSupport.CloudFormationDirectory, "registry.yaml"));

    [GeneratedRegex(@"^\s*(RDR_[A-Z0-9_]+)=", RegexOptions.Multiline)]
    private static partial Regex StubAssignment();

    [GeneratedRegex(@"for name in ([^;]+);")]
    private static partial Regex RequiredVariables();

    [TestMethod]
    public void TheGroupAndHookAreTheOnesTheAgentSignalsByDefault()
    {
        var agent = new AgentOptions();
        StringAssert.Contains(Template, $"\n  {agent.SignalResource}:\n    Type: AWS::AutoScaling::AutoScalingGroup\n");
        StringAssert.Contains(Template, $"- LifecycleHookName: {agent.LifecycleHookName}\n          LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING'\n          DefaultResult: ABANDON\n");
        // The user data stub reports failures for the same hook and logical id.
        StringAssert.Contains(Template, $"--lifecycle-hook-name {agent.LifecycleHookName}");
        StringAssert.Contains(Template, $"--logical-resource-id {agent.SignalResource}");
    }

    [TestMethod]
    public void TheNodeIsAGroupOfExactlyOneBehindTlsPassThrough()
    {
        StringAssert.Contains(Template, "MinSize: '1'\n      MaxSize: '1'\n      DesiredCapacity: '1'\n");
        StringAssert.Contains(Template, "HealthCheckType: ELB");
        StringAssert.Contains(Template, "HealthCheckPath: /load_balancer_status");
        StringAssert.Contains(Template, "Type: network");
        StringAssert.Contains(Template, "Protocol: TCP\n      Port: 443\n      DefaultActions:");
        StringAssert.Contains(Template, "ResourceSignal:\n        Count: 1\n        Timeout: !Ref SignalTimeout");
        StringAssert.Contains(Template, "WaitOnResourceSignals: true");
    }

    [TestMethod]
    public void MetadataIsImdsV2OnlyWithTags()
    {
        StringAssert.Contains(Template, "HttpTokens: required");
        StringAssert.Contains(Template, "HttpPutResponseHopLimit: !Ref MetadataHopLimit");
        StringAssert.Contains(Template, "InstanceMetadataTags: enabled");
    }

    [TestMethod]
    public void FirstBootIsOffUnlessAskedFor()
    {
        StringAssert.Contains(Template, "  AllowFirstBoot:\n    Type: String\n    Default: 'false'\n");
        StringAssert.Contains(Template, "RDR_ALLOW_FIRST_BOOT='${AllowFirstBoot}'");
    }

    [TestMethod]
    public void TheUserDataStubSetsEverythingUserDataShRequires()
    {
        var userData = File.ReadAllText(Path.Combine(DeploymentTestSupport.BootstrapDirectory, "user-data.sh"));
        var required = RequiredVariables().Match(userData);
        Assert.IsTrue(required.Success, "user-data.sh no longer lists its required variables in a 'for name in ...;' loop");
        var names = required.Groups[1].Value.Split([' ', '\\', '\n'], StringSplitOptions.RemoveEmptyEntries);
        Assert.IsGreaterThan(10, names.Length);

        var set = StubAssignment().Matches(Template).Select(m => m.Groups[1].Value).ToHashSet();
        foreach (var name in names) Assert.Contains(name, set, $"the template's user data does not set {name}");
    }

    [TestMethod]
    public void TheUserDataStubFitsEc2sLimit()
    {
        var start = Template.IndexOf("Fn::Base64: !Sub", StringComparison.Ordinal);
        var end = Template.IndexOf("- GroupName:", start, StringComparison.Ordinal);
        Assert.IsGreaterThan(0, start);
        // EC2 takes at most 16 KB of user data before base64; leave room for substituted values.
        Assert.IsLessThan(12 * 1024, end - start);
    }
}
