using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// The CloudFormation templates pass AWS's cfn-lint at the version scripts/lint-cloudformation.sh
/// pins, the lint really fails on the mistakes it is there to catch, and any other version (or
/// none) is refused with the command that installs the right one.
/// </summary>
[TestClass]
public sealed class CloudFormationLintTests
{
    // cfn-lint loads AWS's resource schemas on every run: about 10 s per template, much more on a busy machine.
    private static readonly TimeSpan LintTimeout = TimeSpan.FromMinutes(8);

    public TestContext TestContext { get; set; } = null!;

    private static string LintScript => Path.Combine(DeploymentTestSupport.RepoRoot, "scripts", "lint-cloudformation.sh");

    private Task<ScriptRun> LintAsync(params string[] templates) =>
        DeploymentTestSupport.RunAsync("bash", [LintScript, .. templates], null, LintTimeout, TestContext.CancellationToken);

    private Task<ScriptRun> LintWithPathAsync(string path) =>
        DeploymentTestSupport.RunAsync("bash", [LintScript], new Dictionary<string, string> { ["PATH"] = path }, LintTimeout, TestContext.CancellationToken);

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
        StringAssert.Contains(run.Output, "== cfn-lint 1.51.0 (pinned 1.51.0)\n");
        StringAssert.Contains(run.Output, "== cloudformation/registry.yaml\n== cloudformation/replica-bucket.yaml\ncfn-lint: 2 template(s) clean");
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
            StringAssert.Contains(run.Output, ":E3002:Additional properties are not allowed ('HttpTokenz' was unexpected. Did you mean 'HttpTokens'?)");
            StringAssert.Contains(run.Output, "cfn-lint: errors found");
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
            StringAssert.Contains(run.Output, ":E1020:'LoadBalancerSecurityGrop' is not one of [");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(broken)!, recursive: true);
        }
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task AMisspelledDependsOnTargetFailsTheLint()
    {
        var broken = BrokenCopy("registry.yaml", "DependsOn: [Listener, HttpListener]", "DependsOn: [Listenr, HttpListener]");
        try
        {
            var run = await LintAsync(broken);

            Assert.AreEqual(1, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Output, ":E3005:'Listenr' is not one of [");
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
            StringAssert.Contains(run.Output, ":E3002:Additional properties are not allowed ('BlockPublicPolicies' was unexpected. Did you mean 'BlockPublicPolicy'?)");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(broken)!, recursive: true);
        }
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task ARuleOnAMissingParameterFailsTheLint()
    {
        var broken = BrokenCopy("registry.yaml", "      - Assert: !Not [!Equals [!Ref ReplicaKmsKeyArn, '']]", "      - Assert: !Not [!Equals [!Ref ReplicaKmsKey, '']]");
        try
        {
            var run = await LintAsync(broken);

            Assert.AreEqual(1, run.ExitCode, run.ToString());
            StringAssert.Contains(run.Output, ":E1020:'ReplicaKmsKey' is not one of [");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(broken)!, recursive: true);
        }
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task AnyOtherCfnLintVersionIsRefusedWithTheInstallCommand()
    {
        using var tools = new TempDirectory("rdr-cfnlint-");
        DeploymentTestSupport.WriteExecutable(Path.Combine(tools.Path, "cfn-lint"), """
            #!/bin/bash
            if [[ "$1" == --version ]]; then echo "cfn-lint 1.9.7"; exit 0; fi
            echo "this cfn-lint must not lint anything" >&2
            exit 0
            """);

        var run = await LintWithPathAsync($"{tools.Path}:/usr/bin:/bin");

        Assert.AreEqual(2, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, $"error: cfn-lint 1.51.0 is required, but '{tools.Path}/cfn-lint' is 'cfn-lint 1.9.7'; install it with: python3 -m pip install 'cfn-lint==1.51.0'");
        Assert.DoesNotContain("must not lint", run.Output);
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task AMissingCfnLintIsRefusedWithTheInstallCommand()
    {
        using var empty = new TempDirectory("rdr-cfnlint-");

        var run = await LintWithPathAsync($"{empty.Path}:/usr/bin:/bin");

        Assert.AreEqual(2, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, "error: cfn-lint is not installed; install it with: python3 -m pip install 'cfn-lint==1.51.0'");
    }
}
