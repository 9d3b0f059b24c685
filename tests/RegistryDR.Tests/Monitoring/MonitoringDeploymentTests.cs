using RegistryDR.Tests.Infrastructure;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Tests.Deployment;

namespace RegistryDR.Tests.Monitoring;

/// <summary>
/// How a CloudFormation node gets its monitoring: the template hands the health-check URL and the
/// metrics log group to bootstrap/user-data.sh (run here as a dry run under a temp root), which
/// puts the URL into registry-dr's configuration and points the CloudWatch agent at the EMF log
/// that the template's alarm depends on.
/// </summary>
[TestClass]
public sealed class MonitoringDeploymentTests
{
    private static readonly string Template = File.ReadAllText(Path.Combine(DeploymentTestSupport.CloudFormationDirectory, "registry.yaml"));

    public TestContext TestContext { get; set; } = null!;

    private static Dictionary<string, string> StackValues(string root) => DeploymentTestSupport.UserDataValues(root);

    private Task<ScriptRun> UserDataAsync(Dictionary<string, string> environment) =>
        DeploymentTestSupport.RunUserDataAsync(environment, TestContext.CancellationToken);

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task UserData_ListensOnTheHealthCheckPort_AndShipsTheEmfLogWithTheCloudWatchAgent()
    {
        using var rootScope = new TempDirectory("rdr-userdata-monitoring-");
        var root = rootScope.Path;
        var values = StackValues(root);
        values["RDR_MONITORING_URL"] = "http://0.0.0.0:8080";
        values["RDR_METRICS_LOG_GROUP"] = "/registry-dr/registry-prod/metrics";
        var run = await UserDataAsync(values);
        Assert.AreEqual(0, run.ExitCode, run.ToString());

        // registry-dr's configuration: the load balancer's port besides loopback, and valid.
        var generated = Path.Combine(root, "etc", "registry-dr", "registry-dr.json.generated");
        var configuration = new ConfigurationBuilder().AddJsonFile(generated).Build();
        var monitoring = new MonitoringOptions();
        configuration.GetSection("Monitoring").Bind(monitoring, o => o.ErrorOnUnknownConfiguration = true);
        CollectionAssert.AreEqual(new[] { "http://127.0.0.1:9465", "http://0.0.0.0:8080" }, monitoring.EffectiveUrls.ToList());
        var errors = new List<string>();
        MonitoringOptions.Validate(monitoring, errors);
        Assert.IsEmpty(errors, string.Join("; ", errors));
        Assert.AreEqual(MonitoringOptions.DefaultEmfLogPath, monitoring.EmfLogPath, "the agent below tails the default path");
        // The EMF Stack dimension, which the template's alarm selects, comes from Agent:StackName.
        Assert.AreEqual("registry-prod", configuration["Agent:StackName"]);

        // The CloudWatch agent: that file, to the stack's log group, one stream per instance.
        var agentConfig = Path.Combine(root, "opt", "aws", "amazon-cloudwatch-agent", "etc", "amazon-cloudwatch-agent.json");
        using var agent = JsonDocument.Parse(File.ReadAllText(agentConfig));
        var files = agent.RootElement.GetProperty("logs").GetProperty("logs_collected").GetProperty("files").GetProperty("collect_list");
        Assert.AreEqual(1, files.GetArrayLength());
        Assert.AreEqual(MonitoringOptions.DefaultEmfLogPath, files[0].GetProperty("file_path").GetString());
        Assert.AreEqual("/registry-dr/registry-prod/metrics", files[0].GetProperty("log_group_name").GetString());
        Assert.AreEqual("{instance_id}", files[0].GetProperty("log_stream_name").GetString());
        Assert.AreEqual("eu-west-1", agent.RootElement.GetProperty("agent").GetProperty("region").GetString());
        Assert.IsTrue(Directory.Exists(Path.Combine(root, "var", "log", "registry-dr")));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task UserData_WithoutMonitoringValues_KeepsTheDefaults_AndConfiguresNoAgent()
    {
        using var rootScope = new TempDirectory("rdr-userdata-monitoring-");
        var root = rootScope.Path;
        var run = await UserDataAsync(StackValues(root));
        Assert.AreEqual(0, run.ExitCode, run.ToString());
        using var generated = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "etc", "registry-dr", "registry-dr.json.generated")));
        Assert.IsFalse(generated.RootElement.TryGetProperty("Monitoring", out _), "loopback only, by default");
        Assert.IsFalse(File.Exists(Path.Combine(root, "opt", "aws", "amazon-cloudwatch-agent", "etc", "amazon-cloudwatch-agent.json")));
        StringAssert.Contains(run.Output, "the CloudWatch agent is not configured");
    }

    [TestMethod]
    public void TheTemplate_HandsBothToTheNode_AndItsAlarmWatchesWhatTheNodeWrites()
    {
        StringAssert.Contains(Template, "RDR_MONITORING_URL='${MonitoringUrl}'");
        StringAssert.Contains(Template, "RDR_METRICS_LOG_GROUP='${MetricsLogGroup}'");
        // registry-dr takes the health-check port only when it is not the registry's own 443.
        StringAssert.Contains(Template, "MonitoringUrl: !If [HealthCheckOnOtherPort, !Sub 'http://0.0.0.0:${HealthCheckPort}', '']");
        StringAssert.Contains(Template, "HealthCheckPath: /load_balancer_status");

        var alarm = Section(Template, "  BackupStaleAlarm:\n");
        StringAssert.Contains(alarm, $"Namespace: {MonitoringOptions.DefaultEmfNamespace}\n");
        StringAssert.Contains(alarm, "MetricName: BackupSucceeded\n");
        // The Stack dimension survives node replacement; a Host alarm would lose its metric then.
        StringAssert.Contains(alarm, "- Name: Stack\n          Value: !Ref 'AWS::StackName'\n");
        StringAssert.Contains(alarm, "Statistic: Sum\n");
        StringAssert.Contains(alarm, "Period: 60\n");
        StringAssert.Contains(alarm, "EvaluationPeriods: !Ref BackupAlarmMinutes\n");
        StringAssert.Contains(alarm, "DatapointsToAlarm: !Ref BackupAlarmMinutes\n");
        StringAssert.Contains(alarm, "ComparisonOperator: LessThanThreshold\n");
        StringAssert.Contains(alarm, "Threshold: 1\n");
        StringAssert.Contains(alarm, "TreatMissingData: breaching\n");
        StringAssert.Contains(alarm, "AlarmActions: [!If [CreateAlarmTopic, !Ref AlarmTopic, !Ref AlarmTopicArn]]");
        StringAssert.Contains(Template, "  BackupAlarmMinutes:\n    Type: Number\n    Default: 40\n");
        // One-minute periods: CloudWatch limits an alarm under an hour's period to one day in all.
        StringAssert.Contains(Template, "    MaxValue: 1440\n");
        StringAssert.Contains(Template, "log-group:${MetricsLogGroup}:*");
    }

    private static string Section(string text, string header)
    {
        var start = text.IndexOf(header, StringComparison.Ordinal);
        Assert.IsGreaterThanOrEqualTo(0, start, $"no '{header.Trim()}' in the template");
        var end = text.IndexOf("\n  ", start + header.Length, StringComparison.Ordinal);
        // The next resource: a line with exactly two spaces of indent followed by a name.
        while (end >= 0 && end + 3 < text.Length && text[end + 3] == ' ') end = text.IndexOf("\n  ", end + 1, StringComparison.Ordinal);
        return end < 0 ? text[start..] : text[start..end];
    }
}
