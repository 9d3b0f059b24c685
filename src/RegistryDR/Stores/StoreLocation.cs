using System.Diagnostics.CodeAnalysis;

namespace RegistryDR.Stores;

/// <summary>A parsed <c>Store:Url</c>: <c>s3://bucket/prefix</c> or <c>file:///absolute/path</c>.</summary>
public sealed record StoreLocation(StoreKind Kind, string Bucket, string Prefix, string Path)
{
    public static StoreLocation Parse(string url) =>
        TryParse(url, out var location, out var error) ? location : throw new ArgumentException($"Store:Url {error}");

    public static bool TryParse(string? url, [NotNullWhen(true)] out StoreLocation? location, [NotNullWhen(false)] out string? error)
    {
        location = null;
        error = null;
        if (string.IsNullOrWhiteSpace(url))
        {
            error = "is required: s3://bucket/prefix or file:///path.";
            return false;
        }
        if (url.StartsWith("s3://", StringComparison.OrdinalIgnoreCase))
        {
            var rest = url["s3://".Length..];
            var slash = rest.IndexOf('/');
            var bucket = slash < 0 ? rest : rest[..slash];
            var prefix = slash < 0 ? "" : rest[(slash + 1)..].Trim('/');
            if (bucket.Length is < 3 or > 63 || !bucket.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '.'))
            {
                error = $"'{url}' names bucket '{bucket}', which is not a valid S3 bucket name (3–63 lower-case letters, digits, '-' or '.').";
                return false;
            }
            if (prefix.Split('/').Any(s => s is "." or "..") || prefix.Contains("//"))
            {
                error = $"'{url}' has a prefix with empty, '.' or '..' segments.";
                return false;
            }
            location = new StoreLocation(StoreKind.S3, bucket, prefix, "");
            return true;
        }
        if (url.StartsWith("file://", StringComparison.OrdinalIgnoreCase))
        {
            var path = url["file://".Length..];
            if (!path.StartsWith('/'))
            {
                error = $"'{url}' must be file:// followed by an absolute path, e.g. file:///var/backups/registry-dr.";
                return false;
            }
            location = new StoreLocation(StoreKind.FileSystem, "", "", System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(path)));
            return true;
        }
        error = $"'{url}' is not supported: use s3://bucket/prefix or file:///path.";
        return false;
    }

    public override string ToString() => Kind == StoreKind.S3
        ? (Prefix.Length == 0 ? $"s3://{Bucket}" : $"s3://{Bucket}/{Prefix}")
        : $"file://{Path}";
}

public enum StoreKind { FileSystem, S3 }
