using Microsoft.Extensions.Logging;
using RegistryDR.Agent;
using RegistryDR.Aws;
using RegistryDR.Backup;
using RegistryDR.Stores;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Agent;

/// <summary>Keeps every formatted log line of every category, to check what an operator would read.</summary>
internal sealed class ListLoggerFactory : ILoggerFactory
{
    private readonly List<(LogLevel Level, string Category, string Message)> _entries = [];

    public IReadOnlyList<(LogLevel Level, string Category, string Message)> Entries { get { lock (_entries) return _entries.ToList(); } }

    public string Text => string.Join("\n", Entries.Select(e => $"{e.Level}: {e.Message}"));

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) { }

    public void Dispose() { }

    private sealed class Logger(ListLoggerFactory owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (owner._entries) owner._entries.Add((logLevel, category, formatter(state, exception)));
        }
    }
}

/// <summary>
/// The AWS a node lives in: instance metadata without instance tags, an Auto Scaling group with the
/// launch and terminating hooks (HeartbeatTimeout 1800 s, the template's defaults), and the stack.
/// The services' clock is a <see cref="ManualTimeProvider"/>. Shared by <see cref="AgentTestRig"/>
/// (a logical-mode node) and the continuous-mode bootstrap test.
/// </summary>
internal sealed class AgentAws : IAsyncDisposable
{
    public const string Region = "eu-west-1";
    public const string StackName = "registry-prod";
    public const string GroupName = "registry-prod-registry";
    public const string LaunchHook = "registry-dr-launch";
    public const string TerminateHook = "registry-dr-terminate";

    private static readonly StandInCredentials Keys = new(CephS3Server.TestAccessKey, CephS3Server.TestSecretKey);

    public required string InstanceId { get; init; }
    public required ManualTimeProvider Clock { get; init; }
    public required AutoScalingModel Groups { get; init; }
    public required CloudFormationModel Stack { get; init; }
    public required ImdsStandIn Imds { get; init; }
    public required AwsQueryStandIn AutoScaling { get; init; }
    public required AwsQueryStandIn CloudFormation { get; init; }

    public static AgentAws Start(string instanceId)
    {
        var clock = new ManualTimeProvider(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));
        var groups = new AutoScalingModel(clock);
        groups.AddGroup(GroupName,
            new AutoScalingModel.Hook(LaunchHook, AutoScalingModel.Launching, TimeSpan.FromSeconds(1800), "ABANDON"),
            new AutoScalingModel.Hook(TerminateHook, AutoScalingModel.Terminating, TimeSpan.FromSeconds(1800), "CONTINUE"));
        var stack = new CloudFormationModel(StackName, Region, clock);
        var imds = ImdsStandIn.Start(instanceId, Region);
        imds.TargetLifecycleState = () => groups.TargetLifecycleState(instanceId);
        return new AgentAws
        {
            InstanceId = instanceId,
            Clock = clock,
            Groups = groups,
            Stack = stack,
            Imds = imds,
            AutoScaling = AwsQueryStandIn.StartAutoScaling(groups, Region, Keys),
            CloudFormation = AwsQueryStandIn.StartCloudFormation(stack, Region, Keys),
        };
    }

    public IAwsControlPlane ControlPlane(string region) =>
        new AwsQueryControlPlane(region, new Amazon.Runtime.BasicAWSCredentials(Keys.AccessKeyId, Keys.SecretAccessKey), AutoScaling.Endpoint, CloudFormation.Endpoint)
        {
            RetryBaseDelay = TimeSpan.FromMilliseconds(5),
            RetryMaxDelay = TimeSpan.FromMilliseconds(20),
            // Loopback answers in milliseconds; a lost answer should cost the test seconds, not 20.
            RequestTimeout = TimeSpan.FromSeconds(2),
        };

    /// <summary>The bootstrap agent of a node with <paramref name="options"/> (Agent:StackName is set to the stack's) in this AWS.</summary>
    public BootstrapAgent Agent(RegistryDR.Configuration.RegistryDrOptions options, IBackupStore store, ILoggerFactory logs)
    {
        options.Agent.StackName = StackName;
        return new(options, store, new InstanceMetadataClient(Imds.Endpoint), ControlPlane, logs, TimeProvider.System);
    }

    public IReadOnlyList<RecordedCall> CallsOf(string action) =>
        [.. AutoScaling.Calls.Concat(CloudFormation.Calls).Where(c => c.Action == action)];

    public async ValueTask DisposeAsync()
    {
        await AutoScaling.DisposeAsync();
        await CloudFormation.DisposeAsync();
        await Imds.DisposeAsync();
    }
}

/// <summary>
/// One node (a seeded database, config directories, a file store holding one backup of them) and
/// the AWS it lives in (<see cref="AgentAws"/>).
/// </summary>
internal sealed class AgentTestRig : IAsyncDisposable
{
    public const string Region = AgentAws.Region;
    public const string StackName = AgentAws.StackName;
    public const string GroupName = AgentAws.GroupName;
    public const string LaunchHook = AgentAws.LaunchHook;
    public const string TerminateHook = AgentAws.TerminateHook;

    public required TestNode Node { get; init; }
    public required TempDirectory StoreDirectory { get; init; }
    public required string BackupId { get; init; }
    public required AgentAws Aws { get; init; }
    public string InstanceId => Aws.InstanceId;
    public ManualTimeProvider Clock => Aws.Clock;
    public AutoScalingModel Groups => Aws.Groups;
    public CloudFormationModel Stack => Aws.Stack;
    public ImdsStandIn Imds => Aws.Imds;
    public AwsQueryStandIn AutoScaling => Aws.AutoScaling;
    public AwsQueryStandIn CloudFormation => Aws.CloudFormation;
    public ListLoggerFactory Logs { get; } = new();

    public static async Task<AgentTestRig> StartAsync(string instanceId = "i-0a1b2c3d4e5f60718")
    {
        var storeDirectory = new TempDirectory("rdr-store-");
        var node = await TestNode.CreateAsync("file://" + storeDirectory.Path);
        var backup = await new BackupService(node.Options, node.CreateStore(), TestNode.Logger<BackupService>(), TimeProvider.System).RunAsync();
        node.Options.Agent.StackName = StackName;
        return new AgentTestRig { Node = node, StoreDirectory = storeDirectory, BackupId = backup.BackupId, Aws = AgentAws.Start(instanceId) };
    }

    public IAwsControlPlane ControlPlane(string region) => Aws.ControlPlane(region);

    public BootstrapAgent Agent(IBackupStore? store = null) =>
        new(Node.Options, store ?? Node.CreateStore(), new InstanceMetadataClient(Imds.Endpoint), ControlPlane, Logs, TimeProvider.System);

    public IReadOnlyList<RecordedCall> CallsOf(string action) => Aws.CallsOf(action);

    public NodeState State => NodeStateFile.Read(Node.Options.Agent.StateFile) ?? throw new AssertFailedException("no node state file");

    public async ValueTask DisposeAsync()
    {
        await Aws.DisposeAsync();
        await Node.DisposeAsync();
        StoreDirectory.Dispose();
    }
}
