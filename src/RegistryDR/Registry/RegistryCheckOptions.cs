namespace RegistryDR.Registry;

/// <summary>
/// What <see cref="RegistryChecker"/> walks and how hard it may push: the registry's base URL,
/// where its credentials and CA are, and the bounds on every wait. Validated by
/// <see cref="Validate"/> before any request is sent.
/// </summary>
public sealed class RegistryCheckOptions
{
    /// <summary>
    /// The registry's base URL, <c>https://host[:port]</c> (or <c>http://</c> for a registry on
    /// loopback or behind a TLS-terminating proxy). The API lives under <c>/v2/</c> of it (OCI
    /// distribution spec, "Endpoints").
    /// </summary>
    public required Uri RegistryUrl { get; init; }

    /// <summary>
    /// A containers auth file (the <c>auth.json</c> that <c>skopeo login</c>/<c>podman login</c>
    /// write, or Docker's <c>config.json</c>): <c>{"auths": {"host[:port]": {"auth":
    /// "base64(user:password)"}}}</c> or <c>{"username": …, "password": …}</c> in the entry.
    /// Used for HTTP basic authentication and for the token request of the bearer flow. Null:
    /// anonymous. The credentials never appear in argv, logs or error messages.
    /// </summary>
    public string? CredentialsFile { get; init; }

    /// <summary>PEM file with the CA certificate(s) that sign the registry's TLS certificate. Null: the system's trust store.</summary>
    public string? CaFile { get; init; }

    /// <summary>HTTP requests in flight at once, 1–64. Default 8.</summary>
    public int Concurrency { get; init; } = 8;

    /// <summary>How long one request (headers and body) may take, 1 s – 10 minutes. Default 30 s.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long the whole walk may take, 1 s – 1 day. Default 30 minutes.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>Entries asked for per page of <c>/v2/_catalog</c> and <c>tags/list</c> (the <c>n</c> parameter), 1–10000. Default 100.</summary>
    public int PageSize { get; init; } = 100;

    /// <summary>Every problem with these options, each naming the option and what to give instead; empty when they are usable.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (!RegistryUrl.IsAbsoluteUri || (RegistryUrl.Scheme != Uri.UriSchemeHttps && RegistryUrl.Scheme != Uri.UriSchemeHttp))
            errors.Add($"The registry URL '{RegistryUrl}' must be an absolute https:// (or http://) URL, e.g. https://registry.example.com.");
        else if (!string.IsNullOrEmpty(RegistryUrl.Query) || !string.IsNullOrEmpty(RegistryUrl.Fragment) || !string.IsNullOrEmpty(RegistryUrl.UserInfo))
            errors.Add($"The registry URL '{RegistryUrl.GetLeftPart(UriPartial.Authority)}…' must be scheme, host, port and path only: no query, fragment or user name (credentials go in --credentials-file).");
        if (CredentialsFile is not null && !File.Exists(CredentialsFile))
            errors.Add($"The credentials file '{CredentialsFile}' does not exist.");
        if (CaFile is not null && !File.Exists(CaFile))
            errors.Add($"The CA file '{CaFile}' does not exist.");
        if (Concurrency is < 1 or > 64)
            errors.Add($"Concurrency {Concurrency} must be between 1 and 64.");
        if (RequestTimeout < TimeSpan.FromSeconds(1) || RequestTimeout > TimeSpan.FromMinutes(10))
            errors.Add($"The request timeout {RequestTimeout.TotalSeconds:0.###} s must be between 1 s and 600 s.");
        if (Timeout < TimeSpan.FromSeconds(1) || Timeout > TimeSpan.FromDays(1))
            errors.Add($"The overall timeout {Timeout.TotalSeconds:0.###} s must be between 1 s and 86400 s.");
        if (PageSize is < 1 or > 10000)
            errors.Add($"The page size {PageSize} must be between 1 and 10000.");
        return errors;
    }
}
