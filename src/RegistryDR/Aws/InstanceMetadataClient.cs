using System.Net;

namespace RegistryDR.Aws;

/// <summary>
/// A small IMDSv2 client: one session token per <see cref="GetIdentityAsync"/>, then plain
/// GETs; <see cref="GetTargetLifecycleStateAsync"/>, which the worker polls, keeps its token
/// until the service refuses it. Short timeouts and a few retries, because off EC2 (or behind a hop limit of 1 in a
/// container) the link-local address never answers, and the agent should say so within
/// seconds rather than hang.
/// </summary>
public sealed class InstanceMetadataClient : IInstanceMetadata
{
    /// <summary>The link-local address every EC2 instance reaches its metadata on (IPv4).</summary>
    internal const string DefaultEndpoint = "http://169.254.169.254";

    internal const string StackNameTag = "aws:cloudformation:stack-name";
    internal const string AutoScalingGroupTag = "aws:autoscaling:groupName";

    private const string TokenPath = "/latest/api/token";
    private const string TokenHeader = "X-aws-ec2-metadata-token";
    private const string TokenTtlHeader = "X-aws-ec2-metadata-token-ttl-seconds";

    // Metadata must never go through an HTTP proxy taken from the environment: a proxy cannot
    // reach the link-local address, and the SDK's own IMDS client bypasses proxies too.
    private static readonly Lazy<HttpClient> SharedHttp = new(() => new HttpClient(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        ConnectTimeout = TimeSpan.FromSeconds(2),
    })
    {
        // Each request has its own deadline (RequestTimeout); HttpClient's would only hide it.
        Timeout = Timeout.InfiniteTimeSpan,
    });

    private readonly string _endpoint;
    private readonly HttpClient _http;
    private Session? _pollSession;

    public InstanceMetadataClient(string endpoint, HttpClient? http = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(endpoint);
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"Instance metadata endpoint '{endpoint}' is not an absolute http:// URL.", nameof(endpoint));
        _endpoint = endpoint.TrimEnd('/');
        _http = http ?? SharedHttp.Value;
    }

    /// <summary>Deadline for one request; IMDS answers in milliseconds when it answers at all.</summary>
    internal TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Tries per request, counting the first.</summary>
    internal int MaxAttempts { get; init; } = 3;

    /// <summary>First back-off between tries; doubled each time.</summary>
    internal TimeSpan RetryBaseDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The token only has to outlive one identity lookup; the maximum is harmless.</summary>
    internal int TokenTtlSeconds { get; init; } = 21600;

    public async Task<InstanceIdentity> GetIdentityAsync(CancellationToken cancellationToken)
    {
        var session = new Session(await GetTokenAsync(cancellationToken));
        var instanceId = await GetAsync(session, "/latest/meta-data/instance-id", optional: false, cancellationToken);
        var region = await GetAsync(session, "/latest/meta-data/placement/region", optional: false, cancellationToken);
        var stack = await GetAsync(session, "/latest/meta-data/tags/instance/" + StackNameTag, optional: true, cancellationToken);
        var group = await GetAsync(session, "/latest/meta-data/tags/instance/" + AutoScalingGroupTag, optional: true, cancellationToken);
        return new InstanceIdentity(instanceId!, region!, stack, group);
    }

    public async Task<string?> GetTargetLifecycleStateAsync(CancellationToken cancellationToken)
    {
        // Polled every few seconds for the whole life of the node: one token (valid for
        // TokenTtlSeconds) serves many polls, and GetAsync takes a new one on a 401.
        var session = _pollSession ??= new Session(await GetTokenAsync(cancellationToken));
        return await GetAsync(session, "/latest/meta-data/autoscaling/target-lifecycle-state", optional: true, cancellationToken);
    }

    private async Task<string> GetTokenAsync(CancellationToken cancellationToken)
    {
        var (status, body) = await SendAsync(() =>
        {
            var request = new HttpRequestMessage(HttpMethod.Put, _endpoint + TokenPath);
            request.Headers.TryAddWithoutValidation(TokenTtlHeader, TokenTtlSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return request;
        }, "PUT " + TokenPath, cancellationToken);
        if (status != HttpStatusCode.OK || string.IsNullOrWhiteSpace(body))
            throw Unexpected("PUT " + TokenPath, status, "no IMDSv2 session token (is IMDSv2 turned off for this instance?)");
        return body.Trim();
    }

    private async Task<string?> GetAsync(Session session, string path, bool optional, CancellationToken cancellationToken)
    {
        for (var refreshed = false; ; refreshed = true)
        {
            var token = session.Token;
            var (status, body) = await SendAsync(() =>
            {
                var request = new HttpRequestMessage(HttpMethod.Get, _endpoint + path);
                request.Headers.TryAddWithoutValidation(TokenHeader, token);
                return request;
            }, "GET " + path, cancellationToken);

            switch (status)
            {
                case HttpStatusCode.OK:
                    return body.Trim();
                case HttpStatusCode.NotFound when optional:
                    // Tags are only in metadata when the instance's metadata options allow it.
                    return null;
                case HttpStatusCode.Unauthorized when !refreshed:
                    // The token expired or the service restarted between requests: one new token.
                    session.Token = await GetTokenAsync(cancellationToken);
                    continue;
                default:
                    throw Unexpected("GET " + path, status, null);
            }
        }
    }

    /// <summary>
    /// Sends with a per-try deadline, retrying failures to connect, timeouts and 5xx/429 answers.
    /// Returns any other answer for the caller to judge.
    /// </summary>
    private async Task<(HttpStatusCode Status, string Body)> SendAsync(Func<HttpRequestMessage> create, string what, CancellationToken cancellationToken)
    {
        Exception? lastError = null;
        HttpStatusCode? lastStatus = null;
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            if (attempt > 1)
                await Task.Delay(RetryBaseDelay * Math.Pow(2, attempt - 2), cancellationToken);

            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(RequestTimeout);
            try
            {
                using var request = create();
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token);
                var body = await response.Content.ReadAsStringAsync(deadline.Token);
                var status = response.StatusCode;
                if ((int)status >= 500 || status == HttpStatusCode.TooManyRequests)
                {
                    lastStatus = status;
                    lastError = null;
                    continue;
                }
                return (status, body);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                lastError = new TimeoutException($"no answer within {RequestTimeout.TotalSeconds:0.###} s");
                lastStatus = null;
            }
            catch (HttpRequestException ex)
            {
                lastError = ex;
                lastStatus = null;
            }
        }

        if (lastStatus is { } s)
            throw Unexpected(what, s, $"still failing after {MaxAttempts} tries");
        throw new InstanceMetadataUnavailableException(
            $"EC2 instance metadata (IMDSv2) at {_endpoint} could not be reached: {what}: {lastError?.Message} ({MaxAttempts} tries). {Hint}",
            lastError);
    }

    private InstanceMetadataUnavailableException Unexpected(string what, HttpStatusCode status, string? detail) =>
        new($"EC2 instance metadata (IMDSv2) at {_endpoint} answered {what} with HTTP {(int)status} {status}"
            + (detail is null ? "" : $": {detail}") + $". {Hint}");

    private const string Hint =
        "Is this an EC2 instance, with IMDSv2 enabled and a hop limit that reaches it? "
        + "Set Agent:InstanceId, Agent:Region (and Agent:StackName, Agent:AutoScalingGroupName) to run elsewhere.";

    private sealed class Session(string token)
    {
        public string Token { get; set; } = token;
    }
}
