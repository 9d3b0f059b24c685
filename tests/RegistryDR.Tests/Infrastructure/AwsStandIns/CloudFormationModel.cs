namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>
/// One CloudFormation stack, its status, and which resources wait for how many signals, as the
/// stand-in's state. Time is the injected <see cref="TimeProvider"/>; a wait that times out fails
/// the resource whenever the model is next looked at.
/// </summary>
/// <remarks>
/// Follows, in the CloudFormation User Guide, "CreationPolicy attribute" (ResourceSignal Count and
/// Timeout; AutoScalingCreationPolicy MinSuccessfulInstancesPercent: with one instance and 100 %,
/// one FAILURE signal or the timeout fails the resource and the stack rolls back) and "UpdatePolicy
/// attribute" (AutoScalingRollingUpdate with WaitOnResourceSignals: each new batch must signal
/// within PauseTime), and in the API Reference, SignalResource. Signals are refused with HTTP 400
/// ValidationError when the stack is not being created or updated — "Stack
/// arn:aws:cloudformation:…:stack/NAME/ID is in CREATE_COMPLETE state and cannot be signaled", the
/// message the service gives (seen in the field; not documented on the API page) —, when the
/// stack is in progress but this resource waits for nothing (an update that does not replace the
/// group), and when the same UniqueId signals the same wait twice. The wording of those last two
/// is not documented; it follows the first's shape.
/// </remarks>
internal sealed class CloudFormationModel : IQueryServiceModel
{
    public const string CreateInProgress = "CREATE_IN_PROGRESS";
    public const string CreateComplete = "CREATE_COMPLETE";
    public const string CreateFailed = "CREATE_FAILED";
    public const string RollbackInProgress = "ROLLBACK_IN_PROGRESS";
    public const string UpdateInProgress = "UPDATE_IN_PROGRESS";
    public const string UpdateComplete = "UPDATE_COMPLETE";
    public const string UpdateFailed = "UPDATE_FAILED";
    public const string UpdateRollbackInProgress = "UPDATE_ROLLBACK_IN_PROGRESS";

    /// <summary>A signal that reached the stack, and what became of it (null Refusal: counted).</summary>
    public sealed record Signal(string LogicalResourceId, string UniqueId, string Status, DateTimeOffset At, string? Refusal);

    private sealed class Resource(string logicalId)
    {
        public string LogicalId { get; } = logicalId;
        public string Status { get; set; } = "CREATE_COMPLETE";
        public Wait? Waiting { get; set; }
    }

    private sealed class Wait(int count, DateTimeOffset deadline)
    {
        public int Count { get; } = count;
        public DateTimeOffset Deadline { get; } = deadline;
        public HashSet<string> UniqueIds { get; } = new(StringComparer.Ordinal);
        public int Successes { get; set; }
    }

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Resource> _resources = new(StringComparer.Ordinal);
    private readonly List<Signal> _signals = [];
    private string _status = "REVIEW_IN_PROGRESS";

    public CloudFormationModel(string stackName, string region, TimeProvider time, string account = "123456789012")
    {
        StackName = stackName;
        StackId = $"arn:aws:cloudformation:{region}:{account}:stack/{stackName}/{Guid.NewGuid()}";
        Time = time;
    }

    public string StackName { get; }

    /// <summary>The stack's ARN, as error messages name it.</summary>
    public string StackId { get; }

    public TimeProvider Time { get; }

    public string Status
    {
        get
        {
            lock (_lock)
            {
                ExpireLocked();
                return _status;
            }
        }
    }

    public string ResourceStatus(string logicalId)
    {
        lock (_lock)
        {
            ExpireLocked();
            return _resources[logicalId].Status;
        }
    }

    public IReadOnlyList<Signal> Signals
    {
        get { lock (_lock) return [.. _signals]; }
    }

    /// <summary>
    /// CreateStack: the stack is CREATE_IN_PROGRESS and <paramref name="logicalId"/> (with a
    /// CreationPolicy ResourceSignal) waits for <paramref name="count"/> SUCCESS signals within
    /// <paramref name="timeout"/>.
    /// </summary>
    public void BeginCreate(string logicalId, int count, TimeSpan timeout)
    {
        lock (_lock)
        {
            _status = CreateInProgress;
            _resources[logicalId] = new Resource(logicalId) { Status = CreateInProgress, Waiting = new Wait(count, Time.GetUtcNow() + timeout) };
        }
    }

    /// <summary>
    /// UpdateStack: the stack is UPDATE_IN_PROGRESS. With <paramref name="replacing"/>, that Auto
    /// Scaling group is rolled (AutoScalingRollingUpdate, WaitOnResourceSignals): it waits for
    /// <paramref name="count"/> SUCCESS signals from the new batch within <paramref name="pauseTime"/>.
    /// Without it the update touches no instance and nothing waits for a signal.
    /// </summary>
    public void BeginUpdate(string? replacing, int count, TimeSpan pauseTime)
    {
        lock (_lock)
        {
            ExpireLocked();
            _status = UpdateInProgress;
            if (replacing is not null)
            {
                var resource = _resources[replacing];
                resource.Status = UpdateInProgress;
                resource.Waiting = new Wait(count, Time.GetUtcNow() + pauseTime);
            }
        }
    }

    /// <summary>An update that waited for nothing ends (its other resources are done).</summary>
    public void FinishUpdateWithoutSignals()
    {
        lock (_lock)
        {
            if (_status == UpdateInProgress && _resources.Values.All(r => r.Waiting is null)) _status = UpdateComplete;
        }
    }

    public string Handle(string action, IReadOnlyDictionary<string, string> p)
    {
        if (action != "SignalResource") throw new StandInError(400, "InvalidAction", $"The action {action} is not valid for this web service.");
        lock (_lock)
        {
            ExpireLocked();
            var logicalId = p["LogicalResourceId"];
            var uniqueId = p["UniqueId"];
            var status = p["Status"];
            string? refusal = null;
            Resource? resource = null;
            if (p["StackName"] != StackName && p["StackName"] != StackId)
                refusal = $"Stack with id {p["StackName"]} does not exist";
            else if (_status is not (CreateInProgress or UpdateInProgress))
                refusal = $"Stack {StackId} is in {_status} state and cannot be signaled";
            else if (!_resources.TryGetValue(logicalId, out resource))
                refusal = $"Resource {logicalId} does not exist for stack {StackName}";
            else if (resource.Waiting is null)
                refusal = $"Resource {logicalId} is in {resource.Status} state and cannot be signaled";
            else if (!resource.Waiting.UniqueIds.Add(uniqueId))
                refusal = $"Signal with ID {uniqueId} for resource {logicalId} already exists.";
            _signals.Add(new Signal(logicalId, uniqueId, status, Time.GetUtcNow(), refusal));
            if (refusal is not null) throw new StandInError(400, "ValidationError", refusal);

            if (status == "FAILURE") Fail(resource!);
            else if (++resource!.Waiting!.Successes >= resource.Waiting.Count) Succeed(resource);
            return "";
        }
    }

    private void Succeed(Resource resource)
    {
        resource.Waiting = null;
        resource.Status = _status == CreateInProgress ? CreateComplete : UpdateComplete;
        if (_resources.Values.All(r => r.Waiting is null)) _status = _status == CreateInProgress ? CreateComplete : UpdateComplete;
    }

    /// <summary>A FAILURE signal or a timed-out wait: the resource fails and the stack rolls back.</summary>
    private void Fail(Resource resource)
    {
        foreach (var r in _resources.Values) r.Waiting = null;
        resource.Status = _status == CreateInProgress ? CreateFailed : UpdateFailed;
        _status = _status == CreateInProgress ? RollbackInProgress : UpdateRollbackInProgress;
    }

    private void ExpireLocked()
    {
        var now = Time.GetUtcNow();
        var late = _resources.Values.FirstOrDefault(r => r.Waiting is { } w && w.Deadline <= now);
        if (late is not null) Fail(late);
    }
}
