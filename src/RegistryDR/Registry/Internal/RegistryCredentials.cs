using System.Text;
using System.Text.Json;

namespace RegistryDR.Registry.Internal;

/// <summary>
/// A user name and password for one registry, read from a containers auth file
/// (containers-auth.json(5): <c>{"auths": {"host[:port]": {"auth": "base64(user:password)"}}}</c>,
/// the format <c>skopeo login</c>, <c>podman login</c> and <c>docker login</c> write). Never
/// printed: <see cref="ToString"/> names the file and the entry only.
/// </summary>
internal sealed class RegistryCredentials
{
    private RegistryCredentials(string user, string password, string source)
    {
        User = user;
        Password = password;
        Source = source;
    }

    public string User { get; }

    public string Password { get; }

    /// <summary>Where the credentials came from (<c>FILE, entry "host:port"</c>), for messages.</summary>
    public string Source { get; }

    /// <summary>The value of an <c>Authorization: Basic …</c> header (RFC 7617).</summary>
    public string BasicParameter => Convert.ToBase64String(Encoding.UTF8.GetBytes(User + ":" + Password));

    public override string ToString() => Source;

    /// <summary>
    /// The entry of <paramref name="path"/> for <paramref name="registry"/>. An entry's key matches
    /// when it is the registry's host and port (the port may be left out for the scheme's default),
    /// with or without <c>https://</c> and a path, as Docker writes them.
    /// </summary>
    /// <exception cref="RegistryCheckConfigurationException">The file is unreadable, not JSON, has no entry for the registry, or the entry has no usable credentials.</exception>
    public static RegistryCredentials Load(string path, Uri registry)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException ex)
        {
            // The position only: the parser's own message may quote a character of the secret.
            throw new RegistryCheckConfigurationException($"The credentials file {path} is not JSON (line {ex.LineNumber + 1}, byte {ex.BytePositionInLine + 1}); it must be a containers auth file: {{\"auths\": {{\"{registry.Authority}\": {{\"auth\": \"<base64 of user:password>\"}}}}}}.");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new RegistryCheckConfigurationException($"The credentials file {path} cannot be read: {ex.Message}");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object ||
                !document.RootElement.TryGetProperty("auths", out var auths) || auths.ValueKind != JsonValueKind.Object)
                throw new RegistryCheckConfigurationException($"The credentials file {path} has no \"auths\" object; it must be a containers auth file: {{\"auths\": {{\"{registry.Authority}\": {{\"auth\": \"<base64 of user:password>\"}}}}}}.");
            var wanted = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { registry.Authority, $"{registry.Host}:{registry.Port}" };
            var keys = new List<string>();
            foreach (var entry in auths.EnumerateObject())
            {
                keys.Add(entry.Name);
                if (!wanted.Contains(Normalise(entry.Name))) continue;
                var source = $"{path}, entry \"{entry.Name}\"";
                if (entry.Value.ValueKind != JsonValueKind.Object)
                    throw new RegistryCheckConfigurationException($"The credentials in {source} are not an object.");
                if (entry.Value.TryGetProperty("auth", out var auth) && auth.ValueKind == JsonValueKind.String && auth.GetString() is { Length: > 0 } encoded)
                {
                    string decoded;
                    try
                    {
                        decoded = Encoding.UTF8.GetString(Convert.FromBase64String(encoded));
                    }
                    catch (FormatException)
                    {
                        throw new RegistryCheckConfigurationException($"The \"auth\" value in {source} is not base64; it must be base64 of user:password.");
                    }
                    var colon = decoded.IndexOf(':', StringComparison.Ordinal);
                    if (colon <= 0)
                        throw new RegistryCheckConfigurationException($"The \"auth\" value in {source} does not decode to user:password.");
                    return new RegistryCredentials(decoded[..colon], decoded[(colon + 1)..], source);
                }
                if (entry.Value.TryGetProperty("username", out var user) && user.ValueKind == JsonValueKind.String && user.GetString() is { Length: > 0 } name &&
                    entry.Value.TryGetProperty("password", out var password) && password.ValueKind == JsonValueKind.String)
                    return new RegistryCredentials(name, password.GetString()!, source);
                throw new RegistryCheckConfigurationException($"The entry in {source} has neither \"auth\" (base64 of user:password) nor \"username\" and \"password\" (identity tokens are not supported).");
            }
            throw new RegistryCheckConfigurationException(
                $"The credentials file {path} has no entry for {registry.Authority} (its entries: {(keys.Count == 0 ? "none" : string.Join(", ", keys.Select(k => $"\"{k}\"")))}).");
        }
    }

    /// <summary><c>https://host:port/v1/</c> → <c>host:port</c>.</summary>
    private static string Normalise(string key)
    {
        var rest = key;
        var scheme = rest.IndexOf("://", StringComparison.Ordinal);
        if (scheme >= 0) rest = rest[(scheme + 3)..];
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        return slash >= 0 ? rest[..slash] : rest;
    }
}
