namespace RegistryDR.Tests.Deployment;

/// <summary>
/// The CloudFormation templates pass npm cfn-lint (pinned in cloudformation/package-lock.json,
/// pointed at @aws-cdk/cfnspec's newer resource specification by scripts/lint-cloudformation.sh),
/// and the lint really fails on the mistakes it is there to catch.
/// </summary>
[TestClass]
public sealed class CloudFormationLintTests
{
    // The first run does `npm ci` (about 115 packages) in cloudformation/.
    private static readonly TimeSpan LintTimeout = TimeSpan.FromMinutes(8);

    public TestContext TestContext { get; set; } = null!;

    private static string LintScript => Path.Combine(DeploymentTestSupport.RepoRoot, "scripts", "lint-cloudformation.sh");

    private Task<ScriptRun> LintAsync(params string[] templates) =>
        DeploymentTestSupport.RunAsync("bash", [LintScript, .. templates], null, LintTimeout, TestContext.CancellationToken);

    /// <summary>The registry template with one line replaced, in a temp file the lint is pointed at.</summary>
    private static string BrokenCopy(string template, string original, string replacement)
    {
        var text = File.ReadAllText(Path.Combine(DeploymentTestSupport.CloudFormationDirectory, template));
        Assert.Contains(original, text, $"{template} no longer contains '{original}': update this test");
        var directory = Directory.CreateTempSubdirectory("rdr-cfn-").FullName;
        var path = Path.Combine(directory, template);
        var at = text.IndexOf(original, StringComparison.Ordinal);
        File.WriteAllText(path, string.Concat(text.AsSpan(0, at), replacement, text.AsSpan(at + original.Length)));
        return path;
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task EveryTemplatePassesCfnLint()
    {
        var run = await LintAsync();

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, "cloudformation/registry.yaml");
        StringAssert.Contains(run.Output, "cloudformation/replica-bucket.yaml");
        StringAssert.Contains(run.Output, "with resource specification");
        StringAssert.Contains(run.Output, "2 template(s) clean");
        Assert.DoesNotContain("crit", run.Output.Replace("0 crit", "", StringComparison.Ordinal), run.Output);
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task AMisspelledPropertyFailsTheLintAndIsNamed()
    {
        var broken = BrokenCopy("registry.yaml", "HttpTokens: required", "HttpTokenz: required");
        try
        {
            var run = await LintAsync(broken);

            Assert.AreEqual(1, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Output, "HttpTokenz is not a valid property of AWS::EC2::LaunchTemplate.MetadataOptions");
            StringAssert.Contains(run.Output, "errors found");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(broken)!, recursive: true);
        }
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task ARefToAMissingResourceFailsTheLintAndIsNamed()
    {
        var broken = BrokenCopy("registry.yaml",
            "SourceSecurityGroupId: !Ref LoadBalancerSecurityGroup", "SourceSecurityGroupId: !Ref LoadBalancerSecurityGrop");
        try
        {
            var run = await LintAsync(broken);

            Assert.AreEqual(1, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Output, "Referenced value LoadBalancerSecurityGrop does not exist");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(broken)!, recursive: true);
        }
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task AMisspelledDependsOnOrCreationPolicyKeyFailsTheExtraCheck()
    {
        // cfn-lint 1.9 does not look at resource attributes; tools/check-references.js does.
        var broken = BrokenCopy("registry.yaml", "DependsOn: Listener", "DependsOn: Listenr");
        try
        {
            var run = await LintAsync(broken);

            Assert.AreEqual(1, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Output, "DependsOn: resource 'Listenr' does not exist");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(broken)!, recursive: true);
        }
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task AnErrorInTheReplicaTemplateFailsTheLint()
    {
        var broken = BrokenCopy("replica-bucket.yaml", "BlockPublicPolicy: true", "BlockPublicPolicies: true");
        try
        {
            var run = await LintAsync(broken);

            Assert.AreEqual(1, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Output, "BlockPublicPolicies is not a valid property");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(broken)!, recursive: true);
        }
    }
}
