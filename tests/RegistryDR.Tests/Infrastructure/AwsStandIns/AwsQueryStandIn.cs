using System.Net;
using System.Security;
using System.Text;

namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>
/// One authentic, well-formed call, with every form parameter as sent (decoded), and how the
/// service's state answered it: <see cref="Refusal"/> is null when it was accepted, else
/// "Code: message" (e.g. a signal CloudFormation was not waiting for).
/// </summary>
internal sealed record RecordedCall(string Service, string Action, IReadOnlyDictionary<string, string> Parameters, string AccessKeyId, string? SessionToken)
{
    public string? Refusal { get; init; }

    public bool Accepted => Refusal is null;
}

/// <summary>An answer a service model gives instead of a result: the service's error document.</summary>
internal sealed class StandInError(int status, string code, string message) : Exception(message)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
}

/// <summary>
/// The state behind a stand-in: what the real service would do with a well-formed, authentic call.
/// Returns the inner XML of the action's Result element (empty for none), or throws
/// <see cref="StandInError"/> with the service's error.
/// </summary>
internal interface IQueryServiceModel
{
    string Handle(string action, IReadOnlyDictionary<string, string> parameters);
}

internal enum InjectedFailure
{
    /// <summary>HTTP 503, code ServiceUnavailable.</summary>
    ServiceUnavailable,

    /// <summary>HTTP 400, code Throttling ("Rate exceeded"), as AWS Query services throttle.</summary>
    Throttling,

    /// <summary>HTTP 400, code RequestLimitExceeded, the other throttling code AWS APIs use.</summary>
    RequestLimitExceeded,

    /// <summary>
    /// The request is carried out (the model changes state) but the answer never arrives: the
    /// stand-in holds it until disposed, so the client gives up on its per-try timeout. Its retry
    /// then meets the new state.
    /// </summary>
    AnswerLost,
}

/// <summary>
/// A strict stand-in for one AWS Query-protocol service (AutoScaling or CloudFormation) on
/// loopback. Every request must carry a SigV4 signature that <see cref="SigV4Verifier"/>
/// accepts for the configured keys, region and this service, and name a known Action with the
/// right Version and valid parameters; anything else gets the service's XML ErrorResponse.
/// A well-formed call goes to the service's <see cref="IQueryServiceModel"/>
/// (<see cref="AutoScalingModel"/>, <see cref="CloudFormationModel"/>), which accepts or refuses
/// it as the real service would in its current state; without a model (wire-format tests only)
/// every well-formed call is accepted. Calls are recorded with their outcome.
/// </summary>
internal sealed class AwsQueryStandIn : IAsyncDisposable
{
    public const string AutoScaling = "autoscaling";
    public const string CloudFormation = "cloudformation";

    private sealed record ServiceModel(string Version, string XmlNamespace, IReadOnlyDictionary<string, ActionModel> Actions);

    /// <summary>An action's parameters, its validation, and whether its response has an (empty) Result element.</summary>
    private sealed record ActionModel(IReadOnlySet<string> Allowed, Func<IReadOnlyDictionary<string, string>, string?> Validate, bool HasResult, string? AllowedPrefix = null);

    private static readonly Dictionary<string, ServiceModel> Models = new()
    {
        [AutoScaling] = new("2011-01-01", "http://autoscaling.amazonaws.com/doc/2011-01-01/", new Dictionary<string, ActionModel>
        {
            ["CompleteLifecycleAction"] = new(
                new HashSet<string> { "AutoScalingGroupName", "LifecycleHookName", "LifecycleActionResult", "InstanceId", "LifecycleActionToken" },
                p => Required(p, "AutoScalingGroupName", "LifecycleHookName", "LifecycleActionResult")
                     ?? OneOf(p, "LifecycleActionResult", "CONTINUE", "ABANDON")
                     ?? InstanceOrToken(p),
                HasResult: true),
            ["RecordLifecycleActionHeartbeat"] = new(
                new HashSet<string> { "AutoScalingGroupName", "LifecycleHookName", "InstanceId", "LifecycleActionToken" },
                p => Required(p, "AutoScalingGroupName", "LifecycleHookName") ?? InstanceOrToken(p),
                HasResult: true),
            // DescribeAutoScalingInstances (API Reference): InstanceIds.member.N, at most 50; MaxRecords; NextToken.
            ["DescribeAutoScalingInstances"] = new(
                new HashSet<string> { "MaxRecords", "NextToken" },
                p => p.Keys.Count(k => k.StartsWith("InstanceIds.member.", StringComparison.Ordinal)) > 50
                    ? "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50"
                    : null,
                HasResult: true,
                AllowedPrefix: "InstanceIds.member."),
        }),
        [CloudFormation] = new("2010-05-15", "http://cloudformation.amazonaws.com/doc/2010-05-15/", new Dictionary<string, ActionModel>
        {
            ["SignalResource"] = new(
                new HashSet<string> { "StackName", "LogicalResourceId", "UniqueId", "Status" },
                p => Required(p, "StackName", "LogicalResourceId", "UniqueId", "Status") ?? OneOf(p, "Status", "SUCCESS", "FAILURE"),
                // SignalResource has no output shape: its response is only ResponseMetadata.
                HasResult: false),
        }),
    };

    private readonly ServiceModel _model;
    private readonly IQueryServiceModel? _state;
    private readonly Dictionary<string, StandInCredentials> _credentials;
    private readonly LoopbackHttpServer _server;
    private readonly Lock _lock = new();
    private readonly List<RecordedCall> _calls = [];
    private readonly List<string> _rejections = [];
    private int _failNext;
    private InjectedFailure _failure;
    private string? _failAction;
    private DateTimeOffset _throttleUntil = DateTimeOffset.MinValue;
    private int _requests;
    private readonly TaskCompletionSource _disposing = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private AwsQueryStandIn(string service, string region, IQueryServiceModel? state, TimeProvider? time, IEnumerable<StandInCredentials> credentials)
    {
        if (!Models.TryGetValue(service, out var model)) throw new ArgumentException($"No model for service '{service}'.", nameof(service));
        Service = service;
        Region = region;
        _model = model;
        _state = state;
        Time = time ?? TimeProvider.System;
        _credentials = credentials.ToDictionary(c => c.AccessKeyId);
        _server = LoopbackHttpServer.Start(HandleAsync);
    }

    /// <summary>Wire-format mode: every authentic, well-formed call is accepted. Only for tests of the request itself.</summary>
    /// <param name="service"><see cref="AutoScaling"/> or <see cref="CloudFormation"/>: the signing name the scope must carry.</param>
    public static AwsQueryStandIn Start(string service, string region, params StandInCredentials[] credentials) =>
        new(service, region, null, null, credentials);

    /// <summary>Amazon EC2 Auto Scaling backed by <paramref name="model"/> (its groups, instances and lifecycle actions).</summary>
    public static AwsQueryStandIn StartAutoScaling(AutoScalingModel model, string region, params StandInCredentials[] credentials) =>
        new(AutoScaling, region, model, model.Time, credentials);

    /// <summary>CloudFormation backed by <paramref name="model"/> (one stack and the signals its resources wait for).</summary>
    public static AwsQueryStandIn StartCloudFormation(CloudFormationModel model, string region, params StandInCredentials[] credentials) =>
        new(CloudFormation, region, model, model.Time, credentials);

    /// <summary>The clock <see cref="ThrottleFor"/> is measured on (the model's).</summary>
    public TimeProvider Time { get; }

    public string Service { get; }

    public string Region { get; }

    /// <summary>e.g. <c>http://127.0.0.1:40123</c>.</summary>
    public string Endpoint => _server.Endpoint;

    /// <summary>Every request that arrived, accepted or not.</summary>
    public int RequestCount => Volatile.Read(ref _requests);

    public IReadOnlyList<RecordedCall> Calls
    {
        get { lock (_lock) return [.. _calls]; }
    }

    /// <summary>"Code: message" of every rejected request, for assertion messages.</summary>
    public IReadOnlyList<string> Rejections
    {
        get { lock (_lock) return [.. _rejections]; }
    }

    /// <summary>
    /// Every authentic request is throttled (HTTP 400 Throttling, "Rate exceeded") for
    /// <paramref name="duration"/> from now on <see cref="Time"/>, as a service under load throttles
    /// for a while rather than for a number of requests.
    /// </summary>
    public void ThrottleFor(TimeSpan duration)
    {
        lock (_lock) _throttleUntil = Time.GetUtcNow() + duration;
    }

    /// <summary>The next <paramref name="count"/> authentic requests fail with <paramref name="failure"/> (and, except <see cref="InjectedFailure.AnswerLost"/>, are not recorded).</summary>
    /// <param name="action">Only requests for this Action count (null: any).</param>
    public void FailNext(int count, InjectedFailure failure, string? action = null)
    {
        lock (_lock)
        {
            _failNext = count;
            _failure = failure;
            _failAction = action;
        }
    }

    private async Task HandleAsync(HttpListenerContext context)
    {
        Interlocked.Increment(ref _requests);
        var request = context.Request;
        using var buffer = new MemoryStream();
        await request.InputStream.CopyToAsync(buffer);
        var body = buffer.ToArray();

        var auth = SigV4Verifier.Verify(request.HttpMethod, request.RawUrl ?? "/", request.Headers, body, _credentials, Region, Service, DateTimeOffset.UtcNow);
        if (auth.ErrorCode is not null)
        {
            await ErrorAsync(context, 403, auth.ErrorCode, auth.Message!);
            return;
        }

        InjectedFailure? injected = null;
        var requestedAction = ParseForm(Encoding.ASCII.GetString(body)).Parameters.GetValueOrDefault("Action");
        lock (_lock)
        {
            if (_failNext > 0 && (_failAction is null || _failAction == requestedAction))
            {
                _failNext--;
                injected = _failure;
            }
            else if (Time.GetUtcNow() < _throttleUntil)
            {
                injected = InjectedFailure.Throttling;
            }
        }
        if (injected == InjectedFailure.ServiceUnavailable)
        {
            await ErrorAsync(context, 503, "ServiceUnavailable", "Service is unavailable. Please try again.", type: "Receiver");
            return;
        }
        if (injected == InjectedFailure.Throttling)
        {
            await ErrorAsync(context, 400, "Throttling", "Rate exceeded");
            return;
        }
        if (injected == InjectedFailure.RequestLimitExceeded)
        {
            await ErrorAsync(context, 400, "RequestLimitExceeded", "Request limit exceeded.");
            return;
        }

        if (request.HttpMethod != "POST" || (request.RawUrl ?? "/") != "/")
        {
            await ErrorAsync(context, 400, "ValidationError", $"Query requests are POST /, not {request.HttpMethod} {request.RawUrl}.");
            return;
        }
        var contentType = request.Headers["Content-Type"] ?? "";
        if (!contentType.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase))
        {
            await ErrorAsync(context, 400, "ValidationError", $"Content-Type must be application/x-www-form-urlencoded, not '{contentType}'.");
            return;
        }

        var (parameters, formError) = ParseForm(Encoding.ASCII.GetString(body));
        if (formError is not null)
        {
            await ErrorAsync(context, 400, "ValidationError", formError);
            return;
        }
        if (!parameters.TryGetValue("Action", out var action) || !_model.Actions.TryGetValue(action, out var actionModel))
        {
            await ErrorAsync(context, 400, "ValidationError", $"Unknown or missing Action '{action}' for {Service}.");
            return;
        }
        if (!parameters.TryGetValue("Version", out var version) || version != _model.Version)
        {
            await ErrorAsync(context, 400, "ValidationError", $"Version must be {_model.Version} for {Service}, not '{version}'.");
            return;
        }
        var unknown = parameters.Keys.Where(k => k is not ("Action" or "Version") && !actionModel.Allowed.Contains(k)
            && !(actionModel.AllowedPrefix is { } prefix && k.StartsWith(prefix, StringComparison.Ordinal) && int.TryParse(k[prefix.Length..], out var n) && n >= 1)).ToList();
        if (unknown.Count > 0)
        {
            await ErrorAsync(context, 400, "ValidationError", $"Unknown parameter(s) for {action}: {string.Join(", ", unknown)}.");
            return;
        }
        if (actionModel.Validate(parameters) is { } invalid)
        {
            await ErrorAsync(context, 400, "ValidationError", invalid);
            return;
        }

        var call = new RecordedCall(Service, action, parameters, auth.Credentials!.AccessKeyId, request.Headers["X-Amz-Security-Token"]);
        string inner;
        try
        {
            inner = _state?.Handle(action, parameters) ?? "";
        }
        catch (StandInError refused)
        {
            lock (_lock) _calls.Add(call with { Refusal = $"{refused.Code}: {refused.Message}" });
            if (injected == InjectedFailure.AnswerLost)
            {
                await LoseAnswerAsync(context);
                return;
            }
            await ErrorAsync(context, refused.Status, refused.Code, refused.Message);
            return;
        }
        lock (_lock) _calls.Add(call);
        if (injected == InjectedFailure.AnswerLost)
        {
            // Done, but the client never hears so: it times out and tries again.
            await LoseAnswerAsync(context);
            return;
        }
        var result = actionModel.HasResult ? (inner.Length == 0 ? $"<{action}Result/>" : $"<{action}Result>{inner}</{action}Result>") : "";
        await LoopbackHttpServer.WriteAsync(context.Response, 200, "text/xml",
            $"<{action}Response xmlns=\"{_model.XmlNamespace}\">{result}<ResponseMetadata><RequestId>{Guid.NewGuid()}</RequestId></ResponseMetadata></{action}Response>");
    }

    private async Task ErrorAsync(HttpListenerContext context, int status, string code, string message, string type = "Sender")
    {
        lock (_lock) _rejections.Add($"{code}: {message}");
        var requestId = Guid.NewGuid();
        context.Response.AddHeader("x-amzn-RequestId", requestId.ToString());
        await LoopbackHttpServer.WriteAsync(context.Response, status, "text/xml",
            $"<ErrorResponse xmlns=\"{_model.XmlNamespace}\"><Error><Type>{type}</Type><Code>{code}</Code><Message>{SecurityElement.Escape(message)}</Message></Error><RequestId>{requestId}</RequestId></ErrorResponse>");
    }

    /// <summary>application/x-www-form-urlencoded: '+' is a space, %XX a UTF-8 byte; a name given twice is an error.</summary>
    private static (Dictionary<string, string> Parameters, string? Error) ParseForm(string body)
    {
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        if (body.Length == 0) return (parameters, "Empty request body.");
        foreach (var pair in body.Split('&'))
        {
            var eq = pair.IndexOf('=');
            var name = Decode(eq < 0 ? pair : pair[..eq]);
            var value = Decode(eq < 0 ? "" : pair[(eq + 1)..]);
            if (!parameters.TryAdd(name, value)) return (parameters, $"Parameter '{name}' given more than once.");
        }
        return (parameters, null);
    }

    private static string Decode(string s) => Uri.UnescapeDataString(s.Replace('+', ' '));

    private static string? Required(IReadOnlyDictionary<string, string> p, params string[] names)
    {
        var missing = names.Where(n => !p.TryGetValue(n, out var v) || v.Length == 0).ToList();
        return missing.Count == 0 ? null
            : $"{missing.Count} validation error(s) detected: " + string.Join("; ", missing.Select(n => $"Value at '{char.ToLowerInvariant(n[0])}{n[1..]}' failed to satisfy constraint: Member must not be null or empty"));
    }

    private static string? OneOf(IReadOnlyDictionary<string, string> p, string name, params string[] allowed) =>
        allowed.Contains(p[name]) ? null
            : $"1 validation error detected: Value '{p[name]}' at '{char.ToLowerInvariant(name[0])}{name[1..]}' failed to satisfy constraint: Member must satisfy enum value set: [{string.Join(", ", allowed)}]";

    private static string? InstanceOrToken(IReadOnlyDictionary<string, string> p) =>
        p.TryGetValue("InstanceId", out var i) && i.Length > 0 || p.TryGetValue("LifecycleActionToken", out var t) && t.Length > 0
            ? null
            : "Either InstanceId or LifecycleActionToken must be specified.";

    private async Task LoseAnswerAsync(HttpListenerContext context)
    {
        await _disposing.Task;
        context.Response.Abort();
    }

    public ValueTask DisposeAsync()
    {
        _disposing.TrySetResult();
        return _server.DisposeAsync();
    }
}
