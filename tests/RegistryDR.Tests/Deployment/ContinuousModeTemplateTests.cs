using System.Text.Json;
using System.Text.Json.Nodes;
using RegistryDR.Configuration;
using RegistryDR.Continuous;
using RegistryDR.Monitoring;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// Continuous mode in cloudformation/registry.yaml (issue 17): the DatabaseMode and
/// ArchiveTimeoutSeconds parameters reach the node's user data, in every role that runs a node,
/// and the two WAL archive alarms exist exactly in continuous mode on a node and watch the series
/// registry-dr's EMF writer really produces.
/// </summary>
[TestClass]
public sealed class ContinuousModeTemplateTests
{
    private static readonly CloudFormationTemplate Template = CloudFormationTemplate.Load("registry.yaml");
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 5, 0, 0, TimeSpan.Zero);

    private static void AssertJson(string expectedJson, JsonNode? actual, string what) =>
        Assert.IsTrue(JsonNode.DeepEquals(JsonNode.Parse(expectedJson), actual), $"{what}: expected {expectedJson}, got {actual?.ToJsonString()}");

    private static Dictionary<string, string> Parameters(params (string Name, string Value)[] values) =>
        Template.ParameterValues(values.ToDictionary(v => v.Name, v => v.Value));

    private static (string Name, string Value)[] Recovery(string role) =>
        [("Role", role), ("ExistingBackupBucketName", "registry-prod-replica-backups"), ("ExistingImageBucketName", "registry-prod-replica-images")];

    private static string Stub => (string)Template.Properties("LaunchTemplate")["LaunchTemplateData"]!["UserData"]!["Fn::Base64"]!["Fn::Sub"]![0]!;

    [TestMethod]
    public void TheModeAndArchiveTimeoutAreParameters_HandedToTheNodesUserData()
    {
        AssertJson("""
            {"Type": "String", "Default": "logical", "AllowedValues": ["logical", "continuous"]}
            """, Without(Template.Parameters["DatabaseMode"], "Description"), "DatabaseMode");
        AssertJson("""
            {"Type": "Number", "Default": "60", "MinValue": "1", "MaxValue": "3600"}
            """, Without(Template.Parameters["ArchiveTimeoutSeconds"], "Description"), "ArchiveTimeoutSeconds");
        AssertJson("""
            {"Type": "Number", "Default": "300", "MinValue": "60", "MaxValue": "86400"}
            """, Without(Template.Parameters["WalArchiveLagAlarmSeconds"], "Description"), "WalArchiveLagAlarmSeconds");
        StringAssert.Contains(Stub, "\nRDR_DATABASE_MODE='${DatabaseMode}' \\\n");
        StringAssert.Contains(Stub, "\nRDR_ARCHIVE_TIMEOUT_SECONDS='${ArchiveTimeoutSeconds}' \\\n");
        // Both are in the launch template, so changing them rolls the node (cloudformation/README.md lists them).
        var names = CloudFormationTemplate.ReferencedNames(Template.Resource("LaunchTemplate"));
        Assert.IsTrue(names.Contains("DatabaseMode") && names.Contains("ArchiveTimeoutSeconds"), string.Join(", ", names));
        Assert.IsEmpty(Template.RuleFailures(Parameters(("DatabaseMode", "continuous"))), "continuous mode with the other defaults must deploy");
    }

    [TestMethod]
    public void TheArchiveTimeoutRangeIsWhatRegistryDrAccepts()
    {
        // The parameter's bounds against the product's own validation of Continuous:ArchiveTimeout.
        List<string> Errors(int seconds)
        {
            var options = new RegistryDrOptions();
            options.Database.Mode = DatabaseMode.Continuous;
            options.Continuous.DataDirectory = "/var/lib/pgsql/data";
            options.Continuous.ServerStopCommand = ["systemctl", "stop", "postgresql.service"];
            options.Continuous.ServerStartCommand = ["systemctl", "start", "postgresql.service"];
            options.Continuous.ArchiveTimeout = TimeSpan.FromSeconds(seconds);
            var errors = new List<string>();
            ContinuousOptions.Validate(options, errors);
            return errors;
        }
        var min = int.Parse((string)Template.Parameters["ArchiveTimeoutSeconds"]!["MinValue"]!, System.Globalization.CultureInfo.InvariantCulture);
        var max = int.Parse((string)Template.Parameters["ArchiveTimeoutSeconds"]!["MaxValue"]!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.IsEmpty(Errors(min), string.Join("; ", Errors(min)));
        Assert.IsEmpty(Errors(max), string.Join("; ", Errors(max)));
        CollectionAssert.AreEqual(new[] { "Continuous:ArchiveTimeout is 00:00:00; it must be between 00:00:01 and 01:00:00 (PostgreSQL's archive_timeout)." }, Errors(min - 1));
        CollectionAssert.AreEqual(new[] { "Continuous:ArchiveTimeout is 01:00:01; it must be between 00:00:01 and 01:00:00 (PostgreSQL's archive_timeout)." }, Errors(max + 1));
    }

    [TestMethod]
    public void TheWalAlarmsExistExactlyForAContinuousNode_InEveryRoleThatRunsOne()
    {
        string[] walAlarms = ["WalArchiveLagAlarm", "WalArchiveFailingAlarm"];
        var cases = new (string What, Dictionary<string, string> Parameters, bool Expected)[]
        {
            ("primary, logical (the default)", Parameters(), false),
            ("primary, continuous", Parameters(("DatabaseMode", "continuous")), true),
            ("standby (pilot light), continuous", Parameters([.. Recovery("standby"), ("DatabaseMode", "continuous")]), false),
            ("failover, continuous", Parameters([.. Recovery("failover"), ("DatabaseMode", "continuous")]), true),
            ("failover, logical", Parameters(Recovery("failover")), false),
        };
        foreach (var (what, parameters, expected) in cases)
        {
            Assert.IsEmpty(Template.RuleFailures(parameters), what);
            var created = Template.CreatedResources(parameters);
            foreach (var alarm in walAlarms) Assert.AreEqual(expected, created.Contains(alarm), $"{alarm}: {what}");
            foreach (var output in new[] { "WalArchiveLagAlarmName", "WalArchiveFailingAlarmName" })
                Assert.AreEqual(expected, Template.Condition((string)Template.Root["Outputs"]![output]!["Condition"]!, parameters), $"output {output}: {what}");
        }
        // Failing a continuous standby over adds the node's alarms, the WAL ones included; the launch
        // template (mode and timeout included) is the one the standby already has.
        var standby = Template.CreatedResources(cases[2].Parameters);
        var failover = Template.CreatedResources(cases[3].Parameters);
        CollectionAssert.AreEquivalent(new[] { "BackupStaleAlarm", "RegistryDownAlarm", "WalArchiveLagAlarm", "WalArchiveFailingAlarm" }, failover.Except(standby).ToList());
        Assert.IsTrue(JsonNode.DeepEquals(Template.Resolve(Template.Resource("LaunchTemplate"), cases[2].Parameters), Template.Resolve(Template.Resource("LaunchTemplate"), cases[3].Parameters)));
    }

    [TestMethod]
    public void TheWalAlarmsAreConfiguredExactly()
    {
        const string actions = """[{"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}]""";
        AssertJson($$$"""
            {"Namespace": "RegistryDR", "MetricName": "WalArchiveLagSeconds",
             "Dimensions": [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}],
             "Statistic": "Maximum", "Period": "60", "EvaluationPeriods": "3", "DatapointsToAlarm": "2",
             "Threshold": {"Ref": "WalArchiveLagAlarmSeconds"}, "ComparisonOperator": "GreaterThanThreshold",
             "TreatMissingData": "ignore", "AlarmActions": {{{actions}}}, "OKActions": {{{actions}}}}
            """, Without(Template.Properties("WalArchiveLagAlarm"), "AlarmDescription"), "WalArchiveLagAlarm");
        AssertJson($$$"""
            {"Namespace": "RegistryDR", "MetricName": "WalArchiveFailing",
             "Dimensions": [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}],
             "Statistic": "Maximum", "Period": "60", "EvaluationPeriods": "3", "DatapointsToAlarm": "2",
             "Threshold": "1", "ComparisonOperator": "GreaterThanOrEqualToThreshold",
             "TreatMissingData": "ignore", "AlarmActions": {{{actions}}}, "OKActions": {{{actions}}}}
            """, Without(Template.Properties("WalArchiveFailingAlarm"), "AlarmDescription"), "WalArchiveFailingAlarm");
        foreach (var alarm in new[] { "WalArchiveLagAlarm", "WalArchiveFailingAlarm" })
        {
            Assert.AreEqual("WatchWalArchive", (string)Template.Resource(alarm)["Condition"]!, alarm);
            StringAssert.Contains((string)Template.Properties(alarm)["AlarmDescription"]!["Fn::Sub"]!, $"See docs/monitoring.md ({alarm}).", alarm);
        }
    }

    /// <summary>
    /// The alarms against the line the worker's <see cref="EmfWriter"/> writes for a node of stack
    /// registry-prod (user-data.sh sets Agent:StackName to the stack's name, the alarms' Stack value):
    /// same namespace, a dimension set of exactly the alarm's dimension names, the metric in the
    /// directive, and values on the right side of each threshold for a healthy and a broken archive.
    /// </summary>
    [TestMethod]
    public void TheWalAlarmsWatchTheSeriesTheEmfWriterProduces()
    {
        using var dir = new TempDirectory("rdr-emf-alarm-");
        var path = Path.Combine(dir.Path, "metrics.emf.log");
        // A healthy archive (nothing waiting), then, more than a minute later, a failing one with WAL waiting 400 s.
        var healthy = new WalArchiveObservation(Now, 50, 0, "000000010000000000000031", Now.AddSeconds(-20), null, null, 0);
        var broken = new WalArchiveObservation(Now.AddSeconds(61), 50, 4, "000000010000000000000031", Now.AddSeconds(-339), "000000010000000000000032", Now.AddSeconds(60), 5 << 20);
        var writer = new EmfWriter(new MonitoringOptions { EmfLogPath = path }, "ip-10-0-1-23", "registry-prod", new ManualTimeProvider(Now), TestNode.Logger<EmfWriter>());
        writer.WalArchiveObserved(healthy);
        writer.WalArchiveObserved(broken);
        var lines = File.ReadAllLines(path);
        Assert.HasCount(2, lines);
        var lagThreshold = double.Parse((string)Template.Parameters["WalArchiveLagAlarmSeconds"]!["Default"]!, System.Globalization.CultureInfo.InvariantCulture);
        var values = new Dictionary<string, (double Healthy, double Broken)>();

        foreach (var alarm in new[] { "WalArchiveLagAlarm", "WalArchiveFailingAlarm" })
        {
            var properties = Template.Properties(alarm);
            var metric = (string)properties["MetricName"]!;
            var dimensionNames = properties["Dimensions"]!.AsArray().Select(d => (string)d!["Name"]!).ToList();
            var sample = new List<double>();
            foreach (var line in lines)
            {
                using var document = JsonDocument.Parse(line);
                var root = document.RootElement;
                var directive = root.GetProperty("_aws").GetProperty("CloudWatchMetrics").EnumerateArray()
                    .Single(d => d.GetProperty("Metrics").EnumerateArray().Any(m => m.GetProperty("Name").GetString() == metric));
                Assert.AreEqual((string)properties["Namespace"]!, directive.GetProperty("Namespace").GetString(), alarm);
                var sets = directive.GetProperty("Dimensions").EnumerateArray().Select(s => s.EnumerateArray().Select(k => k.GetString()!).ToList()).ToList();
                Assert.IsTrue(sets.Any(s => s.SequenceEqual(dimensionNames)), $"{alarm}: the EMF line has no dimension set [{string.Join(", ", dimensionNames)}]: {line}");
                Assert.AreEqual("registry-prod", root.GetProperty("Stack").GetString(), alarm);
                sample.Add(root.GetProperty(metric).GetDouble());
            }
            values[metric] = (sample[0], sample[1]);
        }

        Assert.AreEqual((0.0, 400.0), values["WalArchiveLagSeconds"]);
        Assert.IsTrue(values["WalArchiveLagSeconds"].Healthy <= lagThreshold && values["WalArchiveLagSeconds"].Broken > lagThreshold, "GreaterThanThreshold 300 s");
        Assert.AreEqual((0.0, 1.0), values["WalArchiveFailing"], "GreaterThanOrEqualToThreshold 1");
    }

    private static JsonObject Without(JsonNode? node, string key)
    {
        var copy = node!.DeepClone().AsObject();
        copy.Remove(key);
        return copy;
    }
}
