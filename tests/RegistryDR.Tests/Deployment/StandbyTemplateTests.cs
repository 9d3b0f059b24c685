using System.Text.Json.Nodes;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// cloudformation/registry.yaml in the recovery region: Role=standby (pilot light) and
/// Role=failover over the replica buckets, the Route 53 failover record, and the Rules that refuse
/// role and bucket combinations that cannot work, evaluated for concrete parameter sets.
/// </summary>
[TestClass]
public sealed class StandbyTemplateTests
{
    private static readonly CloudFormationTemplate Template = CloudFormationTemplate.Load("registry.yaml");
    private const string BackupReplica = "registry-dr-replica-replicabackupbucket-1x2y3z";
    private const string ImageReplica = "registry-dr-replica-replicaimagebucket-4u5v6w";

    private static Dictionary<string, string> Parameters(params (string Name, string Value)[] values) =>
        Template.ParameterValues(values.ToDictionary(v => v.Name, v => v.Value));

    private static Dictionary<string, string> Standby(string role = "standby", params (string Name, string Value)[] more) =>
        Parameters([("Role", role), ("ExistingBackupBucketName", BackupReplica), ("ExistingImageBucketName", ImageReplica), .. more]);

    private static void AssertJson(string expected, JsonNode? actual, string what) =>
        Assert.IsTrue(JsonNode.DeepEquals(JsonNode.Parse(expected), actual), $"{what}: expected {expected}, got {actual?.ToJsonString()}");

    private static JsonNode Resolved(string resource, IReadOnlyDictionary<string, string> parameters) => Template.Resolve(Template.Resource(resource), parameters)!;

    [TestMethod]
    public void AStandbyRunsOverTheReplicaBuckets_WithoutCreatingOrReplicatingAny()
    {
        var primary = Template.CreatedResources(Parameters(("ReplicaBackupBucketArn", "arn:aws:s3:::replica-b"), ("ReplicaImageBucketArn", "arn:aws:s3:::replica-i")));
        var standby = Template.CreatedResources(Standby());
        var failover = Template.CreatedResources(Standby("failover"));

        string[] buckets = ["BackupBucket", "BackupBucketPolicy", "ImageBucket", "ImageBucketPolicy", "ReplicationRole", "ReplicationPolicy"];
        foreach (var resource in buckets) Assert.IsTrue(primary.Contains(resource), $"the primary creates {resource}");
        foreach (var resource in buckets) Assert.IsFalse(standby.Contains(resource) || failover.Contains(resource), $"a standby must not create {resource}");
        // Failing over adds exactly the node's two alarms; nothing else is created or removed.
        CollectionAssert.AreEquivalent(new[] { "BackupStaleAlarm", "RegistryDownAlarm" }, failover.Except(standby).ToList());
        Assert.IsEmpty(standby.Except(failover).ToList());

        // The node's store and registry storage are the replicas.
        var names = Resolved("LaunchTemplate", Standby())["Properties"]!["LaunchTemplateData"]!["UserData"]!["Fn::Base64"]!["Fn::Sub"]![1]!;
        AssertJson("""{"Ref": "ExistingBackupBucketName"}""", names["BackupBucketName"], "BackupBucketName");
        AssertJson("""{"Ref": "ExistingImageBucketName"}""", names["ImageBucketName"], "ImageBucketName");
        var stub = (string)Template.Properties("LaunchTemplate")["LaunchTemplateData"]!["UserData"]!["Fn::Base64"]!["Fn::Sub"]![0]!;
        StringAssert.Contains(stub, "RDR_STORE_URL='s3://${BackupBucketName}/${BackupPrefix}' \\");
        StringAssert.Contains(stub, "RDR_IMAGE_BUCKET='${ImageBucketName}' \\");
        // A standby/failover node takes the store over with a new fencing epoch when it restores; the primary's does not.
        StringAssert.Contains(stub, "RDR_ROLE='${NodeRole}' \\");
        AssertJson("\"failover\"", names["NodeRole"], "NodeRole of a standby");
        var own = Resolved("LaunchTemplate", Parameters())["Properties"]!["LaunchTemplateData"]!["UserData"]!["Fn::Base64"]!["Fn::Sub"]![1]!;
        AssertJson("""{"Ref": "BackupBucket"}""", own["BackupBucketName"], "the primary's BackupBucketName");
        AssertJson("\"primary\"", own["NodeRole"], "the primary's NodeRole");

        // The instance role reaches the replica buckets, under the prefixes only.
        var statements = Resolved("InstanceRole", Standby())["Properties"]!["Policies"]![0]!["PolicyDocument"]!["Statement"]!.AsArray().ToDictionary(s => (string)s!["Sid"]!);
        AssertJson("""{"Fn::Sub": "arn:${AWS::Partition}:s3:::${ExistingBackupBucketName}"}""", statements["ListBackupPrefix"]!["Resource"], "ListBackupPrefix");
        AssertJson("""{"Fn::Sub": ["${Bucket}/${BackupPrefix}/*", {"Bucket": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ExistingBackupBucketName}"}}]}""", statements["BackupObjects"]!["Resource"], "BackupObjects");
        AssertJson("""{"Fn::Sub": ["${Bucket}/${ImagePrefix}/*", {"Bucket": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ExistingImageBucketName}"}}]}""", statements["ImageObjects"]!["Resource"], "ImageObjects");
        AssertJson("""{"Fn::Sub": ["${Bucket}/${ImagePrefix}/*", {"Bucket": {"Fn::GetAtt": ["ImageBucket", "Arn"]}}]}""",
            Resolved("InstanceRole", Parameters())["Properties"]!["Policies"]![0]!["PolicyDocument"]!["Statement"]!.AsArray().Single(s => (string)s!["Sid"]! == "ImageObjects")!["Resource"], "the primary's ImageObjects");
    }

    [TestMethod]
    public void FailingOverIsOneParameterChange_ThatLeavesTheLaunchTemplateAlone()
    {
        var group = (Standby: Resolved("RegistryGroup", Standby()), Failover: Resolved("RegistryGroup", Standby("failover")), Primary: Resolved("RegistryGroup", Parameters()));
        foreach (var property in new[] { "MinSize", "MaxSize", "DesiredCapacity" })
        {
            Assert.AreEqual("0", (string)group.Standby["Properties"]![property]!, $"pilot light {property}");
            Assert.AreEqual("1", (string)group.Failover["Properties"]![property]!, $"failover {property}");
            Assert.AreEqual("1", (string)group.Primary["Properties"]![property]!, $"primary {property}");
        }
        Assert.AreEqual(("0", "1"), ((string)group.Standby["CreationPolicy"]!["ResourceSignal"]!["Count"]!, (string)group.Failover["CreationPolicy"]!["ResourceSignal"]!["Count"]!),
            "the pilot light's stack waits for no node; a failover stack created directly waits for its node's restore");
        // Role reaches the launch template through nothing (no Ref, no condition), so standby -> failover launches one node on the
        // launch template the standby already has: no rolling update, no new version.
        var launchTemplate = Template.Resource("LaunchTemplate");
        var conditions = new HashSet<string>();
        var pending = new Queue<string>(CloudFormationTemplate.ReferencedConditions(launchTemplate));
        var names = new HashSet<string>(CloudFormationTemplate.ReferencedNames(launchTemplate));
        while (pending.TryDequeue(out var condition))
        {
            if (!conditions.Add(condition)) continue;
            names.UnionWith(CloudFormationTemplate.ReferencedNames(Template.Conditions[condition]));
            foreach (var nested in CloudFormationTemplate.ReferencedConditions(Template.Conditions[condition])) pending.Enqueue(nested);
        }
        Assert.DoesNotContain("Role", names);
        Assert.IsTrue(JsonNode.DeepEquals(Resolved("LaunchTemplate", Standby()), Resolved("LaunchTemplate", Standby("failover"))), "the launch template of standby and failover");
    }

    [TestMethod]
    public void TheFailoverRecordIsPrimaryInTheMainRegionAndSecondaryInTheStandby_WithAHealthCheckOnThePrimary()
    {
        (string, string)[] dns = [("DnsHostedZoneId", "Z0123456789ABCDEFGHIJ"), ("DnsRecordName", "registry.example.com")];
        Assert.IsFalse(Template.CreatedResources(Parameters()).Contains("DnsRecord"), "no DNS unless asked for");
        var primary = Parameters(dns);
        var standby = Standby("standby", dns);
        Assert.IsTrue(Template.CreatedResources(primary).IsSupersetOf(["DnsRecord", "PrimaryHealthCheck"]));
        Assert.IsTrue(Template.CreatedResources(standby).Contains("DnsRecord"));
        Assert.IsFalse(Template.CreatedResources(standby).Contains("PrimaryHealthCheck"));

        AssertJson("""
            {"HostedZoneId": {"Ref": "DnsHostedZoneId"}, "Name": {"Ref": "DnsRecordName"}, "Type": "A",
             "SetIdentifier": {"Fn::Sub": "${AWS::StackName}-${AWS::Region}"}, "Failover": "PRIMARY", "HealthCheckId": {"Ref": "PrimaryHealthCheck"},
             "AliasTarget": {"DNSName": {"Fn::GetAtt": ["LoadBalancer", "DNSName"]}, "HostedZoneId": {"Fn::GetAtt": ["LoadBalancer", "CanonicalHostedZoneID"]}, "EvaluateTargetHealth": "true"}}
            """, Resolved("DnsRecord", primary)["Properties"], "the primary's record");
        var secondary = Resolved("DnsRecord", standby)["Properties"]!.AsObject();
        Assert.AreEqual("SECONDARY", (string)secondary["Failover"]!);
        Assert.IsFalse(secondary.ContainsKey("HealthCheckId"), "the standby's record goes by its load balancer's targets");
        // The health check follows the load balancer's verdict on /load_balancer_status (RegistryDownAlarm); no data (a dead region) is unhealthy.
        AssertJson("""
            {"Type": "CLOUDWATCH_METRIC", "AlarmIdentifier": {"Name": {"Ref": "RegistryDownAlarm"}, "Region": {"Ref": "AWS::Region"}}, "InsufficientDataHealthStatus": "Unhealthy"}
            """, Template.Properties("PrimaryHealthCheck")["HealthCheckConfig"], "health check");
        Assert.AreEqual("/load_balancer_status", (string)Template.Properties("TargetGroup")["HealthCheckPath"]!);
        Assert.AreEqual("AWS/NetworkELB/HealthyHostCount", $"{(string)Template.Properties("RegistryDownAlarm")["Namespace"]!}/{(string)Template.Properties("RegistryDownAlarm")["MetricName"]!}");
        // The certificate made on first boot names the DNS record too.
        StringAssert.Contains((string)Template.Properties("LaunchTemplate")["LaunchTemplateData"]!["UserData"]!["Fn::Base64"]!["Fn::Sub"]![0]!,
            "RDR_REGISTRY_HOSTNAMES='${LoadBalancer.DNSName},${DnsRecordName}' \\");
    }

    [TestMethod]
    public void RulesRefuseRoleAndBucketCombinationsThatCannotWork()
    {
        IReadOnlyList<string> Failures(Dictionary<string, string> values) => Template.RuleFailures(values);
        const string standbyNeedsBuckets = "StandbyRunsOverTheReplicaBuckets: Role standby or failover runs over the primary's replica buckets: give ExistingBackupBucketName and ExistingImageBucketName (outputs ReplicaBackupBucketName and ReplicaImageBucketName of replica-bucket.yaml).";
        const string standbyCannotReplicate = "StandbyRunsOverTheReplicaBuckets: Role standby or failover cannot replicate: its buckets are replica-bucket.yaml's, and a stack configures replication only on buckets it creates. Leave ReplicaBackupBucketArn and ReplicaImageBucketArn empty.";
        const string noFirstBoot = "StandbyRunsOverTheReplicaBuckets: Role standby or failover restores the primary's replicated backups; AllowFirstBoot=true would start an empty registry if the replica bucket were empty or wrong. Set AllowFirstBoot=false.";
        const string primaryOwnBuckets = "PrimaryCreatesItsOwnBuckets: Role primary creates its own buckets; ExistingBackupBucketName and ExistingImageBucketName are for Role standby or failover (the replica buckets in the recovery region). Leave them empty.";
        const string dnsBoth = "DnsNeedsZoneAndName: The failover DNS record needs both DnsHostedZoneId and DnsRecordName (or neither).";

        Assert.IsEmpty(Failures(Standby()));
        Assert.IsEmpty(Failures(Standby("failover")));
        foreach (var role in new[] { "standby", "failover" })
        {
            CollectionAssert.AreEqual(new[] { standbyNeedsBuckets }, Failures(Parameters(("Role", role))).ToList(), role);
            CollectionAssert.AreEqual(new[] { standbyNeedsBuckets }, Failures(Parameters(("Role", role), ("ExistingBackupBucketName", BackupReplica))).ToList(), role);
            CollectionAssert.AreEqual(new[] { standbyCannotReplicate }, Failures(Standby(role, ("ReplicaImageBucketArn", "arn:aws:s3:::elsewhere"))).ToList(), role);
            CollectionAssert.AreEqual(new[] { noFirstBoot }, Failures(Standby(role, ("AllowFirstBoot", "true"))).ToList(), role);
        }
        CollectionAssert.AreEqual(new[] { primaryOwnBuckets }, Failures(Parameters(("ExistingBackupBucketName", BackupReplica))).ToList());
        CollectionAssert.AreEqual(new[] { primaryOwnBuckets }, Failures(Parameters(("ExistingImageBucketName", ImageReplica))).ToList());
        Assert.IsEmpty(Failures(Parameters(("AllowFirstBoot", "true"))), "the primary's first deploy");
        CollectionAssert.AreEqual(new[] { dnsBoth }, Failures(Parameters(("DnsHostedZoneId", "Z0123456789ABCDEFGHIJ"))).ToList());
        CollectionAssert.AreEqual(new[] { dnsBoth }, Failures(Parameters(("DnsRecordName", "registry.example.com"))).ToList());
        Assert.IsEmpty(Failures(Parameters(("DnsHostedZoneId", "Z0123456789ABCDEFGHIJ"), ("DnsRecordName", "registry.example.com"))));
    }

    [TestMethod]
    public void TheOutputsNameTheBucketsTheNodeUses()
    {
        var outputs = Template.Root["Outputs"]!.AsObject();
        AssertJson("""{"Ref": "ExistingBackupBucketName"}""", Template.Resolve(outputs["BackupBucketName"]!["Value"], Standby()), "BackupBucketName");
        AssertJson("""{"Fn::Sub": ["s3://${Bucket}/${BackupPrefix}", {"Bucket": {"Ref": "ExistingBackupBucketName"}}]}""", Template.Resolve(outputs["BackupStoreUrl"]!["Value"], Standby()), "BackupStoreUrl");
        AssertJson("""{"Ref": "ImageBucket"}""", Template.Resolve(outputs["ImageBucketName"]!["Value"], Parameters()), "ImageBucketName");
    }
}
