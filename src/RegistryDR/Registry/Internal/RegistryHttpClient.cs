using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;

namespace RegistryDR.Registry.Internal;

/// <summary>One answer of the registry, its body read (up to a limit).</summary>
internal sealed record RegistryResponse(HttpStatusCode Status, byte[] Body, string? ContentType, long? ContentLength, string? NextLink)
{
    /// <summary>
    /// <c>404 MANIFEST_UNKNOWN: manifest unknown</c>: the status and the first error of the body
    /// (OCI distribution spec, "Error Codes"), or the status alone (HEAD has no body).
    /// </summary>
    public string Describe()
    {
        var status = $"{(int)Status} {ReasonPhrase(Status)}";
        try
        {
            using var json = JsonDocument.Parse(Body);
            if (json.RootElement.TryGetProperty("errors", out var errors) && errors.ValueKind == JsonValueKind.Array && errors.GetArrayLength() > 0)
            {
                var first = errors[0];
                var code = first.TryGetProperty("code", out var c) ? c.GetString() : null;
                var message = first.TryGetProperty("message", out var m) ? m.GetString() : null;
                if (code is not null) return $"{(int)Status} {code}{(message is null ? "" : ": " + message)}";
            }
        }
        catch (JsonException)
        {
        }
        return status;
    }

    private static string ReasonPhrase(HttpStatusCode status) => status switch
    {
        HttpStatusCode.NotFound => "Not Found",
        HttpStatusCode.Unauthorized => "Unauthorized",
        HttpStatusCode.Forbidden => "Forbidden",
        _ => status.ToString(),
    };
}

/// <summary>A request the registry did not answer usably: no connection, TLS refused, a timeout, a body too large.</summary>
internal sealed class RegistryRequestException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// HTTP to one registry's <c>/v2/</c> API with the authentication schemes registries use: HTTP
/// basic (RFC 7617) and the bearer token flow of the Docker registry token specification (a 401
/// with <c>WWW-Authenticate: Bearer realm=…,service=…,scope=…</c>; a token fetched from the realm,
/// with the basic credentials when there are some, one per scope, renewed when it expires). TLS
/// is checked against the system's trust store or the CA file given; redirects (blobs served from
/// S3) are followed and drop the Authorization header, as HttpClient does. At most
/// <c>concurrency</c> requests are in flight; each is bounded by the request timeout.
/// </summary>
internal sealed class RegistryHttpClient : IDisposable
{
    private const int MaxTokenBytes = 1 << 20;
    private readonly Uri _base;
    private readonly RegistryCredentials? _credentials;
    private readonly TimeSpan _requestTimeout;
    private readonly TimeProvider _time;
    private readonly HttpClient _http;
    private readonly SemaphoreSlim _gate;
    private readonly ConcurrentDictionary<string, Lazy<Task<(string Token, DateTimeOffset Expires)>>> _tokens = new(StringComparer.Ordinal);
    private volatile BearerChallenge? _bearer;
    private volatile bool _basic;

    private sealed record BearerChallenge(Uri Realm, string? Service);

    public RegistryHttpClient(Uri registry, RegistryCredentials? credentials, string? caFile, int concurrency, TimeSpan requestTimeout, TimeProvider time)
    {
        _base = new Uri(registry.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/");
        _credentials = credentials;
        _requestTimeout = requestTimeout;
        _time = time;
        _gate = new SemaphoreSlim(concurrency, concurrency);
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = true,
            MaxAutomaticRedirections = 5,
            ConnectTimeout = requestTimeout,
            MaxConnectionsPerServer = concurrency,
            AutomaticDecompression = DecompressionMethods.None,
            UseProxy = false,
        };
        if (caFile is not null) handler.SslOptions.RemoteCertificateValidationCallback = TrustOnly(LoadCertificates(caFile), caFile);
        // Timeouts are per request (below), so the client's own is off.
        _http = new HttpClient(handler) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
    }

    public Uri BaseUrl => _base;

    public void Dispose()
    {
        _http.Dispose();
        _gate.Dispose();
    }

    private static X509Certificate2Collection LoadCertificates(string caFile)
    {
        var certificates = new X509Certificate2Collection();
        try
        {
            certificates.ImportFromPemFile(caFile);
        }
        catch (Exception ex) when (ex is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new RegistryCheckConfigurationException($"The CA file {caFile} cannot be read as PEM certificates: {ex.Message}");
        }
        return certificates.Count > 0 ? certificates : throw new RegistryCheckConfigurationException($"The CA file {caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----).");
    }

    /// <summary>The server's chain must end at one of <paramref name="roots"/>, and its name must match (no other policy error).</summary>
    private static RemoteCertificateValidationCallback TrustOnly(X509Certificate2Collection roots, string caFile) => (_, certificate, chain, errors) =>
    {
        if (certificate is null || (errors & (SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable)) != 0) return false;
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(roots);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain is not null)
            foreach (var element in chain.ChainElements.Skip(1)) custom.ChainPolicy.ExtraStore.Add(element.Certificate);
        return custom.Build(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
    };

    /// <summary>
    /// Sends <paramref name="method"/> to <paramref name="relative"/> (below <c>/v2/</c>'s parent,
    /// e.g. <c>v2/team/app/tags/list</c>), authenticating for <paramref name="scope"/>. Any status
    /// is returned; only the transport failing throws.
    /// </summary>
    /// <exception cref="RegistryRequestException">No answer within the request timeout, connection or TLS failure, a body over <paramref name="maxBody"/> bytes.</exception>
    /// <exception cref="RegistryUnavailableException">The registry asks for credentials none were given for, or refuses the ones given.</exception>
    public async Task<RegistryResponse> SendAsync(HttpMethod method, string relative, string? accept, string scope, int maxBody, CancellationToken cancellationToken)
    {
        var uri = new Uri(_base, relative);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            string? sentToken = null;
            for (var attempt = 0; ; attempt++)
            {
                using var request = new HttpRequestMessage(method, uri);
                if (accept is not null) request.Headers.TryAddWithoutValidation("Accept", accept);
                if (_bearer is { } bearer)
                {
                    sentToken = await TokenAsync(bearer, scope, cancellationToken).ConfigureAwait(false);
                    request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", sentToken);
                }
                else if (_basic && _credentials is not null)
                {
                    request.Headers.Authorization = new AuthenticationHeaderValue("Basic", _credentials.BasicParameter);
                }
                var response = await SendOnceAsync(request, maxBody, cancellationToken).ConfigureAwait(false);
                if (response.Response.Status != HttpStatusCode.Unauthorized) return response.Response;
                if (attempt > 0)
                    throw new RegistryUnavailableException(_credentials is null
                        ? $"{uri} answered 401 Unauthorized: the registry needs credentials; give them with --credentials-file."
                        : $"{uri} answered 401 Unauthorized with the credentials from {_credentials}: the registry refuses them.");
                var challenge = response.Challenge;
                if (challenge is { Scheme: var s } && s.Equals("Bearer", StringComparison.OrdinalIgnoreCase))
                {
                    _bearer = ParseBearer(challenge, uri);
                    // A token we sent was refused (expired early, or for another scope): fetch a new one.
                    if (sentToken is not null) _tokens.TryRemove(scope, out _);
                }
                else if (challenge is { Scheme: var b } && b.Equals("Basic", StringComparison.OrdinalIgnoreCase))
                {
                    if (_credentials is null)
                        throw new RegistryUnavailableException($"{uri} answered 401 Unauthorized (HTTP basic authentication): the registry needs credentials; give them with --credentials-file.");
                    _basic = true;
                }
                else
                {
                    throw new RegistryUnavailableException($"{uri} answered 401 Unauthorized with {(challenge is null ? "no WWW-Authenticate challenge" : $"the challenge scheme '{challenge.Scheme}'")}: only Basic and Bearer are supported.");
                }
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<(RegistryResponse Response, AuthenticationHeaderValue? Challenge)> SendOnceAsync(HttpRequestMessage request, int maxBody, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_requestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token).ConfigureAwait(false);
            // A HEAD's Content-Length is the blob's size, not a body to read.
            var body = request.Method == HttpMethod.Head ? [] : await ReadBodyAsync(response, maxBody, request.RequestUri!, linked.Token).ConfigureAwait(false);
            var next = response.Headers.TryGetValues("Link", out var links) ? NextLink(links) : null;
            var challenge = response.Headers.WwwAuthenticate.FirstOrDefault();
            return (new RegistryResponse(response.StatusCode, body, response.Content.Headers.ContentType?.MediaType, response.Content.Headers.ContentLength, next), challenge);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new RegistryRequestException($"{request.Method} {request.RequestUri} did not answer within {_requestTimeout.TotalSeconds:0.###} s.");
        }
        catch (HttpRequestException ex)
        {
            throw new RegistryRequestException($"{request.Method} {request.RequestUri} failed: {ex.GetBaseException().Message}", ex);
        }
    }

    private static async Task<byte[]> ReadBodyAsync(HttpResponseMessage response, int maxBody, Uri uri, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength > maxBody)
            throw new RegistryRequestException($"{uri} answered with {response.Content.Headers.ContentLength} bytes, more than the {maxBody} accepted.");
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        var chunk = new byte[16384];
        int n;
        while ((n = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            buffer.Write(chunk, 0, n);
            if (buffer.Length > maxBody) throw new RegistryRequestException($"{uri} answered with more than the {maxBody} bytes accepted.");
        }
        return buffer.ToArray();
    }

    /// <summary>The target of <c>Link: &lt;url&gt;; rel="next"</c> (RFC 8288), as the catalog and tag lists paginate.</summary>
    internal static string? NextLink(IEnumerable<string> values)
    {
        foreach (var value in values)
        {
            foreach (var link in value.Split(','))
            {
                var open = link.IndexOf('<', StringComparison.Ordinal);
                var close = link.IndexOf('>', StringComparison.Ordinal);
                if (open < 0 || close < open) continue;
                var parameters = link[(close + 1)..].Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                if (parameters.Any(p => p.Replace(" ", "", StringComparison.Ordinal).Equals("rel=\"next\"", StringComparison.OrdinalIgnoreCase) ||
                                        p.Replace(" ", "", StringComparison.Ordinal).Equals("rel=next", StringComparison.OrdinalIgnoreCase)))
                    return link[(open + 1)..close].Trim();
            }
        }
        return null;
    }

    private BearerChallenge ParseBearer(AuthenticationHeaderValue challenge, Uri uri)
    {
        var parameters = ChallengeParameters(challenge.Parameter ?? "");
        if (!parameters.TryGetValue("realm", out var realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri) ||
            (realmUri.Scheme != Uri.UriSchemeHttps && realmUri.Scheme != Uri.UriSchemeHttp))
            throw new RegistryUnavailableException($"{uri} asks for a bearer token without a usable realm ('{realm}').");
        // Credentials must not travel in clear text to a token service when the registry itself is TLS.
        if (_credentials is not null && _base.Scheme == Uri.UriSchemeHttps && realmUri.Scheme != Uri.UriSchemeHttps)
            throw new RegistryUnavailableException($"{uri} sends token requests to {realmUri.GetLeftPart(UriPartial.Path)}, which is not https: the credentials are not sent there.");
        parameters.TryGetValue("service", out var service);
        return new BearerChallenge(realmUri, service);
    }

    /// <summary><c>realm="https://auth",service="registry",scope="a,b"</c> → its parameters (RFC 9110 auth-param, quoted strings with commas).</summary>
    internal static Dictionary<string, string> ChallengeParameters(string text)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && (text[i] == ',' || char.IsWhiteSpace(text[i]))) i++;
            var eq = text.IndexOf('=', i);
            if (eq < 0) break;
            var name = text[i..eq].Trim();
            i = eq + 1;
            string value;
            if (i < text.Length && text[i] == '"')
            {
                var sb = new System.Text.StringBuilder();
                for (i++; i < text.Length && text[i] != '"'; i++)
                {
                    if (text[i] == '\\' && i + 1 < text.Length) i++;
                    sb.Append(text[i]);
                }
                i++;
                value = sb.ToString();
            }
            else
            {
                var end = text.IndexOf(',', i);
                if (end < 0) end = text.Length;
                value = text[i..end].Trim();
                i = end;
            }
            result[name] = value;
        }
        return result;
    }

    private async Task<string> TokenAsync(BearerChallenge bearer, string scope, CancellationToken cancellationToken)
    {
        while (true)
        {
            var entry = _tokens.GetOrAdd(scope, s => new Lazy<Task<(string, DateTimeOffset)>>(() => FetchTokenAsync(bearer, s, cancellationToken)));
            (string Token, DateTimeOffset Expires) token;
            try
            {
                token = await entry.Value.ConfigureAwait(false);
            }
            catch
            {
                _tokens.TryRemove(KeyValuePair.Create(scope, entry));
                throw;
            }
            if (token.Expires > _time.GetUtcNow()) return token.Token;
            _tokens.TryRemove(KeyValuePair.Create(scope, entry));
        }
    }

    private async Task<(string, DateTimeOffset)> FetchTokenAsync(BearerChallenge bearer, string scope, CancellationToken cancellationToken)
    {
        var query = new List<string>();
        if (bearer.Service is not null) query.Add("service=" + Uri.EscapeDataString(bearer.Service));
        if (scope.Length > 0) query.Add("scope=" + Uri.EscapeDataString(scope));
        var builder = new UriBuilder(bearer.Realm) { Query = string.Join('&', query) };
        using var request = new HttpRequestMessage(HttpMethod.Get, builder.Uri);
        if (_credentials is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Basic", _credentials.BasicParameter);
        var requested = _time.GetUtcNow();
        var (response, _) = await SendOnceAsync(request, MaxTokenBytes, cancellationToken).ConfigureAwait(false);
        if (response.Status != HttpStatusCode.OK)
            throw new RegistryUnavailableException($"The token service {bearer.Realm.GetLeftPart(UriPartial.Path)} answered {response.Describe()} for {(scope.Length == 0 ? "GET /v2/ (no scope)" : "scope " + scope)}" +
                                                   (_credentials is null ? " (no credentials were given; --credentials-file)." : $" with the credentials from {_credentials}."));
        try
        {
            using var json = JsonDocument.Parse(response.Body);
            var root = json.RootElement;
            var token = (root.TryGetProperty("token", out var t) ? t.GetString() : null) ?? (root.TryGetProperty("access_token", out var a) ? a.GetString() : null);
            if (string.IsNullOrEmpty(token)) throw new RegistryUnavailableException($"The token service {bearer.Realm.GetLeftPart(UriPartial.Path)} answered without a token.");
            // The token specification's default lifetime is 60 s; renew a little early.
            var lifetime = root.TryGetProperty("expires_in", out var e) && e.TryGetInt32(out var seconds) && seconds > 0 ? seconds : 60;
            return (token, requested + TimeSpan.FromSeconds(lifetime * 0.9));
        }
        catch (JsonException)
        {
            throw new RegistryUnavailableException($"The token service {bearer.Realm.GetLeftPart(UriPartial.Path)} answered with something that is not JSON.");
        }
    }
}
