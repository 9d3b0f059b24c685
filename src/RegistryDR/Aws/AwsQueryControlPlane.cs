using System.Net;
using System.Text;
using System.Xml;
using System.Xml.Linq;
using Amazon.Runtime;
using Amazon.Runtime.Credentials;

namespace RegistryDR.Aws;

/// <summary>
/// <see cref="IAwsControlPlane"/> as AWS Query-protocol POSTs (form-encoded parameters, XML
/// answers) signed with SigV4. The AutoScaling and CloudFormation SDK packages are not in the
/// registry we build from, so this speaks the four calls directly, using AWSSDK.Core only for
/// credentials and the signing primitive.
/// </summary>
/// <remarks>
/// Retries: throttling (<c>Throttling</c>, <c>RequestLimitExceeded</c> and the other codes in
/// <see cref="ThrottlingCodes"/>, on a 400 as AWS Query services send them), 429, 5xx, timeouts
/// and failed connections are tried again with exponential back-off and jitter: by default
/// <see cref="MaxAttempts"/> = 8 tries with waits of 0.25–0.5, 0.5–1, 1–2, 2–4, 4–8, 5–10 and 5–10 s,
/// so a call gives up after at most 35.5 s of back-off plus <see cref="RequestTimeout"/> (20 s) per
/// try: under 3.5 minutes in the worst case, well inside a lifecycle hook's heartbeat timeout.
/// Everything else (a ValidationError, AccessDenied, a bad signature) is returned at once.
/// </remarks>
public sealed class AwsQueryControlPlane : IAwsControlPlane
{
    private const string FormContentType = "application/x-www-form-urlencoded; charset=utf-8";

    private static readonly Lazy<HttpClient> SharedHttp = new(() => new HttpClient(new SocketsHttpHandler
    {
        AllowAutoRedirect = false,
        ConnectTimeout = TimeSpan.FromSeconds(10),
        // Endpoints resolve to changing addresses; don't pin a connection forever.
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
    })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    });

    /// <summary>Codes AWS uses for "slow down" on a 400/403 (5xx and 429 are retried whatever the code).</summary>
    internal static readonly HashSet<string> ThrottlingCodes = new(StringComparer.Ordinal)
    {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
        "TooManyRequestsException", "RequestLimitExceeded", "SlowDown", "PriorRequestNotComplete",
    };

    private readonly string _region;
    private readonly AWSCredentials _credentials;
    private readonly HttpClient _http;
    private readonly QueryService _autoScaling;
    private readonly QueryService _cloudFormation;

    /// <param name="region">e.g. <c>eu-west-1</c>; the signing region for both services.</param>
    /// <param name="credentials">Asked for current keys before every request, so refreshing credentials (an instance role) stay valid.</param>
    /// <param name="autoScalingEndpoint">Override, e.g. a VPC endpoint; default <c>https://autoscaling.{region}.amazonaws.com/</c>.</param>
    /// <param name="cloudFormationEndpoint">Override; default <c>https://cloudformation.{region}.amazonaws.com/</c>.</param>
    public AwsQueryControlPlane(string region, AWSCredentials credentials, string? autoScalingEndpoint = null, string? cloudFormationEndpoint = null, HttpClient? http = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(region);
        ArgumentNullException.ThrowIfNull(credentials);
        _region = region;
        _credentials = credentials;
        _http = http ?? SharedHttp.Value;
        _autoScaling = new QueryService("AutoScaling", "autoscaling", "2011-01-01", EndpointFor("autoscaling", region, autoScalingEndpoint));
        _cloudFormation = new QueryService("CloudFormation", "cloudformation", "2010-05-15", EndpointFor("cloudformation", region, cloudFormationEndpoint));
    }

    /// <summary>
    /// Credentials from AWSSDK.Core's default chain (environment, profile, web identity, the
    /// EC2 instance role through IMDSv2). They are looked up on the first call, not here, so
    /// building the agent never blocks on metadata; a failed lookup is tried again next call.
    /// </summary>
    public static AwsQueryControlPlane FromDefaultCredentials(string region, string? autoScalingEndpoint, string? cloudFormationEndpoint) =>
        new(region, new DefaultChainCredentials(), autoScalingEndpoint, cloudFormationEndpoint);

    /// <summary>Tries per call, counting the first.</summary>
    internal int MaxAttempts { get; init; } = 8;

    /// <summary>Back-off step before the second try (the wait is half to all of the step); doubled each time up to <see cref="RetryMaxDelay"/>.</summary>
    internal TimeSpan RetryBaseDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    internal TimeSpan RetryMaxDelay { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Deadline for one try.</summary>
    internal TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>The clock the signature's date comes from.</summary>
    internal TimeProvider Time { get; init; } = TimeProvider.System;

    internal Uri AutoScalingEndpoint => _autoScaling.Endpoint;

    internal Uri CloudFormationEndpoint => _cloudFormation.Endpoint;

    public Task CompleteLifecycleActionAsync(LifecycleAction action, LifecycleActionResult result, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(action);
        var parameters = LifecycleParameters(action);
        parameters.Add(new("LifecycleActionResult", result switch
        {
            LifecycleActionResult.Continue => "CONTINUE",
            LifecycleActionResult.Abandon => "ABANDON",
            _ => throw new ArgumentOutOfRangeException(nameof(result), result, null),
        }));
        // A retry after a lost answer may find the action already completed and get a
        // ValidationError ("No active Lifecycle Action found"); the caller sees it as such.
        return CallAsync(_autoScaling, "CompleteLifecycleAction", parameters, cancellationToken);
    }

    public async Task<AutoScalingInstance?> DescribeAutoScalingInstanceAsync(string instanceId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(instanceId);
        var answer = await CallAsync(_autoScaling, "DescribeAutoScalingInstances", [new("InstanceIds.member.1", instanceId)], cancellationToken);
        try
        {
            using var reader = XmlReader.Create(new StringReader(answer), SafeXml);
            // <DescribeAutoScalingInstancesResult><AutoScalingInstances><member>…</member></AutoScalingInstances>;
            // an id in no group is simply absent (the API ignores unknown ids).
            var member = XDocument.Load(reader).Descendants()
                .Where(e => e.Name.LocalName == "member" && e.Parent?.Name.LocalName == "AutoScalingInstances")
                .FirstOrDefault(e => Child(e, "InstanceId") == instanceId);
            if (member is null) return null;
            var group = Child(member, "AutoScalingGroupName");
            var state = Child(member, "LifecycleState");
            if (string.IsNullOrEmpty(group) || string.IsNullOrEmpty(state))
                throw new AwsApiException($"AutoScaling DescribeAutoScalingInstances failed: the answer for {instanceId} has no AutoScalingGroupName or LifecycleState.", null, 200);
            return new AutoScalingInstance(instanceId, group, state, Child(member, "HealthStatus") ?? "");
        }
        catch (XmlException ex)
        {
            throw new AwsApiException($"AutoScaling DescribeAutoScalingInstances failed: the answer is not XML: {ex.Message}", null, 200, ex);
        }

        static string? Child(XElement e, string name) => e.Elements().FirstOrDefault(c => c.Name.LocalName == name)?.Value.Trim();
    }

    public Task RecordLifecycleActionHeartbeatAsync(LifecycleAction action, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(action);
        return CallAsync(_autoScaling, "RecordLifecycleActionHeartbeat", LifecycleParameters(action), cancellationToken);
    }

    public Task SignalResourceAsync(string stackName, string logicalResourceId, string uniqueId, ResourceSignalStatus status, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stackName);
        ArgumentNullException.ThrowIfNull(logicalResourceId);
        ArgumentNullException.ThrowIfNull(uniqueId);
        List<KeyValuePair<string, string>> parameters =
        [
            new("StackName", stackName),
            new("LogicalResourceId", logicalResourceId),
            new("UniqueId", uniqueId),
            new("Status", status switch
            {
                ResourceSignalStatus.Success => "SUCCESS",
                ResourceSignalStatus.Failure => "FAILURE",
                _ => throw new ArgumentOutOfRangeException(nameof(status), status, null),
            }),
        ];
        return CallAsync(_cloudFormation, "SignalResource", parameters, cancellationToken);
    }

    private static List<KeyValuePair<string, string>> LifecycleParameters(LifecycleAction action)
    {
        ArgumentNullException.ThrowIfNull(action.AutoScalingGroupName);
        ArgumentNullException.ThrowIfNull(action.LifecycleHookName);
        // Values are sent as given (even empty): the service validates them and says what is
        // wrong better than we could. Only an absent instance id or token is left out.
        List<KeyValuePair<string, string>> parameters =
        [
            new("AutoScalingGroupName", action.AutoScalingGroupName),
            new("LifecycleHookName", action.LifecycleHookName),
        ];
        if (!string.IsNullOrEmpty(action.InstanceId)) parameters.Add(new("InstanceId", action.InstanceId));
        if (!string.IsNullOrEmpty(action.LifecycleActionToken)) parameters.Add(new("LifecycleActionToken", action.LifecycleActionToken));
        return parameters;
    }

    /// <summary>Sends one Query action (retrying as the class remarks say) and returns the <c>{Action}Response</c> document.</summary>
    private async Task<string> CallAsync(QueryService service, string action, List<KeyValuePair<string, string>> parameters, CancellationToken cancellationToken)
    {
        var body = Encoding.UTF8.GetBytes(FormEncode([new("Action", action), new("Version", service.Version), .. parameters]));
        var what = $"{service.DisplayName} {action}";

        for (var attempt = 1; ; attempt++)
        {
            if (attempt > 1) await Task.Delay(BackoffDelay(attempt), cancellationToken);
            var last = attempt >= MaxAttempts;

            var credentials = await GetCredentialsAsync(what);
            using var request = new HttpRequestMessage(HttpMethod.Post, service.Endpoint) { Content = new ByteArrayContent(body) };
            var signed = SigV4.Sign(credentials, _region, service.SigningName, "POST", service.Endpoint,
                [new("Content-Type", FormContentType)], body, Time.GetUtcNow());
            foreach (var (name, value) in signed)
            {
                if (name == "Content-Type") request.Content.Headers.TryAddWithoutValidation(name, value);
                else if (name == "Host") request.Headers.Host = value;
                else request.Headers.TryAddWithoutValidation(name, value);
            }

            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(RequestTimeout);
            HttpStatusCode status;
            string answer;
            try
            {
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token);
                status = response.StatusCode;
                answer = await response.Content.ReadAsStringAsync(deadline.Token);
            }
            catch (Exception ex) when (ex is HttpRequestException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                if (!last) continue;
                var reason = ex is OperationCanceledException ? $"no answer within {RequestTimeout.TotalSeconds:0.###} s" : ex.Message;
                throw new AwsApiException($"{what} failed: {service.Endpoint} could not be reached ({attempt} tries): {reason}", null, 0, ex);
            }

            if ((int)status is >= 200 and < 300)
            {
                // A proxy's or captive portal's 200 is not the service saying yes.
                var root = RootElementName(answer);
                if (root != action + "Response")
                    throw new AwsApiException($"{what} failed: HTTP {(int)status} from {service.Endpoint} was not a {action}Response document (got {root ?? "no XML"}).", null, (int)status);
                return answer;
            }

            var (code, message) = ParseError(answer);
            var retryable = (int)status >= 500 || status == HttpStatusCode.TooManyRequests || (code is not null && ThrottlingCodes.Contains(code));
            if (retryable && !last) continue;
            var detail = message ?? (code is null ? Truncate(answer.Trim(), 300) : "(no message)");
            throw new AwsApiException($"{what} failed: {code ?? "no error code"} (HTTP {(int)status}): {detail}", code, (int)status);
        }
    }

    private async Task<ImmutableCredentials> GetCredentialsAsync(string what)
    {
        try
        {
            return await _credentials.GetCredentialsAsync();
        }
        catch (Exception ex) when (ex is AmazonClientException or AmazonServiceException)
        {
            // E.g. no keys anywhere in the chain, or STS refusing a web identity.
            throw new AwsApiException($"{what} failed: no AWS credentials: {ex.Message}", null, 0, ex);
        }
    }

    /// <summary>Exponential with "equal jitter": never less than half the step, so throttled agents spread out but still wait.</summary>
    private TimeSpan BackoffDelay(int attempt)
    {
        var step = Math.Min(RetryMaxDelay.TotalMilliseconds, RetryBaseDelay.TotalMilliseconds * Math.Pow(2, attempt - 2));
        return TimeSpan.FromMilliseconds(step / 2 + Random.Shared.NextDouble() * step / 2);
    }

    /// <summary>RFC 3986 percent-encoding (spaces as %20), which every AWS Query endpoint accepts.</summary>
    internal static string FormEncode(IEnumerable<KeyValuePair<string, string>> parameters) =>
        string.Join('&', parameters.Select(p => Uri.EscapeDataString(p.Key) + "=" + Uri.EscapeDataString(p.Value)));

    internal static (string? Code, string? Message) ParseError(string xml)
    {
        try
        {
            using var reader = XmlReader.Create(new StringReader(xml), SafeXml);
            // <ErrorResponse><Error><Code/><Message/></Error></ErrorResponse>; namespaces vary by service.
            var error = XDocument.Load(reader).Descendants().FirstOrDefault(e => e.Name.LocalName == "Error");
            var code = error?.Elements().FirstOrDefault(e => e.Name.LocalName == "Code")?.Value.Trim();
            var message = error?.Elements().FirstOrDefault(e => e.Name.LocalName == "Message")?.Value.Trim();
            return (string.IsNullOrEmpty(code) ? null : code, message is null ? null : Truncate(message, 1000));
        }
        catch (XmlException)
        {
            // Not XML (a load balancer's HTML page, say): the caller reports the raw text.
            return (null, null);
        }
    }

    private static string? RootElementName(string xml)
    {
        try
        {
            using var reader = XmlReader.Create(new StringReader(xml), SafeXml);
            return reader.MoveToContent() == XmlNodeType.Element ? reader.LocalName : null;
        }
        catch (XmlException)
        {
            return null;
        }
    }

    private static readonly XmlReaderSettings SafeXml = new() { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null };

    private static string Truncate(string s, int max) => s.Length <= max ? s : s[..max] + "…";

    private static Uri EndpointFor(string prefix, string region, string? overrideEndpoint)
    {
        if (overrideEndpoint is null)
        {
            // China regions live under their own DNS suffix.
            var suffix = region.StartsWith("cn-", StringComparison.Ordinal) ? "amazonaws.com.cn" : "amazonaws.com";
            return new Uri($"https://{prefix}.{region}.{suffix}/");
        }
        if (!Uri.TryCreate(overrideEndpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp) || !string.IsNullOrEmpty(uri.Query))
            throw new ArgumentException($"The {prefix} endpoint '{overrideEndpoint}' is not an absolute http(s) URL without a query.", nameof(overrideEndpoint));
        return uri;
    }

    private sealed record QueryService(string DisplayName, string SigningName, string Version, Uri Endpoint);

    /// <summary>
    /// Resolves AWSSDK.Core's default credential chain on first use and then delegates to what
    /// it found (which refreshes itself, e.g. instance-role keys before they expire).
    /// </summary>
    private sealed class DefaultChainCredentials : AWSCredentials
    {
        private static readonly DefaultAWSCredentialsIdentityResolver Resolver = new();
        private readonly SemaphoreSlim _gate = new(1, 1);
        private AWSCredentials? _resolved;

        public override ImmutableCredentials GetCredentials() => GetCredentialsAsync().GetAwaiter().GetResult();

        public override async Task<ImmutableCredentials> GetCredentialsAsync()
        {
            var resolved = _resolved;
            if (resolved is null)
            {
                await _gate.WaitAsync();
                try
                {
                    resolved = _resolved ??= await Resolver.ResolveIdentityAsync(null, CancellationToken.None);
                }
                finally
                {
                    _gate.Release();
                }
            }
            return await resolved.GetCredentialsAsync();
        }
    }
}
