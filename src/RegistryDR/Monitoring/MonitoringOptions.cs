namespace RegistryDR.Monitoring;

/// <summary>
/// The monitoring endpoints (<c>/load_balancer_status</c>, <c>/healthz</c>, <c>/metrics</c>) and
/// the CloudWatch embedded-metric-format log. See docs/monitoring.md.
/// </summary>
public sealed class MonitoringOptions
{
    /// <summary>Where the endpoints listen when <see cref="Urls"/> is empty: loopback only, for a local Prometheus or curl.</summary>
    public const string DefaultUrl = "http://127.0.0.1:9465";

    public const string DefaultEmfLogPath = "/var/log/registry-dr/metrics.emf.log";

    public const string DefaultEmfNamespace = "RegistryDR";

    /// <summary>
    /// Kestrel listen URLs, plain <c>http://host:port</c>. Empty (the default) means
    /// <see cref="DefaultUrl"/>. The CloudFormation template adds the load balancer's health-check
    /// port, e.g. <c>http://0.0.0.0:8080</c>.
    /// </summary>
    /// <remarks>Configuration binding appends to a list initialiser, so the default cannot live in the initialiser.</remarks>
    public List<string> Urls { get; set; } = [];

    /// <summary>Serve the HTTP endpoints. Default true. The EMF log is governed by <see cref="EmfLogPath"/> alone.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>One JSON line per backup, for the CloudWatch agent to ship. Default <see cref="DefaultEmfLogPath"/>; empty disables.</summary>
    public string? EmfLogPath { get; set; } = DefaultEmfLogPath;

    /// <summary>The CloudWatch namespace of the EMF metrics. Default <c>RegistryDR</c>.</summary>
    public string EmfNamespace { get; set; } = DefaultEmfNamespace;

    /// <summary>The URLs in effect: the configured ones, or <see cref="DefaultUrl"/>.</summary>
    public IReadOnlyList<string> EffectiveUrls => Urls.Count > 0 ? Urls : [DefaultUrl];

    /// <summary>Adds one message per problem, each naming its key (<c>Monitoring:Urls:0 'x' must be …</c>).</summary>
    public static void Validate(MonitoringOptions options, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(errors);
        for (var i = 0; i < options.Urls.Count; i++)
        {
            var url = options.Urls[i];
            // Kestrel takes a scheme, host and port only: a path would be refused at start-up, after
            // the worker had already begun, so it is refused here with the other configuration errors.
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
                errors.Add($"Monitoring:Urls:{i} '{url}' must be an absolute http:// URL, e.g. \"{DefaultUrl}\" or \"http://0.0.0.0:8080\" (the endpoints serve plain HTTP).");
            else if (uri.AbsolutePath != "/" || uri.Query.Length > 0 || uri.UserInfo.Length > 0)
                errors.Add($"Monitoring:Urls:{i} '{url}' must be just scheme, host and port (no path, query or user), e.g. \"http://0.0.0.0:8080\".");
        }

        if (options.EmfLogPath is { Length: > 0 } path && !Path.IsPathFullyQualified(path))
            errors.Add($"Monitoring:EmfLogPath '{path}' must be an absolute path (or empty to write no EMF log).");

        var ns = options.EmfNamespace;
        if (string.IsNullOrWhiteSpace(ns))
            errors.Add($"Monitoring:EmfNamespace must not be empty (default \"{DefaultEmfNamespace}\").");
        else if (ns.Length > 255 || ns.StartsWith("AWS/", StringComparison.Ordinal) || !ns.All(IsNamespaceChar))
            errors.Add($"Monitoring:EmfNamespace '{ns}' is not a usable CloudWatch namespace: at most 255 of A-Z a-z 0-9 . - _ / # : and space, not starting with \"AWS/\".");
    }

    // CloudWatch's own rule for namespaces; anything else is dropped by CloudWatch Logs when it
    // extracts the metrics, silently, which would leave the staleness alarm with no data.
    private static bool IsNamespaceChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' or '/' or '#' or ':' or ' ';
}
