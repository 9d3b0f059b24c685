using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace RegistryDR.Registry.Internal;

/// <summary>A content descriptor: what a manifest names (OCI image spec, "Descriptors").</summary>
internal sealed record Descriptor(string Digest, string? MediaType, long? Size);

/// <summary>
/// A manifest as far as the check needs it: an index (children to fetch) or an image (a config and
/// layers to HEAD). Media types per the OCI image spec ("Image Manifest", "Image Index") and
/// Docker's "Image Manifest V 2, Schema 2" (manifest and manifest list) and V 2 Schema 1.
/// </summary>
internal sealed partial record ManifestDocument(string MediaType, IReadOnlyList<Descriptor> Children, Descriptor? Config, IReadOnlyList<Descriptor> Layers)
{
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json";
    public const string DockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";

    /// <summary>The Accept header for manifest requests: every type the check understands, lists and indexes included (so a tag is never converted to a single platform).</summary>
    public const string Accept = OciIndex + ", " + DockerManifestList + ", " + OciManifest + ", " + DockerManifest + ", " + DockerSchema1Signed + ";q=0.5, " + DockerSchema1 + ";q=0.5";

    /// <summary>The largest manifest accepted: 4 MiB, what the OCI distribution spec asks registries to accept at least.</summary>
    public const int MaxBytes = 4 * 1024 * 1024;

    public bool IsIndex => MediaType is OciIndex or DockerManifestList;

    // OCI image spec, "Digests": algorithm ":" encoded.
    [GeneratedRegex("^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")]
    private static partial Regex DigestPattern();

    public static bool IsValidDigest(string? digest) => digest is not null && digest.Length <= 255 && DigestPattern().IsMatch(digest);

    /// <summary>
    /// <c>sha256:…</c> (or <c>sha512:…</c> when <paramref name="like"/> is one) of <paramref name="content"/>;
    /// null for an algorithm the check cannot compute.
    /// </summary>
    public static string? DigestOf(ReadOnlySpan<byte> content, string like = "sha256:") =>
        like.StartsWith("sha256:", StringComparison.Ordinal) ? "sha256:" + Convert.ToHexStringLower(SHA256.HashData(content))
        : like.StartsWith("sha512:", StringComparison.Ordinal) ? "sha512:" + Convert.ToHexStringLower(SHA512.HashData(content))
        : null;

    /// <summary>Parses <paramref name="content"/> served as <paramref name="contentType"/>.</summary>
    /// <exception cref="FormatException">Not a manifest of a known type, or a descriptor with an invalid digest; the message says which.</exception>
    public static ManifestDocument Parse(byte[] content, string? contentType)
    {
        JsonDocument json;
        try
        {
            json = JsonDocument.Parse(content);
        }
        catch (JsonException ex)
        {
            throw new FormatException($"the manifest is not JSON (line {ex.LineNumber + 1})");
        }
        using (json)
        {
            var root = json.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new FormatException("the manifest is not a JSON object");
            var declared = root.TryGetProperty("mediaType", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
            // The Content-Type decides; registries serving application/json (or nothing) fall back on the
            // document's own mediaType, then on its shape.
            var type = contentType is OciManifest or OciIndex or DockerManifest or DockerManifestList or DockerSchema1 or DockerSchema1Signed
                ? contentType
                : declared ?? (root.TryGetProperty("manifests", out _) ? OciIndex
                    : root.TryGetProperty("layers", out _) ? OciManifest
                    : root.TryGetProperty("fsLayers", out _) ? DockerSchema1 : null);
            switch (type)
            {
                case OciIndex or DockerManifestList:
                    return new ManifestDocument(type, Descriptors(root, "manifests", required: true), null, []);
                case OciManifest or DockerManifest:
                    if (!root.TryGetProperty("config", out var config) || config.ValueKind != JsonValueKind.Object)
                        throw new FormatException("the image manifest has no config descriptor");
                    // Non-distributable (foreign) layers carry "urls" and are not stored in the registry.
                    var layers = Descriptors(root, "layers", required: true, skip: d => d.TryGetProperty("urls", out _));
                    return new ManifestDocument(type, [], ToDescriptor(config, "config"), layers);
                case DockerSchema1 or DockerSchema1Signed:
                    if (!root.TryGetProperty("fsLayers", out var fsLayers) || fsLayers.ValueKind != JsonValueKind.Array)
                        throw new FormatException("the schema 1 manifest has no fsLayers");
                    var blobs = new List<Descriptor>();
                    foreach (var layer in fsLayers.EnumerateArray())
                    {
                        var digest = layer.TryGetProperty("blobSum", out var b) ? b.GetString() : null;
                        if (!IsValidDigest(digest)) throw new FormatException($"fsLayers names an invalid digest '{Truncate(digest)}'");
                        // Schema 1 repeats the same (empty) layer; one HEAD each is enough.
                        if (blobs.All(x => x.Digest != digest)) blobs.Add(new Descriptor(digest!, null, null));
                    }
                    return new ManifestDocument(type, [], null, blobs);
                default:
                    throw new FormatException($"unsupported manifest media type '{Truncate(contentType ?? declared ?? "(none)")}'");
            }
        }
    }

    private static List<Descriptor> Descriptors(JsonElement root, string property, bool required, Func<JsonElement, bool>? skip = null)
    {
        if (!root.TryGetProperty(property, out var array) || array.ValueKind != JsonValueKind.Array)
        {
            if (required) throw new FormatException($"the manifest has no \"{property}\" array");
            return [];
        }
        var list = new List<Descriptor>();
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object) throw new FormatException($"an entry of \"{property}\" is not an object");
            if (skip?.Invoke(item) == true) continue;
            list.Add(ToDescriptor(item, property));
        }
        return list;
    }

    private static Descriptor ToDescriptor(JsonElement item, string where)
    {
        var digest = item.TryGetProperty("digest", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;
        if (!IsValidDigest(digest)) throw new FormatException($"\"{where}\" names an invalid digest '{Truncate(digest)}'");
        var mediaType = item.TryGetProperty("mediaType", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
        long? size = item.TryGetProperty("size", out var s) && s.TryGetInt64(out var n) ? n : null;
        return new Descriptor(digest!, mediaType, size);
    }

    private static string Truncate(string? value) => value is null ? "(none)" : value.Length <= 80 ? value : value[..80] + "…";
}
