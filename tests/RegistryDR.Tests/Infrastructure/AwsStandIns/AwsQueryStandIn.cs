using System.Net;
using System.Security;
using System.Text;

namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>One accepted (authentic, valid) call, with every form parameter as sent (decoded).</summary>
internal sealed record RecordedCall(string Service, string Action, IReadOnlyDictionary<string, string> Parameters, string AccessKeyId, string? SessionToken);

internal enum InjectedFailure
{
    /// <summary>HTTP 503, code ServiceUnavailable.</summary>
    ServiceUnavailable,

    /// <summary>HTTP 400, code Throttling ("Rate exceeded"), as AWS Query services throttle.</summary>
    Throttling,
}

/// <summary>
/// A strict stand-in for one AWS Query-protocol service (AutoScaling or CloudFormation) on
/// loopback. Every request must carry a SigV4 signature that <see cref="SigV4Verifier"/>
/// accepts for the configured keys, region and this service, and name a known Action with the
/// right Version and valid parameters; anything else gets the service's XML ErrorResponse.
/// Accepted calls are answered with the action's response document and recorded.
/// </summary>
internal sealed class AwsQueryStandIn : IAsyncDisposable
{
    public const string AutoScaling = "autoscaling";
    public const string CloudFormation = "cloudformation";

    private sealed record ServiceModel(string Version, string XmlNamespace, IReadOnlyDictionary<string, ActionModel> Actions);

    /// <summary>An action's parameters, its validation, and whether its response has an (empty) Result element.</summary>
    private sealed record ActionModel(IReadOnlySet<string> Allowed, Func<IReadOnlyDictionary<string, string>, string?> Validate, bool HasResult);

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
    private readonly Dictionary<string, StandInCredentials> _credentials;
    private readonly LoopbackHttpServer _server;
    private readonly Lock _lock = new();
    private readonly List<RecordedCall> _calls = [];
    private readonly List<string> _rejections = [];
    private int _failNext;
    private InjectedFailure _failure;
    private int _requests;

    private AwsQueryStandIn(string service, string region, IEnumerable<StandInCredentials> credentials)
    {
        if (!Models.TryGetValue(service, out var model)) throw new ArgumentException($"No model for service '{service}'.", nameof(service));
        Service = service;
        Region = region;
        _model = model;
        _credentials = credentials.ToDictionary(c => c.AccessKeyId);
        _server = LoopbackHttpServer.Start(HandleAsync);
    }

    /// <param name="service"><see cref="AutoScaling"/> or <see cref="CloudFormation"/>: the signing name the scope must carry.</param>
    public static AwsQueryStandIn Start(string service, string region, params StandInCredentials[] credentials) =>
        new(service, region, credentials);

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

    /// <summary>The next <paramref name="count"/> authentic requests fail with <paramref name="failure"/> (and are not recorded).</summary>
    public void FailNext(int count, InjectedFailure failure)
    {
        lock (_lock)
        {
            _failNext = count;
            _failure = failure;
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
        lock (_lock)
        {
            if (_failNext > 0)
            {
                _failNext--;
                injected = _failure;
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
        var unknown = parameters.Keys.Where(k => k is not ("Action" or "Version") && !actionModel.Allowed.Contains(k)).ToList();
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

        lock (_lock)
        {
            _calls.Add(new RecordedCall(Service, action, parameters, auth.Credentials!.AccessKeyId, request.Headers["X-Amz-Security-Token"]));
        }
        var result = actionModel.HasResult ? $"<{action}Result/>" : "";
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

    public ValueTask DisposeAsync() => _server.DisposeAsync();
}
