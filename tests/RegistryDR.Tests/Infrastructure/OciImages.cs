using System.Buffers.Binary;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// Builds small but real OCI images on disk without any network: an OCI image layout
/// (<c>oci-layout</c>, <c>index.json</c>, <c>blobs/sha256/…</c>) holding gzip-compressed tar layers
/// with deterministic pseudo-random files, an image config (linux/amd64, <c>rootfs.diff_ids</c> =
/// digests of the uncompressed tars) and an OCI image manifest. skopeo copies it with
/// <c>oci:DIR:TAG</c>.
/// </summary>
/// <remarks>
/// The same seed gives the same bytes (and digests) on every run; different seeds give different
/// layers, configs and manifests. File contents are SHA-256 in counter mode, so they do not depend
/// on <see cref="Random"/>'s algorithm.
/// </remarks>
internal static class OciImages
{
    public const string ManifestMediaType = "application/vnd.oci.image.manifest.v1+json";
    public const string IndexMediaType = "application/vnd.oci.image.index.v1+json";
    public const string ConfigMediaType = "application/vnd.oci.image.config.v1+json";
    public const string LayerMediaType = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string RefNameAnnotation = "org.opencontainers.image.ref.name";

    // A fixed time for tar entries and the config, so the bytes depend on the seed only.
    private static readonly DateTimeOffset FixedTime = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);

    // '+' in "tar+gzip" would otherwise be written as \u002B: valid, but not what other tools write.
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// Creates (or adds to) an OCI image layout in <paramref name="directory"/> with one image
    /// tagged <paramref name="tag"/> and returns the layout path. An existing entry for the same
    /// tag in <c>index.json</c> is replaced, so several tags can share one layout.
    /// </summary>
    /// <param name="directory">The layout directory; created if absent.</param>
    /// <param name="tag">The <c>org.opencontainers.image.ref.name</c> of the image, e.g. <c>v1</c>.</param>
    /// <param name="seed">Determines every byte of the image.</param>
    /// <param name="layers">Number of layers (at least 1).</param>
    /// <param name="layerBytes">Approximate payload per layer before compression (at least 1).</param>
    public static string CreateImageLayout(string directory, string tag, int seed, int layers = 2, int layerBytes = 200_000)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentException.ThrowIfNullOrEmpty(tag);
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(layerBytes, 1);

        var layout = Path.GetFullPath(directory);
        var blobs = Path.Combine(layout, "blobs", "sha256");
        Directory.CreateDirectory(blobs);

        var layerDescriptors = new JsonArray();
        var diffIds = new JsonArray();
        var history = new JsonArray();
        for (var i = 0; i < layers; i++)
        {
            var tar = CreateLayerTar(seed, i, layerBytes);
            diffIds.Add(Digest(tar));
            var compressed = Gzip(tar);
            layerDescriptors.Add(Descriptor(LayerMediaType, WriteBlob(blobs, compressed), compressed.Length));
            history.Add(new JsonObject
            {
                ["created"] = FixedTime.ToString("yyyy-MM-ddTHH:mm:ssZ"),
                ["created_by"] = $"RegistryDR test image seed {seed} layer {i}",
            });
        }

        var config = Serialize(new JsonObject
        {
            ["created"] = FixedTime.ToString("yyyy-MM-ddTHH:mm:ssZ"),
            ["architecture"] = "amd64",
            ["os"] = "linux",
            ["config"] = new JsonObject
            {
                ["Env"] = new JsonArray("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
                ["Cmd"] = new JsonArray("/bin/sh"),
                ["Labels"] = new JsonObject { ["org.registrydr.test.seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            },
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = diffIds },
            ["history"] = history,
        });
        var configDescriptor = Descriptor(ConfigMediaType, WriteBlob(blobs, config), config.Length);

        var manifest = Serialize(new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = ManifestMediaType,
            ["config"] = configDescriptor,
            ["layers"] = layerDescriptors,
        });
        var manifestDigest = WriteBlob(blobs, manifest);

        File.WriteAllText(Path.Combine(layout, "oci-layout"), """{"imageLayoutVersion":"1.0.0"}""");
        UpdateIndex(layout, tag, manifestDigest, manifest.Length, ManifestMediaType);
        return layout;
    }

    /// <summary>
    /// Adds an OCI image index tagged <paramref name="tag"/> to the layout in
    /// <paramref name="directory"/>, naming one image per entry of <paramref name="children"/>
    /// (built as <see cref="CreateImageLayout"/> builds them, with the seed given) with the platform
    /// <c>linux/ARCHITECTURE</c>. Push it with <c>skopeo copy --all</c>. Returns the layout path.
    /// </summary>
    public static string CreateIndexLayout(string directory, string tag, IReadOnlyList<(int Seed, string Architecture)> children, int layers = 2, int layerBytes = 200_000)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(children.Count, 1);
        var layout = Path.GetFullPath(directory);
        var manifests = new JsonArray();
        foreach (var (seed, architecture) in children)
        {
            var childTag = $"{tag}-child-{seed}";
            CreateImageLayout(layout, childTag, seed, layers, layerBytes);
            var digest = ManifestDigest(layout, childTag);
            var descriptor = Descriptor(ManifestMediaType, digest, new FileInfo(Path.Combine(layout, "blobs", "sha256", digest["sha256:".Length..])).Length);
            descriptor["platform"] = new JsonObject { ["architecture"] = architecture, ["os"] = "linux" };
            manifests.Add(descriptor);
            RemoveFromIndex(layout, childTag);
        }
        var index = Serialize(new JsonObject { ["schemaVersion"] = 2, ["mediaType"] = IndexMediaType, ["manifests"] = manifests });
        UpdateIndex(layout, tag, WriteBlob(Path.Combine(layout, "blobs", "sha256"), index), index.Length, IndexMediaType);
        return layout;
    }

    /// <summary>The config digest and layer digests that the image manifest <paramref name="manifestDigest"/> in the layout names.</summary>
    public static (string Config, IReadOnlyList<string> Layers) ImageBlobs(string layoutDirectory, string manifestDigest)
    {
        var manifest = JsonNode.Parse(File.ReadAllBytes(Path.Combine(layoutDirectory, "blobs", "sha256", manifestDigest["sha256:".Length..])))!;
        return ((string)manifest["config"]!["digest"]!, [.. manifest["layers"]!.AsArray().Select(l => (string)l!["digest"]!)]);
    }

    /// <summary>The digests of the manifests that the index <paramref name="indexDigest"/> in the layout names, in order.</summary>
    public static IReadOnlyList<string> IndexChildren(string layoutDirectory, string indexDigest)
    {
        var index = JsonNode.Parse(File.ReadAllBytes(Path.Combine(layoutDirectory, "blobs", "sha256", indexDigest["sha256:".Length..])))!;
        return [.. index["manifests"]!.AsArray().Select(m => (string)m!["digest"]!)];
    }

    private static void RemoveFromIndex(string layout, string tag)
    {
        var indexPath = Path.Combine(layout, "index.json");
        var index = JsonNode.Parse(File.ReadAllBytes(indexPath))!;
        var kept = new JsonArray([.. index["manifests"]!.AsArray().Where(e => e?["annotations"]?[RefNameAnnotation]?.GetValue<string>() != tag).Select(e => e!.DeepClone())]);
        index["manifests"] = kept;
        File.WriteAllBytes(indexPath, Serialize(index));
    }

    /// <summary>The manifest digest (<c>sha256:…</c>) that <c>index.json</c> in <paramref name="layoutDirectory"/> names for <paramref name="tag"/>.</summary>
    /// <exception cref="InvalidOperationException">No such tag in the layout.</exception>
    public static string ManifestDigest(string layoutDirectory, string tag)
    {
        var index = JsonNode.Parse(File.ReadAllBytes(Path.Combine(layoutDirectory, "index.json")))
            ?? throw new InvalidOperationException($"{layoutDirectory}/index.json is empty.");
        foreach (var entry in index["manifests"]?.AsArray() ?? [])
        {
            if (entry?["annotations"]?[RefNameAnnotation]?.GetValue<string>() == tag)
            {
                return entry["digest"]!.GetValue<string>();
            }
        }

        throw new InvalidOperationException($"No manifest tagged '{tag}' in {layoutDirectory}/index.json.");
    }

    /// <summary><c>sha256:</c> plus the lower-case hex SHA-256 of <paramref name="bytes"/>.</summary>
    public static string Digest(ReadOnlySpan<byte> bytes) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static void UpdateIndex(string layout, string tag, string manifestDigest, long manifestSize, string mediaType)
    {
        var indexPath = Path.Combine(layout, "index.json");
        var manifests = new JsonArray();
        if (File.Exists(indexPath) && JsonNode.Parse(File.ReadAllBytes(indexPath))?["manifests"] is JsonArray existing)
        {
            foreach (var entry in existing)
            {
                if (entry?["annotations"]?[RefNameAnnotation]?.GetValue<string>() != tag)
                {
                    manifests.Add(entry?.DeepClone());
                }
            }
        }

        var descriptor = Descriptor(mediaType, manifestDigest, manifestSize);
        descriptor["annotations"] = new JsonObject { [RefNameAnnotation] = tag };
        manifests.Add(descriptor);

        File.WriteAllBytes(indexPath, Serialize(new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = IndexMediaType,
            ["manifests"] = manifests,
        }));
    }

    /// <summary>
    /// A tar with a directory, a small text file and a few binary files of pseudo-random content
    /// totalling about <paramref name="layerBytes"/> bytes; half of each file is text-like so that
    /// gzip has something to compress.
    /// </summary>
    private static byte[] CreateLayerTar(int seed, int layer, int layerBytes)
    {
        using var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Ustar, leaveOpen: true))
        {
            var root = $"opt/registrydr-test/seed-{seed}/layer-{layer}/";
            writer.WriteEntry(Entry(TarEntryType.Directory, "opt/", null));
            writer.WriteEntry(Entry(TarEntryType.Directory, "opt/registrydr-test/", null));
            writer.WriteEntry(Entry(TarEntryType.Directory, $"opt/registrydr-test/seed-{seed}/", null));
            writer.WriteEntry(Entry(TarEntryType.Directory, root, null));
            writer.WriteEntry(Entry(TarEntryType.RegularFile, root + "README.txt",
                Encoding.UTF8.GetBytes($"RegistryDR test image, seed {seed}, layer {layer}.\n")));

            const int files = 3;
            for (var f = 0; f < files; f++)
            {
                var size = layerBytes / files + (f < layerBytes % files ? 1 : 0);
                writer.WriteEntry(Entry(TarEntryType.RegularFile, $"{root}data-{f}.bin", Content(seed, layer, f, size)));
            }
        }

        return output.ToArray();
    }

    private static UstarTarEntry Entry(TarEntryType type, string name, byte[]? content)
    {
        var entry = new UstarTarEntry(type, name)
        {
            ModificationTime = FixedTime,
            Mode = type == TarEntryType.Directory
                ? UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute
                : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            Uid = 0,
            Gid = 0,
            UserName = "root",
            GroupName = "root",
        };
        if (content is not null)
        {
            entry.DataStream = new MemoryStream(content, writable: false);
        }

        return entry;
    }

    /// <summary>SHA-256 in counter mode over (seed, layer, file, block); every other block is mapped to letters.</summary>
    private static byte[] Content(int seed, int layer, int file, int size)
    {
        var content = new byte[size];
        Span<byte> input = stackalloc byte[16];
        Span<byte> block = stackalloc byte[32];
        BinaryPrimitives.WriteInt32LittleEndian(input, seed);
        BinaryPrimitives.WriteInt32LittleEndian(input[4..], layer);
        BinaryPrimitives.WriteInt32LittleEndian(input[8..], file);
        for (var offset = 0; offset < size; offset += block.Length)
        {
            var counter = offset / block.Length;
            BinaryPrimitives.WriteInt32LittleEndian(input[12..], counter);
            SHA256.HashData(input, block);
            var chunk = content.AsSpan(offset, Math.Min(block.Length, size - offset));
            block[..chunk.Length].CopyTo(chunk);
            if (counter % 2 == 1)
            {
                for (var i = 0; i < chunk.Length; i++)
                {
                    chunk[i] = (byte)('a' + chunk[i] % 4);
                }
            }
        }

        return content;
    }

    private static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(data);
        }

        return output.ToArray();
    }

    private static string WriteBlob(string blobsDirectory, byte[] content)
    {
        var digest = Digest(content);
        var path = Path.Combine(blobsDirectory, digest["sha256:".Length..]);
        if (!File.Exists(path))
        {
            File.WriteAllBytes(path, content);
        }

        return digest;
    }

    private static JsonObject Descriptor(string mediaType, string digest, long size) => new()
    {
        ["mediaType"] = mediaType,
        ["digest"] = digest,
        ["size"] = size,
    };

    private static byte[] Serialize(JsonNode node) => JsonSerializer.SerializeToUtf8Bytes(node, JsonOptions);
}
