using System.Diagnostics;
using System.Security.Cryptography;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// Pushes, pulls and inspects images with the Debian <c>skopeo</c> (1.9) against a plain-HTTP
/// registry on 127.0.0.1, without touching the user's configuration: every run gets its own
/// permissive <c>policy.json</c>, an empty <c>registries.d</c>, an empty auth file and its own
/// temporary directory, and nothing from <c>$HOME</c> or <c>$XDG_*</c> is used.
/// </summary>
/// <remarks>
/// Run as root, skopeo still keeps its blob-info cache in
/// <c>/var/lib/containers/cache/blob-info-cache-v1.boltdb</c> (containers/image chooses that path
/// for euid 0 and skopeo has no flag for it). It only records which registries hold which
/// blobs, so at worst skopeo tries a cross-repository mount that the registry refuses and then
/// uploads normally.
/// </remarks>
internal static class Skopeo
{
    public const string SkopeoPath = "/usr/bin/skopeo";

    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(2);

    // A variable-free policy: accept anything, for every transport.
    private const string PermissivePolicy = """{"default":[{"type":"insecureAcceptAnything"}]}""";

    /// <summary>
    /// Pushes <c>oci:LAYOUT:TAG</c> to <c>docker://REGISTRY/REPOSITORY:TAG</c> over plain HTTP and
    /// returns the digest of the manifest the registry stored (from <c>--digestfile</c>).
    /// </summary>
    /// <param name="registryHostPort">E.g. <c>127.0.0.1:5000</c>.</param>
    public static Task<string> PushAsync(
        string layoutDir, string tag, string registryHostPort, string repository, CancellationToken cancellationToken = default) =>
        PushAsync(layoutDir, tag, registryHostPort, repository, [], cancellationToken);

    /// <summary>
    /// As <see cref="PushAsync(string, string, string, string, CancellationToken)"/>, with more
    /// <c>skopeo copy</c> options: <c>--all</c> for an image index, <c>--format v2s2</c> to store
    /// Docker schema 2 manifests (and manifest lists) instead of OCI ones. The digest returned is
    /// the one the registry stored (after any conversion).
    /// </summary>
    public static async Task<string> PushAsync(
        string layoutDir, string tag, string registryHostPort, string repository, IReadOnlyList<string> copyOptions, CancellationToken cancellationToken = default)
    {
        using var scratch = new Scratch();
        var digestFile = Path.Combine(scratch.Directory, "digest");
        await RunAsync(scratch,
            [
                "copy", "--quiet", "--dest-tls-verify=false", "--digestfile", digestFile, .. copyOptions,
                $"oci:{Path.GetFullPath(layoutDir)}:{tag}",
                $"docker://{registryHostPort}/{repository}:{tag}",
            ], cancellationToken).ConfigureAwait(false);
        var digest = (await File.ReadAllTextAsync(digestFile, cancellationToken).ConfigureAwait(false)).Trim();
        return digest.StartsWith("sha256:", StringComparison.Ordinal)
            ? digest
            : throw new InvalidOperationException($"skopeo wrote no sha256 digest to --digestfile: '{digest}'.");
    }

    /// <summary>
    /// Pulls <c>docker://REGISTRY/REPOSITORY@DIGEST</c> (plain HTTP) into the OCI layout
    /// <paramref name="destinationDir"/> as <c>oci:DIR:pulled</c>, with every blob verified by
    /// skopeo, and checks that the manifest written there has exactly <paramref name="digest"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The pulled manifest has another digest.</exception>
    public static async Task PullByDigestAsync(
        string registryHostPort, string repository, string digest, string destinationDir, CancellationToken cancellationToken = default)
    {
        const string PulledTag = "pulled";
        using var scratch = new Scratch();
        var destination = Path.GetFullPath(destinationDir);
        // skopeo creates the layout directory but not its parents.
        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
        await RunAsync(scratch,
            [
                "copy", "--quiet", "--src-tls-verify=false",
                $"docker://{registryHostPort}/{repository}@{digest}",
                $"oci:{destination}:{PulledTag}",
            ], cancellationToken).ConfigureAwait(false);

        // skopeo keeps the manifest as it is when copying by digest (the digest pins it); this
        // checks that and that the bytes on disk hash to the digest index.json claims.
        var indexed = OciImages.ManifestDigest(destination, PulledTag);
        var manifestPath = Path.Combine(destination, "blobs", "sha256", indexed["sha256:".Length..]);
        var actual = OciImages.Digest(await File.ReadAllBytesAsync(manifestPath, cancellationToken).ConfigureAwait(false));
        if (indexed != digest || actual != digest)
        {
            throw new InvalidOperationException(
                $"Pulled {repository}@{digest} from {registryHostPort}, but {destination} holds manifest {indexed} (content hashes to {actual}).");
        }
    }

    /// <summary>
    /// The digest of the manifest the registry serves for <paramref name="reference"/> (a tag, or
    /// <c>@sha256:…</c>), computed from <c>skopeo inspect --raw</c>.
    /// </summary>
    public static async Task<string> InspectDigestAsync(
        string registryHostPort, string repository, string reference, CancellationToken cancellationToken = default)
    {
        var separator = reference.StartsWith('@') ? "" : ":";
        using var scratch = new Scratch();
        var raw = await RunAsync(scratch,
            ["inspect", "--tls-verify=false", "--raw", $"docker://{registryHostPort}/{repository}{separator}{reference}"],
            cancellationToken).ConfigureAwait(false);
        return OciImages.Digest(raw);
    }

    /// <summary>Runs skopeo with the isolated configuration; returns stdout, throws with stderr on failure.</summary>
    private static async Task<byte[]> RunAsync(Scratch scratch, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        var startInfo = new ProcessStartInfo(SkopeoPath)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Global options first: skopeo (cobra) only accepts them before the subcommand.
        string[] global =
        [
            "--policy", scratch.PolicyPath,
            "--registries.d", scratch.RegistriesDirectory,
            "--tmpdir", scratch.TempDirectory,
            "--command-timeout", $"{(int)DefaultTimeout.TotalSeconds}s",
        ];
        foreach (var argument in global.Concat(arguments.Take(1)))
        {
            startInfo.ArgumentList.Add(argument);
        }

        // Per-command options after the subcommand: an empty auth file instead of
        // $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json.
        var command = arguments[0];
        if (command == "copy")
        {
            startInfo.ArgumentList.Add("--src-authfile");
            startInfo.ArgumentList.Add(scratch.AuthFile);
            startInfo.ArgumentList.Add("--dest-authfile");
            startInfo.ArgumentList.Add(scratch.AuthFile);
        }
        else
        {
            startInfo.ArgumentList.Add("--authfile");
            startInfo.ArgumentList.Add(scratch.AuthFile);
        }

        foreach (var argument in arguments.Skip(1))
        {
            startInfo.ArgumentList.Add(argument);
        }

        startInfo.Environment["HOME"] = scratch.Directory;
        startInfo.Environment["TMPDIR"] = scratch.TempDirectory;
        startInfo.Environment["XDG_RUNTIME_DIR"] = scratch.Directory;
        startInfo.Environment["XDG_CONFIG_HOME"] = Path.Combine(scratch.Directory, "config");
        startInfo.Environment["XDG_DATA_HOME"] = Path.Combine(scratch.Directory, "data");
        startInfo.Environment["XDG_CACHE_HOME"] = Path.Combine(scratch.Directory, "cache");
        startInfo.Environment["REGISTRY_AUTH_FILE"] = scratch.AuthFile;
        startInfo.Environment.Remove("DOCKER_CONFIG");
        startInfo.Environment.Remove("CONTAINERS_REGISTRIES_CONF");
        // The registry is plain HTTP on 127.0.0.1; a proxy must not get in the way.
        foreach (var proxy in new[] { "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY" })
        {
            startInfo.Environment.Remove(proxy);
        }

        var display = $"skopeo {string.Join(' ', arguments)}";
        var stopwatch = Stopwatch.StartNew();
        using var process = new Process { StartInfo = startInfo };
        process.Start();
        process.StandardInput.Close();
        using var output = new MemoryStream();
        var stdout = process.StandardOutput.BaseStream.CopyToAsync(output, CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(DefaultTimeout + TimeSpan.FromSeconds(10));
        try
        {
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already exited.
            }

            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException($"{display} did not finish within {DefaultTimeout}.{Environment.NewLine}{await stderr.ConfigureAwait(false)}");
        }

        await stdout.ConfigureAwait(false);
        var error = await stderr.ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{display} failed with exit code {process.ExitCode} after {stopwatch.ElapsedMilliseconds} ms.{Environment.NewLine}stderr:{Environment.NewLine}{error}");
        }

        return output.ToArray();
    }

    /// <summary>A per-run directory with the policy, an empty registries.d, an empty auth file and a temp dir.</summary>
    private sealed class Scratch : IDisposable
    {
        public Scratch()
        {
            Directory = System.IO.Directory.CreateTempSubdirectory("registrydr-skopeo-").FullName;
            PolicyPath = Path.Combine(Directory, "policy.json");
            File.WriteAllText(PolicyPath, PermissivePolicy);
            RegistriesDirectory = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "registries.d")).FullName;
            TempDirectory = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "tmp")).FullName;
            AuthFile = Path.Combine(Directory, "auth.json");
            File.WriteAllText(AuthFile, """{"auths":{}}""");
        }

        public string Directory { get; }

        public string PolicyPath { get; }

        public string RegistriesDirectory { get; }

        public string TempDirectory { get; }

        public string AuthFile { get; }

        public void Dispose()
        {
            try
            {
                System.IO.Directory.Delete(Directory, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A leftover temporary directory is not worth failing a test for.
            }
        }
    }
}
