using System.Collections.Specialized;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>Keys the stand-ins accept. A session token, when set, must come with every request.</summary>
internal sealed record StandInCredentials(string AccessKeyId, string SecretAccessKey, string? SessionToken = null);

/// <summary>
/// Checks a SigV4 Authorization header the way a service would, written from the Signature
/// Version 4 specification (canonical request, string to sign, HMAC key derivation) and
/// deliberately sharing no code with RegistryDR's client or AWSSDK.Core's signer: a bug in
/// either must not be able to agree with itself here. awscli's requests go through the same
/// checks, which keeps this verifier honest.
/// </summary>
internal static class SigV4Verifier
{
    private const string Algorithm = "AWS4-HMAC-SHA256";
    private static readonly TimeSpan AllowedSkew = TimeSpan.FromMinutes(5);

    /// <summary>Null error code: the request is authentic and <see cref="Result.Credentials"/> signed it.</summary>
    public sealed record Result(string? ErrorCode, string? Message, StandInCredentials? Credentials)
    {
        public static Result Fail(string code, string message) => new(code, message, null);
    }

    public static Result Verify(
        string method,
        string rawUrl,
        NameValueCollection headers,
        byte[] body,
        IReadOnlyDictionary<string, StandInCredentials> known,
        string region,
        string service,
        DateTimeOffset now)
    {
        var authorization = headers["Authorization"];
        if (string.IsNullOrEmpty(authorization))
            return Result.Fail("IncompleteSignature", "Request is missing Authentication Token");
        if (!authorization.StartsWith(Algorithm + " ", StringComparison.Ordinal))
            return Result.Fail("IncompleteSignature", $"Unsupported authorization type; expected {Algorithm}.");

        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in authorization[(Algorithm.Length + 1)..].Split(','))
        {
            var eq = part.IndexOf('=');
            if (eq <= 0) return Result.Fail("IncompleteSignature", $"Authorization header part '{part.Trim()}' is not key=value.");
            fields[part[..eq].Trim()] = part[(eq + 1)..].Trim();
        }
        if (!fields.TryGetValue("Credential", out var credential) || !fields.TryGetValue("SignedHeaders", out var signedHeaderList) || !fields.TryGetValue("Signature", out var signature))
            return Result.Fail("IncompleteSignature", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.");

        var scope = credential.Split('/');
        if (scope.Length != 5 || scope[4] != "aws4_request")
            return Result.Fail("IncompleteSignature", $"Credential '{credential}' is not AKID/yyyyMMdd/region/service/aws4_request.");
        var (accessKeyId, scopeDate, scopeRegion, scopeService) = (scope[0], scope[1], scope[2], scope[3]);

        if (!known.TryGetValue(accessKeyId, out var keys))
            return Result.Fail("InvalidClientTokenId", "The security token included in the request is invalid.");
        if (scopeRegion != region)
            return Result.Fail("SignatureDoesNotMatch", $"Credential should be scoped to a valid region, not '{scopeRegion}'.");
        if (scopeService != service)
            return Result.Fail("SignatureDoesNotMatch", $"Credential should be scoped to correct service: '{service}'.");

        var amzDate = headers["X-Amz-Date"];
        if (amzDate is null || !DateTimeOffset.TryParseExact(amzDate, "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var signedAt))
            return Result.Fail("IncompleteSignature", "Authorization requires a valid X-Amz-Date header (yyyyMMddTHHmmssZ).");
        if (amzDate[..8] != scopeDate)
            return Result.Fail("SignatureDoesNotMatch", $"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scopeDate}' != '{amzDate[..8]}'.");
        if (signedAt < now - AllowedSkew)
            return Result.Fail("SignatureDoesNotMatch", $"Signature expired: {amzDate} is now earlier than {(now - AllowedSkew).UtcDateTime:yyyyMMdd'T'HHmmss'Z'}.");
        if (signedAt > now + AllowedSkew)
            return Result.Fail("SignatureDoesNotMatch", $"Signature not yet current: {amzDate} is still later than {(now + AllowedSkew).UtcDateTime:yyyyMMdd'T'HHmmss'Z'}.");

        var signedHeaders = signedHeaderList.Split(';');
        if (signedHeaders.Any(h => h.Length == 0 || h != h.ToLowerInvariant()))
            return Result.Fail("SignatureDoesNotMatch", "SignedHeaders must be lower-case names separated by ';'.");
        if (!signedHeaders.SequenceEqual(signedHeaders.Distinct().Order(StringComparer.Ordinal)))
            return Result.Fail("SignatureDoesNotMatch", "SignedHeaders must be sorted and unique.");
        foreach (var required in new[] { "host", "x-amz-date" })
        {
            if (!signedHeaders.Contains(required))
                return Result.Fail("SignatureDoesNotMatch", $"'{required}' must be a signed header.");
        }

        var token = headers["X-Amz-Security-Token"];
        if (keys.SessionToken is null ? token is not null : token is null || !FixedTimeEquals(token, keys.SessionToken))
            return Result.Fail("InvalidClientTokenId", "The security token included in the request is invalid.");
        if (token is not null && !signedHeaders.Contains("x-amz-security-token"))
            return Result.Fail("SignatureDoesNotMatch", "'x-amz-security-token' must be a signed header.");

        var canonicalHeaders = new StringBuilder();
        foreach (var name in signedHeaders)
        {
            var value = headers[name];
            if (value is null)
                return Result.Fail("SignatureDoesNotMatch", $"Signed header '{name}' is not in the request.");
            canonicalHeaders.Append(name).Append(':').Append(CollapseSpaces(value)).Append('\n');
        }

        var queryStart = rawUrl.IndexOf('?');
        var path = queryStart < 0 ? rawUrl : rawUrl[..queryStart];
        var query = queryStart < 0 ? "" : rawUrl[(queryStart + 1)..];
        var canonicalRequest =
            method + "\n" +
            CanonicalUri(path) + "\n" +
            CanonicalQuery(query) + "\n" +
            canonicalHeaders + "\n" +
            signedHeaderList + "\n" +
            Hex(SHA256.HashData(body));

        var stringToSign =
            Algorithm + "\n" +
            amzDate + "\n" +
            $"{scopeDate}/{scopeRegion}/{scopeService}/aws4_request" + "\n" +
            Hex(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest)));

        var key = Hmac(Encoding.UTF8.GetBytes("AWS4" + keys.SecretAccessKey), scopeDate);
        key = Hmac(key, scopeRegion);
        key = Hmac(key, scopeService);
        key = Hmac(key, "aws4_request");
        var expected = Hex(Hmac(key, stringToSign));

        if (!FixedTimeEquals(expected, signature))
            return Result.Fail("SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.");
        return new Result(null, null, keys);
    }

    /// <summary>
    /// Each path segment URI-encoded once more than it arrived (all services but S3 sign the
    /// double-encoded path); an empty path is "/".
    /// </summary>
    private static string CanonicalUri(string rawPath) =>
        rawPath.Length == 0 ? "/" : string.Join('/', rawPath.Split('/').Select(Encode));

    private static string CanonicalQuery(string rawQuery)
    {
        if (rawQuery.Length == 0) return "";
        return string.Join('&', rawQuery.Split('&')
            .Select(p =>
            {
                var eq = p.IndexOf('=');
                var name = eq < 0 ? p : p[..eq];
                var value = eq < 0 ? "" : p[(eq + 1)..];
                return (Name: Encode(Uri.UnescapeDataString(name)), Value: Encode(Uri.UnescapeDataString(value)));
            })
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .ThenBy(p => p.Value, StringComparer.Ordinal)
            .Select(p => p.Name + "=" + p.Value));
    }

    /// <summary>The specification's UriEncode: unreserved characters as they are, every other UTF-8 byte as %XX (upper case).</summary>
    private static string Encode(string s)
    {
        var sb = new StringBuilder();
        foreach (var b in Encoding.UTF8.GetBytes(s))
        {
            var c = (char)b;
            if (c is >= 'A' and <= 'Z' or >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_' or '.' or '~')
                sb.Append(c);
            else
                sb.Append('%').Append(b.ToString("X2", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    private static string CollapseSpaces(string value)
    {
        var sb = new StringBuilder();
        var space = false;
        foreach (var c in value.Trim())
        {
            if (c == ' ')
            {
                if (!space) sb.Append(' ');
                space = true;
            }
            else
            {
                sb.Append(c);
                space = false;
            }
        }
        return sb.ToString();
    }

    private static byte[] Hmac(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    private static string Hex(byte[] bytes)
    {
        var sb = new StringBuilder(bytes.Length * 2);
        foreach (var b in bytes) sb.Append(b.ToString("x2", CultureInfo.InvariantCulture));
        return sb.ToString();
    }

    private static bool FixedTimeEquals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));
}
