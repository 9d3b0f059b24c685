using System.Security;

namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>
/// Amazon EC2 Auto Scaling's groups, instances and lifecycle actions, as the stand-in's state.
/// Time is the injected <see cref="TimeProvider"/>; time-outs are applied whenever the model is
/// looked at, as if Auto Scaling had applied them at the moment they fell due.
/// </summary>
/// <remarks>
/// Follows, in the Amazon EC2 Auto Scaling User Guide, "Amazon EC2 Auto Scaling lifecycle hooks"
/// and "Amazon EC2 Auto Scaling instance lifecycle" (Pending → Pending:Wait → Pending:Proceed →
/// InService; Terminating → Terminating:Wait → Terminating:Proceed → Terminated), and in the API
/// Reference, CompleteLifecycleAction, RecordLifecycleActionHeartbeat, LifecycleHook
/// (HeartbeatTimeout, DefaultResult, GlobalTimeout = min(100 × HeartbeatTimeout, 172800 s)) and
/// DescribeAutoScalingInstances.
/// </remarks>
internal sealed class AutoScalingModel(TimeProvider time) : IQueryServiceModel
{
    public const string Launching = "autoscaling:EC2_INSTANCE_LAUNCHING";
    public const string Terminating = "autoscaling:EC2_INSTANCE_TERMINATING";

    /// <summary>LifecycleHook: GlobalTimeout is at most 48 hours.</summary>
    public static readonly TimeSpan MaxGlobalTimeout = TimeSpan.FromHours(48);

    /// <param name="DefaultResult">CONTINUE or ABANDON, applied when the action times out.</param>
    public sealed record Hook(string Name, string Transition, TimeSpan HeartbeatTimeout, string DefaultResult)
    {
        /// <summary>LifecycleHook.GlobalTimeout: the longest an instance stays in a wait state, whatever the heartbeats.</summary>
        public TimeSpan GlobalTimeout => HeartbeatTimeout * 100 < MaxGlobalTimeout ? HeartbeatTimeout * 100 : MaxGlobalTimeout;
    }

    /// <summary>A lifecycle action that ended: how (completed by a call, or timed out) and with which result.</summary>
    public sealed record FinishedAction(string InstanceId, string Hook, string Result, bool TimedOut, DateTimeOffset At);

    private sealed class Group(string name, IReadOnlyList<Hook> hooks)
    {
        public string Name { get; } = name;
        public IReadOnlyList<Hook> Hooks { get; } = hooks;
    }

    private sealed class Instance(string id, Group group)
    {
        public string Id { get; } = id;
        public Group Group { get; } = group;
        public string State { get; set; } = "Pending";
        public string HealthStatus { get; set; } = "HEALTHY";
    }

    private sealed class PendingAction(Instance instance, Hook hook, DateTimeOffset started)
    {
        public Instance Instance { get; } = instance;
        public Hook Hook { get; } = hook;
        public string Token { get; } = Guid.NewGuid().ToString();
        public DateTimeOffset Deadline { get; set; } = started + hook.HeartbeatTimeout;
        public DateTimeOffset GlobalDeadline { get; } = started + hook.GlobalTimeout;
        public DateTimeOffset DueAt => Deadline < GlobalDeadline ? Deadline : GlobalDeadline;
    }

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Group> _groups = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Instance> _instances = new(StringComparer.Ordinal);
    private readonly List<PendingAction> _pending = [];
    private readonly List<FinishedAction> _finished = [];

    public TimeProvider Time { get; } = time;

    public void AddGroup(string name, params Hook[] hooks)
    {
        lock (_lock) _groups.Add(name, new Group(name, hooks));
    }

    /// <summary>The group launches <paramref name="instanceId"/>: it waits in Pending:Wait on each launching hook, or goes InService when there is none.</summary>
    public void Launch(string groupName, string instanceId)
    {
        lock (_lock)
        {
            var instance = new Instance(instanceId, _groups[groupName]);
            _instances.Add(instanceId, instance);
            Enter(instance, Launching);
        }
    }

    /// <summary>
    /// The group terminates <paramref name="instanceId"/> (scale-in, a rolling update's replacement, an
    /// operator): it waits in Terminating:Wait on each terminating hook, or is Terminated when there is none.
    /// </summary>
    public void Terminate(string instanceId)
    {
        lock (_lock)
        {
            ExpireLocked();
            var instance = _instances[instanceId];
            foreach (var p in _pending.Where(p => p.Instance == instance).ToList()) _pending.Remove(p);
            Enter(instance, Terminating);
        }
    }

    /// <summary>The instance died (its hardware failed, it was stopped): Auto Scaling marks it unhealthy and, as the group's health check, terminates it. No hook runs on a dead instance's behalf that could still reach it.</summary>
    public void Kill(string instanceId)
    {
        lock (_lock)
        {
            var instance = _instances[instanceId];
            instance.HealthStatus = "UNHEALTHY";
            foreach (var p in _pending.Where(p => p.Instance == instance).ToList()) _pending.Remove(p);
            instance.State = "Terminated";
        }
    }

    /// <summary>The instance's lifecycle state now (null when unknown).</summary>
    public string? LifecycleState(string instanceId)
    {
        lock (_lock)
        {
            ExpireLocked();
            return _instances.TryGetValue(instanceId, out var i) ? i.State : null;
        }
    }

    /// <summary>
    /// What instance metadata's <c>autoscaling/target-lifecycle-state</c> shows on the instance
    /// ("Retrieve the target lifecycle state through instance metadata"): the steady state it is moving to.
    /// </summary>
    public string? TargetLifecycleState(string instanceId)
    {
        lock (_lock)
        {
            ExpireLocked();
            if (!_instances.TryGetValue(instanceId, out var i)) return null;
            return i.State.StartsWith("Pending", StringComparison.Ordinal) || i.State == "InService" ? "InService" : "Terminated";
        }
    }

    /// <summary>Lifecycle actions still waiting, as (instance, hook).</summary>
    public IReadOnlyList<(string InstanceId, string Hook)> PendingActions
    {
        get
        {
            lock (_lock)
            {
                ExpireLocked();
                return [.. _pending.Select(p => (p.Instance.Id, p.Hook.Name))];
            }
        }
    }

    public IReadOnlyList<FinishedAction> FinishedActions
    {
        get
        {
            lock (_lock)
            {
                ExpireLocked();
                return [.. _finished];
            }
        }
    }

    public string Handle(string action, IReadOnlyDictionary<string, string> p)
    {
        lock (_lock)
        {
            ExpireLocked();
            switch (action)
            {
                case "CompleteLifecycleAction":
                {
                    var pending = FindActive(p);
                    Finish(pending, p["LifecycleActionResult"], timedOut: false);
                    return "";
                }
                case "RecordLifecycleActionHeartbeat":
                {
                    // "This extends the timeout by the length of time defined using the PutLifecycleHook
                    // API call" — never past the global timeout.
                    var pending = FindActive(p);
                    pending.Deadline = Time.GetUtcNow() + pending.Hook.HeartbeatTimeout;
                    return "";
                }
                case "DescribeAutoScalingInstances":
                {
                    // Unknown ids are ignored, not an error; terminated instances drop out of the list.
                    var ids = p.Where(kv => kv.Key.StartsWith("InstanceIds.member.", StringComparison.Ordinal)).Select(kv => kv.Value).ToList();
                    var members = _instances.Values
                        .Where(i => i.State != "Terminated" && (ids.Count == 0 || ids.Contains(i.Id)))
                        .Select(i =>
                            "<member>" +
                            $"<InstanceId>{SecurityElement.Escape(i.Id)}</InstanceId>" +
                            $"<AutoScalingGroupName>{SecurityElement.Escape(i.Group.Name)}</AutoScalingGroupName>" +
                            "<AvailabilityZone>eu-west-1a</AvailabilityZone>" +
                            $"<LifecycleState>{i.State}</LifecycleState>" +
                            $"<HealthStatus>{i.HealthStatus}</HealthStatus>" +
                            "<InstanceType>t3.medium</InstanceType>" +
                            "<ProtectedFromScaleIn>false</ProtectedFromScaleIn>" +
                            "</member>");
                    return "<AutoScalingInstances>" + string.Concat(members) + "</AutoScalingInstances>";
                }
                default:
                    throw new StandInError(400, "InvalidAction", $"The action {action} is not valid for this web service.");
            }
        }
    }

    /// <summary>
    /// The active action a CompleteLifecycleAction or heartbeat names. A finished, timed-out or
    /// never-started one is a 400 ValidationError "No active Lifecycle Action found with instance ID …"
    /// (with token … when only the token was given), as the service answers.
    /// </summary>
    private PendingAction FindActive(IReadOnlyDictionary<string, string> p)
    {
        p.TryGetValue("InstanceId", out var instanceId);
        p.TryGetValue("LifecycleActionToken", out var token);
        var found = _pending.FirstOrDefault(a =>
            a.Instance.Group.Name == p["AutoScalingGroupName"] && a.Hook.Name == p["LifecycleHookName"] &&
            (string.IsNullOrEmpty(instanceId) || a.Instance.Id == instanceId) &&
            (string.IsNullOrEmpty(token) || a.Token == token));
        if (found is not null) return found;
        throw new StandInError(400, "ValidationError", string.IsNullOrEmpty(instanceId)
            ? $"No active Lifecycle Action found with token {token}"
            : $"No active Lifecycle Action found with instance ID {instanceId}");
    }

    private void Enter(Instance instance, string transition)
    {
        var hooks = instance.Group.Hooks.Where(h => h.Transition == transition).ToList();
        var now = Time.GetUtcNow();
        if (hooks.Count == 0)
        {
            instance.State = transition == Launching ? "InService" : "Terminated";
            return;
        }
        instance.State = transition == Launching ? "Pending:Wait" : "Terminating:Wait";
        foreach (var hook in hooks) _pending.Add(new PendingAction(instance, hook, now));
    }

    /// <summary>
    /// Ends an action. Launching: the instance goes InService once every launching hook continued;
    /// one ABANDON terminates it. Terminating: CONTINUE and ABANDON both let it terminate; ABANDON
    /// skips the other terminating hooks ("Amazon EC2 Auto Scaling lifecycle hooks").
    /// </summary>
    private void Finish(PendingAction action, string result, bool timedOut)
    {
        _pending.Remove(action);
        _finished.Add(new FinishedAction(action.Instance.Id, action.Hook.Name, result, timedOut, timedOut ? action.DueAt : Time.GetUtcNow()));
        var instance = action.Instance;
        var others = _pending.Where(p => p.Instance == instance && p.Hook.Transition == action.Hook.Transition).ToList();
        if (result == "ABANDON")
        {
            foreach (var o in others) _pending.Remove(o);
            // An instance abandoned at launch never served; it is terminated without its terminating hooks.
            instance.State = "Terminated";
            return;
        }
        if (others.Count > 0) return;
        instance.State = action.Hook.Transition == Launching ? "InService" : "Terminated";
    }

    /// <summary>Applies DefaultResult to every action whose heartbeat or global timeout has passed.</summary>
    private void ExpireLocked()
    {
        var now = Time.GetUtcNow();
        foreach (var action in _pending.Where(a => a.DueAt <= now).OrderBy(a => a.DueAt).ToList())
        {
            if (_pending.Contains(action)) Finish(action, action.Hook.DefaultResult, timedOut: true);
        }
    }
}
