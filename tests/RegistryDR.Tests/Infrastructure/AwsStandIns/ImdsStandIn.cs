using System.Collections.Concurrent;
using System.Net;

namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>
/// A strict IMDSv2 on loopback: a session token only by PUT with a TTL header, every metadata
/// GET without a valid token is 401 (as on an instance with HttpTokens=required), and the
/// instance tags are there only when configured (404 otherwise, as with tags in metadata off).
/// <c>autoscaling/target-lifecycle-state</c> comes from <see cref="TargetLifecycleState"/> (404
/// when it gives null: the instance is in no Auto Scaling group).
/// </summary>
internal sealed class ImdsStandIn : IAsyncDisposable
{
    public const string StackNameTag = "aws:cloudformation:stack-name";
    public const string AutoScalingGroupTag = "aws:autoscaling:groupName";

    private readonly LoopbackHttpServer _server;
    private readonly Dictionary<string, string> _values;
    private readonly ConcurrentDictionary<string, int> _tokens = new();
    private readonly Lock _failLock = new();
    private int _failNext;
    private HttpStatusCode _failStatus;
    private int _tokenRequests;
    private int _metadataRequests;
    private int _unauthorized;
    private int _targetRequests;

    private ImdsStandIn(string instanceId, string region, IReadOnlyDictionary<string, string>? tags)
    {
        _values = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["/latest/meta-data/instance-id"] = instanceId,
            ["/latest/meta-data/placement/region"] = region,
        };
        foreach (var (key, value) in tags ?? new Dictionary<string, string>())
            _values["/latest/meta-data/tags/instance/" + key] = value;
        _server = LoopbackHttpServer.Start(HandleAsync);
    }

    /// <param name="tags">Instance tags visible in metadata; null or empty: tags in metadata turned off.</param>
    public static ImdsStandIn Start(string instanceId, string region, IReadOnlyDictionary<string, string>? tags = null) =>
        new(instanceId, region, tags);

    /// <summary>e.g. <c>http://127.0.0.1:40123</c>.</summary>
    public string Endpoint => _server.Endpoint;

    public int TokenRequests => Volatile.Read(ref _tokenRequests);

    /// <summary>GETs answered 200 or 404 (with a valid token).</summary>
    public int MetadataRequests => Volatile.Read(ref _metadataRequests);

    public int UnauthorizedRequests => Volatile.Read(ref _unauthorized);

    public const string TargetLifecycleStatePath = "/latest/meta-data/autoscaling/target-lifecycle-state";

    /// <summary>What <c>autoscaling/target-lifecycle-state</c> answers now, e.g. <c>() =&gt; model.TargetLifecycleState(id)</c>; null or returning null: 404.</summary>
    public Func<string?>? TargetLifecycleState { get; set; }

    /// <summary>Metadata GETs of <c>autoscaling/target-lifecycle-state</c> answered (200 or 404).</summary>
    public int TargetLifecycleStateRequests => Volatile.Read(ref _targetRequests);

    /// <summary>A token stops being valid after this many GETs with it (null: never), to make the client fetch a new one.</summary>
    public int? TokenUses { get; set; }

    /// <summary>The next <paramref name="count"/> requests, of any kind, get <paramref name="status"/>.</summary>
    public void FailNext(int count, HttpStatusCode status)
    {
        lock (_failLock)
        {
            _failNext = count;
            _failStatus = status;
        }
    }

    private async Task HandleAsync(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        int? injected = null;
        lock (_failLock)
        {
            if (_failNext > 0)
            {
                _failNext--;
                injected = (int)_failStatus;
            }
        }
        if (injected is { } failStatus)
        {
            await LoopbackHttpServer.WriteAsync(response, failStatus, "text/plain", "injected failure");
            return;
        }

        var path = request.Url!.AbsolutePath;
        if (path == "/latest/api/token")
        {
            if (request.HttpMethod != "PUT")
            {
                await LoopbackHttpServer.WriteAsync(response, 405, "text/plain", "Method Not Allowed");
                return;
            }
            var ttl = request.Headers["X-aws-ec2-metadata-token-ttl-seconds"];
            if (!int.TryParse(ttl, out var seconds) || seconds is < 1 or > 21600)
            {
                await LoopbackHttpServer.WriteAsync(response, 400, "text/plain", "Bad Request");
                return;
            }
            Interlocked.Increment(ref _tokenRequests);
            var token = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
            _tokens[token] = 0;
            response.AddHeader("X-aws-ec2-metadata-token-ttl-seconds", seconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
            await LoopbackHttpServer.WriteAsync(response, 200, "text/plain", token);
            return;
        }

        if (request.HttpMethod != "GET")
        {
            await LoopbackHttpServer.WriteAsync(response, 405, "text/plain", "Method Not Allowed");
            return;
        }
        var presented = request.Headers["X-aws-ec2-metadata-token"];
        if (presented is null || !_tokens.TryGetValue(presented, out var uses) || (TokenUses is { } limit && uses >= limit))
        {
            Interlocked.Increment(ref _unauthorized);
            await LoopbackHttpServer.WriteAsync(response, 401, "text/plain", "Unauthorized");
            return;
        }
        _tokens[presented] = uses + 1;
        Interlocked.Increment(ref _metadataRequests);
        if (path == TargetLifecycleStatePath)
        {
            Interlocked.Increment(ref _targetRequests);
            if (TargetLifecycleState?.Invoke() is { } target)
                await LoopbackHttpServer.WriteAsync(response, 200, "text/plain", target);
            else
                await LoopbackHttpServer.WriteAsync(response, 404, "text/html", "<html><body><h1>404 - Not Found</h1></body></html>");
            return;
        }
        if (_values.TryGetValue(path, out var value))
            await LoopbackHttpServer.WriteAsync(response, 200, "text/plain", value);
        else
            await LoopbackHttpServer.WriteAsync(response, 404, "text/html", "<html><body><h1>404 - Not Found</h1></body></html>");
    }

    public ValueTask DisposeAsync() => _server.DisposeAsync();
}
