using System.Security.Cryptography;
using System.Text;
using Amazon.Runtime;
using Amazon.Runtime.Internal.Auth;

namespace RegistryDR.Aws;

/// <summary>
/// Signs one request with Signature Version 4 in the Authorization header. We build the
/// canonical request ourselves (it is small and fixed for Query POSTs) and leave the key
/// derivation and string to sign to AWSSDK.Core's <see cref="AWS4Signer.ComputeSignature(ImmutableCredentials, string, DateTime, string, string, string)"/>,
/// the same code every SDK client signs with.
/// </summary>
internal static class SigV4
{
    internal const string AmzDateHeader = "X-Amz-Date";
    internal const string SecurityTokenHeader = "X-Amz-Security-Token";

    /// <summary>
    /// Returns the headers to send (names as sent, values exactly as signed) including
    /// Authorization. <paramref name="headers"/> are the other headers to sign, e.g. content-type.
    /// </summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Sign(
        ImmutableCredentials credentials,
        string region,
        string service,
        string method,
        Uri uri,
        IReadOnlyList<KeyValuePair<string, string>> headers,
        ReadOnlySpan<byte> body,
        DateTimeOffset now)
    {
        // Whole seconds: the header and the signature's date must agree to the second.
        var signedAt = new DateTime(now.UtcDateTime.Ticks - now.UtcDateTime.Ticks % TimeSpan.TicksPerSecond, DateTimeKind.Utc);
        var all = new List<KeyValuePair<string, string>>(headers)
        {
            new("Host", uri.Authority),
            new(AmzDateHeader, signedAt.ToString("yyyyMMdd'T'HHmmss'Z'", System.Globalization.CultureInfo.InvariantCulture)),
        };
        if (credentials.UseToken) all.Add(new(SecurityTokenHeader, credentials.Token));

        var canonical = all
            .Select(h => (Name: h.Key.ToLowerInvariant(), Value: CanonicalValue(h.Value)))
            .OrderBy(h => h.Name, StringComparer.Ordinal)
            .ToList();
        var signedHeaders = string.Join(';', canonical.Select(h => h.Name));
        var canonicalRequest = new StringBuilder()
            .Append(method).Append('\n')
            .Append(CanonicalPath(uri)).Append('\n')
            .Append('\n') // Query POSTs carry their parameters in the body, never in the query string.
            .AppendJoin("", canonical.Select(h => h.Name + ":" + h.Value + "\n")).Append('\n')
            .Append(signedHeaders).Append('\n')
            .Append(Convert.ToHexStringLower(SHA256.HashData(body)))
            .ToString();

        var result = AWS4Signer.ComputeSignature(credentials, region, signedAt, service, signedHeaders, canonicalRequest);
        all.Add(new("Authorization", result.ForAuthorizationHeader));
        return all;
    }

    private static string CanonicalValue(string value) =>
        string.Join(' ', value.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries));

    /// <summary>
    /// The path as sent, each segment encoded once more: services other than S3 sign the
    /// double-encoded path. For the usual "/" both are the same.
    /// </summary>
    private static string CanonicalPath(Uri uri)
    {
        var path = uri.AbsolutePath;
        if (path.Length == 0) return "/";
        return string.Join('/', path.Split('/').Select(Uri.EscapeDataString));
    }
}
