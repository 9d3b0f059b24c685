using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using RegistryDR.Configuration;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// What the node and the operator rely on in cloudformation/registry.yaml, read as a structure
/// (<see cref="CloudFormationTemplate"/>), with its Conditions and Rules evaluated for concrete
/// parameter sets. (Whether the template is valid CloudFormation is <see cref="CloudFormationLintTests"/>' job.)
/// </summary>
[TestClass]
public sealed partial class RegistryTemplateTests
{
    private static readonly CloudFormationTemplate Template = CloudFormationTemplate.Load("registry.yaml");
    private static readonly CloudFormationTemplate Replica = CloudFormationTemplate.Load("replica-bucket.yaml");
    private static readonly string TemplateText = File.ReadAllText(Path.Combine(DeploymentTestSupport.CloudFormationDirectory, "registry.yaml"));

    /// <summary>The alarm action every alarm must have: the given topic, or the one the stack creates.</summary>
    private static readonly JsonNode AlarmTarget = JsonNode.Parse("""[{"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}]""")!;

    [GeneratedRegex(@"^\s*(RDR_[A-Z0-9_]+)=", RegexOptions.Multiline)]
    private static partial Regex StubAssignment();

    [GeneratedRegex(@"for name in ([^;]+);")]
    private static partial Regex RequiredVariables();

    [GeneratedRegex(@"^Parameters that roll the node: (.+)$", RegexOptions.Multiline)]
    private static partial Regex RollingParametersLine();

    private static void AssertJson(string expectedJson, JsonNode? actual, string what) =>
        Assert.IsTrue(JsonNode.DeepEquals(JsonNode.Parse(expectedJson), actual), $"{what}: expected {expectedJson}, got {actual?.ToJsonString()}");

    private static string Default(string parameter) => (string)Template.Parameters[parameter]!["Default"]!;

    [TestMethod]
    public void TheGroupIsExactlyOneNodeWithALaunchAndATerminatingHook()
    {
        // The primary (Role's default); a standby's pilot light is StandbyTemplateTests'.
        var group = Template.Resolve(Template.Properties(new AgentOptions().SignalResource!), Template.ParameterValues())!;
        Assert.AreEqual("AWS::AutoScaling::AutoScalingGroup", (string)Template.Resource("RegistryGroup")["Type"]!);
        Assert.AreEqual(("1", "1", "1"), ((string)group["MinSize"]!, (string)group["MaxSize"]!, (string)group["DesiredCapacity"]!));
        AssertJson($$$"""
            [
              {"LifecycleHookName": "{{{new AgentOptions().LifecycleHookName}}}", "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
               "DefaultResult": "ABANDON", "HeartbeatTimeout": {"Ref": "LifecycleHeartbeatTimeout"}},
              {"LifecycleHookName": "registry-dr-terminate", "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
               "DefaultResult": "CONTINUE", "HeartbeatTimeout": {"Ref": "TerminationHeartbeatTimeout"}}
            ]
            """, group["LifecycleHookSpecificationList"], "lifecycle hooks");
        AssertJson("""{"ResourceSignal": {"Count": "1", "Timeout": {"Ref": "SignalTimeout"}}, "AutoScalingCreationPolicy": {"MinSuccessfulInstancesPercent": "100"}}""",
            Template.Resolve(Template.Resource("RegistryGroup")["CreationPolicy"], Template.ParameterValues()), "creation policy");
        Assert.AreEqual("true", (string)Template.Resource("RegistryGroup")["UpdatePolicy"]!["AutoScalingRollingUpdate"]!["WaitOnResourceSignals"]!);
        // The hooks the node reports to are the ones declared here (user data → boot.env and config).
        StringAssert.Contains(TemplateText, "RDR_LAUNCH_HOOK_NAME=registry-dr-launch \\");
        StringAssert.Contains(TemplateText, "RDR_TERMINATION_HOOK_NAME=registry-dr-terminate \\");
        StringAssert.Contains(TemplateText, "--lifecycle-hook-name registry-dr-launch");
        StringAssert.Contains(TemplateText, $"--logical-resource-id {new AgentOptions().SignalResource}");
    }

    [TestMethod]
    public void HealthIsRegistryDrsLoadBalancerStatusOnItsHttpPortAndToleratesFiveMinutes()
    {
        Assert.AreEqual(("HTTP", "8080"), (Default("HealthCheckProtocol"), Default("HealthCheckPort")));
        Assert.AreEqual("600", Default("HealthCheckGracePeriod"));
        foreach (var (targetGroup, port) in new[] { ("TargetGroup", "443"), ("HttpTargetGroup", "80") })
        {
            var tg = Template.Properties(targetGroup);
            Assert.AreEqual(("TCP", port), ((string)tg["Protocol"]!, (string)tg["Port"]!), targetGroup);
            Assert.AreEqual("/load_balancer_status", (string)tg["HealthCheckPath"]!, targetGroup);
            AssertJson("""{"Ref": "HealthCheckProtocol"}""", tg["HealthCheckProtocol"], targetGroup);
            AssertJson("""{"Ref": "HealthCheckPort"}""", tg["HealthCheckPort"], targetGroup);
            // 10 failed checks 30 s apart: a registry hiccup of up to 5 minutes does not replace the node.
            Assert.AreEqual(300, int.Parse((string)tg["HealthCheckIntervalSeconds"]!, CultureInfo.InvariantCulture) *
                                 int.Parse((string)tg["UnhealthyThresholdCount"]!, CultureInfo.InvariantCulture), targetGroup);
            Assert.AreEqual("200", (string)tg["Matcher"]!["HttpCode"]!, targetGroup);
        }
        // One listener per port, each forwarding to the target group of that port.
        var listeners = Template.ResourcesOfType("AWS::ElasticLoadBalancingV2::Listener")
            .ToDictionary(l => (string)Template.Properties(l)["Port"]!, l => (string)Template.Properties(l)["DefaultActions"]![0]!["TargetGroupArn"]!["Ref"]!);
        CollectionAssert.AreEquivalent(new Dictionary<string, string> { ["443"] = "TargetGroup", ["80"] = "HttpTargetGroup" }, listeners);
        AssertJson("""[{"Ref": "TargetGroup"}, {"Ref": "HttpTargetGroup"}]""", Template.Properties("RegistryGroup")["TargetGroupARNs"], "group's target groups");
        Assert.AreEqual("ELB", (string)Template.Properties("RegistryGroup")["HealthCheckType"]!);
    }

    [TestMethod]
    public void TheAmiIsAPinnedParameterAndMetadataTagsStayOff()
    {
        var imageId = Template.Parameters["ImageId"]!.AsObject();
        Assert.AreEqual("AWS::EC2::Image::Id", (string)imageId["Type"]!);
        Assert.IsNull(imageId["Default"], "the AMI must be chosen, not defaulted");
        // No parameter is resolved from SSM at each update (that would pick a new AMI silently).
        Assert.IsEmpty(Template.Parameters.Where(p => ((string)p.Value!["Type"]!).StartsWith("AWS::SSM::", StringComparison.Ordinal)).Select(p => p.Key).ToList());
        var data = Template.Properties("LaunchTemplate")["LaunchTemplateData"]!;
        AssertJson("""{"Ref": "ImageId"}""", data["ImageId"], "ImageId");
        AssertJson("""{"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": {"Ref": "MetadataHopLimit"}, "InstanceMetadataTags": "disabled"}""",
            data["MetadataOptions"], "metadata options");
    }

    [TestMethod]
    public void TheReadmeNamesExactlyTheParametersThatRollTheNode()
    {
        // What a change to rolls the node: anything in the launch template (a new version) and the
        // group's subnets; conditions count through the parameters they test.
        var launchTemplate = Template.Resource("LaunchTemplate");
        var names = new HashSet<string>(CloudFormationTemplate.ReferencedNames(launchTemplate));
        var pending = new Queue<string>(CloudFormationTemplate.ReferencedConditions(launchTemplate));
        var seen = new HashSet<string>();
        while (pending.TryDequeue(out var condition))
        {
            if (!seen.Add(condition)) continue;
            names.UnionWith(CloudFormationTemplate.ReferencedNames(Template.Conditions[condition]));
            foreach (var nested in CloudFormationTemplate.ReferencedConditions(Template.Conditions[condition])) pending.Enqueue(nested);
        }
        names.UnionWith(CloudFormationTemplate.ReferencedNames(Template.Properties("RegistryGroup")["VPCZoneIdentifier"]));
        var rolling = names.Where(n => Template.Parameters.ContainsKey(n)).Order(StringComparer.Ordinal).ToList();

        var readme = File.ReadAllText(Path.Combine(DeploymentTestSupport.CloudFormationDirectory, "README.md"));
        var line = RollingParametersLine().Match(readme);
        Assert.IsTrue(line.Success, "cloudformation/README.md has no line 'Parameters that roll the node: ...'");
        var documented = Regex.Matches(line.Groups[1].Value, "`([A-Za-z0-9]+)`").Select(m => m.Groups[1].Value).Order(StringComparer.Ordinal).ToList();
        CollectionAssert.AreEqual(rolling, documented, $"the template rolls the node for: {string.Join(", ", rolling.Select(n => $"`{n}`"))}");
        // ... and the monitoring and storage settings an operator tunes are not among them.
        foreach (var unrelated in new[] { "AlarmTopicArn", "AlarmEmail", "BackupAlarmMinutes", "RootDiskAlarmPercent", "NoncurrentVersionExpirationDays",
                     "BackupNoncurrentVersionExpirationDays", "EnableReplicationTimeControl", "HealthCheckGracePeriod", "SignalTimeout" })
            Assert.DoesNotContain(unrelated, rolling);
    }

    [TestMethod]
    public void EveryAlarmNotifiesTheGivenTopicOrOneTheStackCreates()
    {
        var alarms = Template.ResourcesOfType("AWS::CloudWatch::Alarm");
        var metrics = alarms.ToDictionary(a => a, a => $"{(string)Template.Properties(a)["Namespace"]!}/{(string)Template.Properties(a)["MetricName"]!}");
        CollectionAssert.AreEquivalent(new Dictionary<string, string>
        {
            ["BackupStaleAlarm"] = "RegistryDR/BackupSucceeded",
            ["RegistryDownAlarm"] = "AWS/NetworkELB/HealthyHostCount",
            ["LaunchFailureAlarm"] = "AWS/Events/TriggeredRules",
            ["RootDiskAlarm"] = "RegistryDR/Node/disk_used_percent",
            ["BackupReplicationFailedAlarm"] = "AWS/S3/OperationsFailedReplication",
            ["BackupReplicationLatencyAlarm"] = "AWS/S3/ReplicationLatency",
            ["ImageReplicationFailedAlarm"] = "AWS/S3/OperationsFailedReplication",
            ["ImageReplicationLatencyAlarm"] = "AWS/S3/ReplicationLatency",
            ["WalArchiveLagAlarm"] = "RegistryDR/WalArchiveLagSeconds",
            ["WalArchiveFailingAlarm"] = "RegistryDR/WalArchiveFailing",
        }, metrics);
        foreach (var alarm in alarms)
        {
            AssertJson(AlarmTarget.ToJsonString(), Template.Properties(alarm)["AlarmActions"], $"{alarm} AlarmActions");
            AssertJson(AlarmTarget.ToJsonString(), Template.Properties(alarm)["OKActions"], $"{alarm} OKActions");
        }

        var defaults = Template.ParameterValues();
        Assert.IsTrue(Template.CreatedResources(defaults).Contains("AlarmTopic"), "no AlarmTopicArn: the stack creates the topic");
        Assert.IsFalse(Template.CreatedResources(defaults).Contains("AlarmEmailSubscription"));
        Assert.IsTrue(Template.CreatedResources(Template.ParameterValues(new Dictionary<string, string> { ["AlarmEmail"] = "oncall@example.com" })).Contains("AlarmEmailSubscription"));
        var given = Template.CreatedResources(Template.ParameterValues(new Dictionary<string, string> { ["AlarmTopicArn"] = "arn:aws:sns:eu-west-1:123456789012:oncall" }));
        Assert.IsFalse(given.Contains("AlarmTopic"), "a given topic is used, none is created");
    }

    [TestMethod]
    public void TheAlarmsWatchWhatTheyClaim()
    {
        var down = Template.Properties("RegistryDownAlarm");
        AssertJson("""[{"Name": "LoadBalancer", "Value": {"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]}}, {"Name": "TargetGroup", "Value": {"Fn::GetAtt": ["TargetGroup", "TargetGroupFullName"]}}]""",
            down["Dimensions"], "RegistryDownAlarm dimensions");
        Assert.AreEqual(("Minimum", "1", "LessThanThreshold"), ((string)down["Statistic"]!, (string)down["Threshold"]!, (string)down["ComparisonOperator"]!));

        AssertJson("""{"source": ["aws.autoscaling"], "detail-type": ["EC2 Instance Launch Unsuccessful"], "detail": {"AutoScalingGroupName": [{"Fn::Sub": "${AWS::StackName}-registry"}]}}""",
            Template.Properties("LaunchFailureRule")["EventPattern"], "launch failure rule");
        AssertJson("""[{"Name": "RuleName", "Value": {"Ref": "LaunchFailureRule"}}]""", Template.Properties("LaunchFailureAlarm")["Dimensions"], "LaunchFailureAlarm");

        // Replication alarms exist exactly when that bucket replicates, on the metrics its rule enables.
        foreach (var (prefix, bucket, replica, ruleId) in new[]
                 {
                     ("Backup", "BackupBucket", "ReplicaBackupBucketArn", "backups-to-replica-region"),
                     ("Image", "ImageBucket", "ReplicaImageBucketArn", "images-to-replica-region"),
                 })
        {
            var rule = Template.Properties(bucket)["ReplicationConfiguration"]!["Fn::If"]![1]!["Rules"]![0]!;
            Assert.AreEqual(ruleId, (string)rule["Id"]!);
            Assert.AreEqual("Enabled", (string)rule["Destination"]!["Metrics"]!["Status"]!, $"{bucket} replication metrics");
            foreach (var alarm in new[] { $"{prefix}ReplicationFailedAlarm", $"{prefix}ReplicationLatencyAlarm" })
            {
                AssertJson($$$"""
                    [{"Name": "SourceBucket", "Value": {"Ref": "{{{bucket}}}"}},
                     {"Name": "DestinationBucket", "Value": {"Fn::Select": ["5", {"Fn::Split": [":", {"Ref": "{{{replica}}}"}]}]}},
                     {"Name": "RuleId", "Value": "{{{ruleId}}}"}]
                    """, Template.Properties(alarm)["Dimensions"], alarm);
                Assert.IsFalse(Template.CreatedResources(Template.ParameterValues()).Contains(alarm), $"{alarm} without replication");
                Assert.IsTrue(Template.CreatedResources(Template.ParameterValues(new Dictionary<string, string> { [replica] = "arn:aws:s3:::replica-bucket" })).Contains(alarm), alarm);
            }
        }
        // "arn:aws:s3:::name" split on ':' has the bucket name at index 5.
        Assert.AreEqual("replica-bucket", "arn:aws:s3:::replica-bucket".Split(':')[5]);
        Assert.AreEqual("900", (string)Template.Properties("BackupReplicationLatencyAlarm")["Threshold"]!);

        AssertJson("""[{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}, {"Name": "path", "Value": "/"}]""", Template.Properties("RootDiskAlarm")["Dimensions"], "RootDiskAlarm");
        AssertJson("""{"Ref": "RootDiskAlarmPercent"}""", Template.Properties("RootDiskAlarm")["Threshold"], "RootDiskAlarm threshold");
    }

    [TestMethod]
    public void BucketsExpireOldVersionsAndUnfinishedUploads()
    {
        foreach (var (template, bucket, noncurrent, defaultDays) in new[]
                 {
                     (Template, "BackupBucket", "BackupNoncurrentVersionExpirationDays", "1"),
                     (Template, "ImageBucket", "NoncurrentVersionExpirationDays", "30"),
                     (Replica, "ReplicaBackupBucket", "BackupNoncurrentVersionExpirationDays", "3"),
                     (Replica, "ReplicaImageBucket", "NoncurrentVersionExpirationDays", "30"),
                 })
        {
            var rules = template.Properties(bucket)["LifecycleConfiguration"]!["Rules"]!.AsArray();
            AssertJson("""{"Id": "expire-noncurrent-versions", "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": {"Ref": "PARAMETER"}}}""".Replace("PARAMETER", noncurrent, StringComparison.Ordinal), rules[0], bucket);
            AssertJson("""{"Id": "abort-incomplete-multipart-uploads", "Status": "Enabled", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": {"Ref": "AbortIncompleteMultipartUploadDays"}}}""", rules[1], bucket);
            AssertJson("""{"Id": "remove-expired-delete-markers", "Status": "Enabled", "ExpiredObjectDeleteMarker": "true"}""", rules[2], bucket);
            Assert.AreEqual(defaultDays, (string)template.Parameters[noncurrent]!["Default"]!, $"{bucket} {noncurrent}");
        }
        // Prunes reach the replica, so it holds what the source holds instead of every set ever made.
        var backupRule = Template.Properties("BackupBucket")["ReplicationConfiguration"]!["Fn::If"]![1]!["Rules"]![0]!;
        Assert.AreEqual("Enabled", (string)backupRule["DeleteMarkerReplication"]!["Status"]!);
    }

    [TestMethod]
    public void RulesRefuseHeartbeatTimeoutsShorterThanTwoIntervals()
    {
        var intervals = Template.Parameters["AgentHeartbeatInterval"]!["AllowedValues"]!.AsArray().Select(v => (string)v!).ToList();
        var timeouts = Template.Parameters["LifecycleHeartbeatTimeout"]!["AllowedValues"]!.AsArray().Select(v => (string)v!).ToList();
        CollectionAssert.AreEqual(timeouts, Template.Parameters["TerminationHeartbeatTimeout"]!["AllowedValues"]!.AsArray().Select(v => (string)v!).ToList());
        Assert.AreEqual("300", Default("AgentHeartbeatInterval"));
        var checkedPairs = 0;
        foreach (var interval in intervals)
        {
            foreach (var timeout in timeouts)
            {
                foreach (var hook in new[] { "LifecycleHeartbeatTimeout", "TerminationHeartbeatTimeout" })
                {
                    var failures = Template.RuleFailures(Template.ParameterValues(new Dictionary<string, string> { ["AgentHeartbeatInterval"] = interval, [hook] = timeout }));
                    var tooShort = int.Parse(timeout, CultureInfo.InvariantCulture) < 2 * int.Parse(interval, CultureInfo.InvariantCulture);
                    if (tooShort)
                        CollectionAssert.AreEqual(new[] { $"HeartbeatTimeoutsCoverTwoIntervalsOf{interval}: {hook} must be at least {2 * int.Parse(interval, CultureInfo.InvariantCulture)} (twice AgentHeartbeatInterval {interval})." }, failures.ToList(), $"{hook}={timeout}, interval {interval}");
                    else
                        Assert.IsEmpty(failures, $"{hook}={timeout}, interval {interval}: {string.Join("; ", failures)}");
                    checkedPairs++;
                }
            }
        }
        Assert.AreEqual(intervals.Count * timeouts.Count * 2, checkedPairs);
    }

    [TestMethod]
    public void RulesRefuseParameterSetsThatCannotWork()
    {
        const string key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        const string replicaKey = "arn:aws:kms:eu-central-1:123456789012:key/9876abcd-12ab-34cd-56ef-1234567890ab";
        IReadOnlyList<string> Failures(params (string Name, string Value)[] values) =>
            Template.RuleFailures(Template.ParameterValues(values.ToDictionary(v => v.Name, v => v.Value)));

        Assert.IsEmpty(Failures(), "the defaults must deploy");
        Assert.IsEmpty(Failures(("KmsKeyArn", key)), "a key without replication needs no replica key");
        Assert.IsEmpty(Failures(("KmsKeyArn", key), ("ReplicaBackupBucketArn", "arn:aws:s3:::replica"), ("ReplicaKmsKeyArn", replicaKey)));
        foreach (var replica in new[] { "ReplicaBackupBucketArn", "ReplicaImageBucketArn" })
        {
            var failures = Failures(("KmsKeyArn", key), (replica, "arn:aws:s3:::replica"));
            Assert.HasCount(1, failures, string.Join("; ", failures));
            StringAssert.StartsWith(failures[0], "KmsNeedsReplicaKey: KmsKeyArn encrypts the buckets with a KMS key, so replicating them needs ReplicaKmsKeyArn");
        }
        CollectionAssert.AreEqual(new[] { "HealthCheckOnRegistryDrIsHttp: registry-dr's monitoring port serves plain HTTP, so HealthCheckProtocol must be HTTP (or HealthCheckPort 443)." },
            Failures(("HealthCheckProtocol", "HTTPS")).ToList());
        CollectionAssert.AreEqual(new[] { "HealthCheckOnTheRegistryPortIsHttps: HealthCheckPort 443 is the registry's TLS port, so HealthCheckProtocol must be HTTPS." },
            Failures(("HealthCheckPort", "443")).ToList());
        Assert.IsEmpty(Failures(("HealthCheckPort", "443"), ("HealthCheckProtocol", "HTTPS")));
        CollectionAssert.AreEqual(new[] { "HealthCheckOnRegistryDrIsHttp: HealthCheckPort 80 is the registry's HTTP port (forwarded by the load balancer); registry-dr cannot listen there too." },
            Failures(("HealthCheckPort", "80")).ToList());
        CollectionAssert.AreEqual(new[] { "ReferenceNodeUsesItsOwnDatabase: NodeSetup=reference installs PostgreSQL on the node itself, so DatabaseHost must be 127.0.0.1." },
            Failures(("DatabaseHost", "db.internal")).ToList());
        Assert.IsEmpty(Failures(("DatabaseHost", "db.internal"), ("NodeSetup", "image")));
        CollectionAssert.AreEqual(new[] { "VpcEndpointsNeedRouteTables: CreateVpcEndpoints=true needs PrivateRouteTableIds (the route tables of SubnetIds) for the S3 gateway endpoint." },
            Failures(("CreateVpcEndpoints", "true")).ToList());
    }

    [TestMethod]
    public void PrivateSubnetsGetTheEndpointsTheNodeCalls()
    {
        IReadOnlyDictionary<string, string> Endpoints(params (string Name, string Value)[] values)
        {
            var created = Template.CreatedResources(Template.ParameterValues(values.ToDictionary(v => v.Name, v => v.Value)));
            return Template.ResourcesOfType("AWS::EC2::VPCEndpoint").Where(created.Contains).ToDictionary(
                e => ((string)Template.Properties(e)["ServiceName"]!["Fn::Sub"]!).Replace("com.amazonaws.${AWS::Region}.", "", StringComparison.Ordinal),
                e => (string)Template.Properties(e)["VpcEndpointType"]!);
        }

        Assert.IsEmpty(Endpoints(), "no endpoints unless asked for");
        var basic = new Dictionary<string, string>
        {
            // The reference node's database password is a secret the stack creates.
            ["s3"] = "Gateway", ["autoscaling"] = "Interface", ["cloudformation"] = "Interface", ["logs"] = "Interface",
            ["monitoring"] = "Interface", ["secretsmanager"] = "Interface",
        };
        CollectionAssert.AreEquivalent(basic, Endpoints(("CreateVpcEndpoints", "true"), ("PrivateRouteTableIds", "rtb-0a1b2c3d")).ToDictionary());
        var everything = new Dictionary<string, string>(basic) { ["ssm"] = "Interface", ["ssmmessages"] = "Interface", ["ec2messages"] = "Interface", ["kms"] = "Interface" };
        CollectionAssert.AreEquivalent(everything, Endpoints(("CreateVpcEndpoints", "true"), ("PrivateRouteTableIds", "rtb-0a1b2c3d"), ("EnableSessionManager", "true"),
            ("KmsKeyArn", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")).ToDictionary());
        var imageWithPassword = Endpoints(("CreateVpcEndpoints", "true"), ("PrivateRouteTableIds", "rtb-0a1b2c3d"), ("NodeSetup", "image"), ("DatabasePassword", "x"));
        Assert.IsFalse(imageWithPassword.ContainsKey("secretsmanager"), "no secret in use, no secretsmanager endpoint");
        AssertJson("""{"Fn::Split": [",", {"Ref": "PrivateRouteTableIds"}]}""", Template.Properties("S3GatewayEndpoint")["RouteTableIds"], "gateway route tables");
    }

    [TestMethod]
    public void TheNodeRoleMayFindItsGroupAndPublishOnlyItsDiskMetric()
    {
        var statements = Template.Properties("InstanceRole")["Policies"]![0]!["PolicyDocument"]!["Statement"]!.AsArray()
            .Where(s => s is JsonObject o && o.ContainsKey("Sid")).ToDictionary(s => (string)s!["Sid"]!);
        AssertJson("""{"Sid": "DescribeOwnInstance", "Effect": "Allow", "Action": "autoscaling:DescribeAutoScalingInstances", "Resource": "*"}""", statements["DescribeOwnInstance"], "describe");
        AssertJson("""{"Sid": "PutNodeMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*", "Condition": {"StringEquals": {"cloudwatch:namespace": "RegistryDR/Node"}}}""",
            statements["PutNodeMetrics"], "metrics");
        Assert.AreEqual("RegistryDR/Node", (string)Template.Properties("RootDiskAlarm")["Namespace"]!);
    }

    [TestMethod]
    public void AReferenceNodeWithoutAPasswordGetsASecretTheStackKeeps()
    {
        Assert.AreEqual("reference", Default("NodeSetup"));
        Assert.IsTrue(Template.CreatedResources(Template.ParameterValues()).Contains("DatabaseSecret"));
        Assert.AreEqual("Retain", (string)Template.Resource("DatabaseSecret")["DeletionPolicy"]!);
        foreach (var given in new[] { ("DatabasePassword", "s3cret"), ("DatabasePasswordSecretArn", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"), ("NodeSetup", "image") })
            Assert.IsFalse(Template.CreatedResources(Template.ParameterValues(new Dictionary<string, string> { [given.Item1] = given.Item2 })).Contains("DatabaseSecret"), given.Item1);
    }

    [TestMethod]
    public void FirstBootIsOffUnlessAskedFor()
    {
        Assert.AreEqual("false", Default("AllowFirstBoot"));
        StringAssert.Contains(TemplateText, "RDR_ALLOW_FIRST_BOOT='${AllowFirstBoot}'");
    }

    [TestMethod]
    public void TheUserDataStubSetsEverythingUserDataShRequires()
    {
        var userData = File.ReadAllText(Path.Combine(DeploymentTestSupport.BootstrapDirectory, "user-data.sh"));
        var required = RequiredVariables().Match(userData);
        Assert.IsTrue(required.Success, "user-data.sh no longer lists its required variables in a 'for name in ...;' loop");
        var names = required.Groups[1].Value.Split([' ', '\\', '\n'], StringSplitOptions.RemoveEmptyEntries);
        Assert.IsGreaterThan(10, names.Length);

        var set = StubAssignment().Matches(TemplateText).Select(m => m.Groups[1].Value).ToHashSet();
        foreach (var name in names) Assert.Contains(name, set, $"the template's user data does not set {name}");
        foreach (var name in new[] { "RDR_NODE_SETUP", "RDR_IMAGE_BUCKET", "RDR_IMAGE_PREFIX", "RDR_HEARTBEAT_INTERVAL_SECONDS", "RDR_TERMINATION_HOOK_NAME" })
            Assert.Contains(name, set, $"the template's user data does not set {name}");
    }

    [TestMethod]
    public void TheUserDataStubFitsEc2sLimit()
    {
        var stub = (string)Template.Properties("LaunchTemplate")["LaunchTemplateData"]!["UserData"]!["Fn::Base64"]!["Fn::Sub"]![0]!;
        // EC2 takes at most 16 KB of user data before base64; leave room for substituted values.
        Assert.IsLessThan(12 * 1024, stub.Length);
        StringAssert.StartsWith(stub, "#!/bin/bash\n");
    }
}
