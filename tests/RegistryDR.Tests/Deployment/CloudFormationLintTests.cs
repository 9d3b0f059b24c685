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

    /// <summary>A copy of <paramref name="template"/> in <paramref name="directory"/> with each original text replaced once.</summary>
    private static string BrokenCopy(string directory, string template, params (string Original, string Replacement)[] changes)
    {
        var text = File.ReadAllText(Path.Combine(DeploymentTestSupport.CloudFormationDirectory, template));
        foreach (var (original, replacement) in changes)
        {
            var at = text.IndexOf(original, StringComparison.Ordinal);
            Assert.IsGreaterThanOrEqualTo(0, at, $"{template} no longer contains '{original}': update this test");
            text = string.Concat(text.AsSpan(0, at), replacement, text.AsSpan(at + original.Length));
        }
        var path = Path.Combine(directory, template);
        File.WriteAllText(path, text);
        return path;
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task EveryTemplatePassesCfnLint()
    {
        var run = await LintAsync();

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, "== cfn-lint 1.51.0 (pinned 1.51.0)\n== cloudformation/registry.yaml\n== cloudformation/replica-bucket.yaml\ncfn-lint: 2 template(s) clean");
    }

    /// <summary>
    /// One lint run over copies with a mistake of each kind the lint is there for (one cfn-lint
    /// process loads AWS's schemas once; each finding is reported on its own line, with its file).
    /// </summary>
    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task EachKindOfMistakeFailsTheLintAndIsNamed()
    {
        using var directory = new TempDirectory("rdr-cfn-");
        var registry = BrokenCopy(directory.Path, "registry.yaml",
            ("HttpTokens: required", "HttpTokenz: required"),
            ("SourceSecurityGroupId: !Ref LoadBalancerSecurityGroup", "SourceSecurityGroupId: !Ref LoadBalancerSecurityGrop"),
            ("DependsOn: [Listener, HttpListener]", "DependsOn: [Listenr, HttpListener]"),
            ("      - Assert: !Not [!Equals [!Ref ReplicaKmsKeyArn, '']]", "      - Assert: !Not [!Equals [!Ref ReplicaKmsKey, '']]"));
        var replica = BrokenCopy(directory.Path, "replica-bucket.yaml", ("BlockPublicPolicy: true", "BlockPublicPolicies: true"));

        var run = await LintAsync(registry, replica);

        Assert.AreEqual(1, run.ExitCode, run.ToString());
        StringAssert.Contains(run.Output, "cfn-lint: errors found");
        var findings = run.Output.Split('\n').Where(l => l.StartsWith(directory.Path, StringComparison.Ordinal)).ToList();
        string Finding(string file, string rule, string message) =>
            findings.SingleOrDefault(f => f.StartsWith(file + ":", StringComparison.Ordinal) && f.Contains($":{rule}:{message}", StringComparison.Ordinal))
            ?? throw new AssertFailedException($"no {rule} '{message}' for {file} in:{Environment.NewLine}{run.Output}");
        // A misspelled property, a Ref to nothing, a DependsOn to nothing, a Rule on a missing parameter.
        Finding(registry, "E3002", "Additional properties are not allowed ('HttpTokenz' was unexpected. Did you mean 'HttpTokens'?)");
        Finding(registry, "E1020", "'LoadBalancerSecurityGrop' is not one of [");
        Finding(registry, "E3005", "'Listenr' is not one of [");
        Finding(registry, "E1020", "'ReplicaKmsKey' is not one of [");
        // The second template is linted in the same run.
        Finding(replica, "E3002", "Additional properties are not allowed ('BlockPublicPolicies' was unexpected. Did you mean 'BlockPublicPolicy'?)");
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
