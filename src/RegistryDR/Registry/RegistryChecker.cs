using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using RegistryDR.Registry.Internal;

namespace RegistryDR.Registry;

/// <summary>
/// Walks a running registry through its HTTP API (OCI distribution spec) and reports, per
/// repository, exactly which tags and manifests do not resolve and which blobs are missing:
/// <c>GET /v2/_catalog</c> and <c>GET /v2/&lt;name&gt;/tags/list</c> page by page (<c>n</c>, <c>last</c>
/// and the <c>Link</c> header), <c>GET /v2/&lt;name&gt;/manifests/&lt;tag&gt;</c> accepting OCI image
/// manifests and indexes and Docker schema 2 manifests and manifest lists, every child of an index
/// by digest (its content checked against the digest), then <c>HEAD /v2/&lt;name&gt;/blobs/&lt;digest&gt;</c>
/// for each config and layer (its size checked against the descriptor). Each manifest and blob is
/// fetched once per repository however many tags share it.
/// </summary>
/// <remarks>
/// After a failover the restored metadata can name blobs that S3 replication has not delivered
/// yet (images and metadata replicate independently); this is how an operator, and the agent,
/// learn which images are not servable. Every wait is bounded: each request by
/// <see cref="RegistryCheckOptions.RequestTimeout"/>, the walk by <see cref="RegistryCheckOptions.Timeout"/>.
/// An answer other than "found" or "not found" (a 5xx, a 403, a timeout) is not reported as
/// missing but as an error: the walk is then incomplete.
/// </remarks>
public sealed partial class RegistryChecker(RegistryCheckOptions options, ILogger<RegistryChecker> logger, TimeProvider? time = null)
{
    private const int MaxListBytes = 16 * 1024 * 1024;
    private const int MaxIndexDepth = 8;
    private const string CatalogScope = "registry:catalog:*";
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    // OCI distribution spec, "Pulling manifests": <name> and <reference> as a tag.
    [GeneratedRegex("^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$")]
    private static partial Regex RepositoryName();

    [GeneratedRegex("^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")]
    private static partial Regex TagName();

    /// <summary>Walks the whole registry.</summary>
    /// <exception cref="RegistryCheckConfigurationException">An option, the credentials file or the CA file is unusable.</exception>
    /// <exception cref="RegistryUnavailableException">The registry does not answer <c>/v2/</c>, refuses the credentials, or its catalog cannot be listed.</exception>
    /// <exception cref="TimeoutException">The walk did not finish within <see cref="RegistryCheckOptions.Timeout"/>.</exception>
    public async Task<RegistryCheckReport> CheckAsync(CancellationToken cancellationToken)
    {
        var invalid = options.Validate();
        if (invalid.Count > 0) throw new RegistryCheckConfigurationException(string.Join(Environment.NewLine, invalid));
        RegistryCredentials? credentials = null;
        if (options.CredentialsFile is { } file)
        {
            credentials = RegistryCredentials.Load(file, options.RegistryUrl);
            if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(file) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead)) != 0)
                LogCredentialsReadable(file);
        }
        var started = _time.GetUtcNow();
        var stopwatch = _time.GetTimestamp();
        using var client = new RegistryHttpClient(options.RegistryUrl, credentials, options.CaFile, options.Concurrency, options.RequestTimeout, _time);
        using var overall = new CancellationTokenSource(options.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, overall.Token);
        var token = linked.Token;
        LogStarting(client.BaseUrl.ToString(), credentials is null ? "anonymous" : "credentials from " + credentials);
        var walks = new List<RepositoryWalk>();
        var done = 0;
        try
        {
            await PingAsync(client, token).ConfigureAwait(false);
            var repositories = await ListAsync(client, "v2/_catalog", "repositories", CatalogScope, "the catalog", token).ConfigureAwait(false);
            var errors = new List<CheckError>();
            foreach (var name in repositories.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                if (RepositoryName().IsMatch(name) && name.Length <= 255) walks.Add(new RepositoryWalk(name));
                else errors.Add(new CheckError(null, $"repository '{name}'", "the catalog lists a name that is not a valid repository name (OCI distribution spec); it was not checked"));
            }
            await Parallel.ForEachAsync(walks, new ParallelOptions { MaxDegreeOfParallelism = options.Concurrency, CancellationToken = token }, async (walk, ct) =>
            {
                await WalkRepositoryAsync(client, walk, ct).ConfigureAwait(false);
                Interlocked.Increment(ref done);
                LogRepositoryChecked(walk.Name, walk.Tags.Count, walk.Manifests.Count, walk.Blobs.Count);
            }).ConfigureAwait(false);
            // Problems() also moves the manifests and blobs that could not be checked into each walk's errors.
            var problems = walks.Select(Problems).OfType<RepositoryProblems>().ToList();
            var report = new RegistryCheckReport(
                client.BaseUrl.ToString().TrimEnd('/'), started, _time.GetElapsedTime(stopwatch), walks.Count,
                walks.Sum(w => w.Tags.Count), walks.Sum(w => w.Manifests.Count), walks.Sum(w => w.Blobs.Count),
                problems,
                [.. errors, .. walks.SelectMany(w => w.Errors.OrderBy(e => e.What, StringComparer.Ordinal).ThenBy(e => e.Reason, StringComparer.Ordinal))]);
            LogFinished(report.Repositories, report.Tags, report.Manifests, report.Blobs, report.Problems.Count, report.Errors.Count, report.Elapsed.TotalSeconds);
            return report;
        }
        catch (OperationCanceledException) when (overall.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"The check of {client.BaseUrl} did not finish within {options.Timeout.TotalSeconds:0.###} s ({done} of {walks.Count} repositories walked); raise --timeout or --concurrency.");
        }
    }

    private static async Task PingAsync(RegistryHttpClient client, CancellationToken cancellationToken)
    {
        RegistryResponse response;
        try
        {
            response = await client.SendAsync(HttpMethod.Get, "v2/", null, "", MaxListBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (RegistryRequestException ex)
        {
            throw new RegistryUnavailableException($"The registry does not answer: {ex.Message}", ex);
        }
        if (response.Status != HttpStatusCode.OK)
            throw new RegistryUnavailableException($"GET {client.BaseUrl}v2/ answered {response.Describe()}: not a registry API (OCI distribution spec, GET /v2/ must answer 200).");
    }

    /// <summary>Every entry of a paginated list (<c>n</c>, then the <c>Link: &lt;…&gt;; rel="next"</c> chain).</summary>
    private async Task<List<string>> ListAsync(RegistryHttpClient client, string path, string property, string scope, string what, CancellationToken cancellationToken)
    {
        var entries = new List<string>();
        var next = $"{path}?n={options.PageSize}";
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (next is not null)
        {
            if (!seen.Add(next)) throw new RegistryUnavailableException($"Listing {what} loops: the registry's Link header points back to {next}.");
            RegistryResponse response;
            try
            {
                response = await client.SendAsync(HttpMethod.Get, next, "application/json", scope, MaxListBytes, cancellationToken).ConfigureAwait(false);
            }
            catch (RegistryRequestException ex)
            {
                throw new RegistryUnavailableException($"Listing {what} failed: {ex.Message}", ex);
            }
            if (response.Status != HttpStatusCode.OK)
                throw new RegistryUnavailableException($"Listing {what} (GET {new Uri(client.BaseUrl, next)}) answered {response.Describe()}.");
            try
            {
                using var json = JsonDocument.Parse(response.Body);
                if (json.RootElement.TryGetProperty(property, out var array) && array.ValueKind == JsonValueKind.Array)
                    entries.AddRange(array.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!));
                else if (!json.RootElement.TryGetProperty(property, out var nothing) || nothing.ValueKind != JsonValueKind.Null)
                    throw new RegistryUnavailableException($"Listing {what} answered JSON without a \"{property}\" array.");
            }
            catch (JsonException)
            {
                throw new RegistryUnavailableException($"Listing {what} answered something that is not JSON.");
            }
            next = response.NextLink;
            // Usually a path ("/v2/_catalog?last=…&n=…"); a full URL must stay on this registry (the credentials go with it).
            if (next is not null && (next.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || next.StartsWith("https://", StringComparison.OrdinalIgnoreCase)) &&
                Uri.TryCreate(next, UriKind.Absolute, out var absolute) && absolute.Authority != client.BaseUrl.Authority)
                throw new RegistryUnavailableException($"Listing {what}: the registry's Link header points to another host ({absolute.Authority}); it is not followed.");
        }
        return entries;
    }

    private async Task WalkRepositoryAsync(RegistryHttpClient client, RepositoryWalk walk, CancellationToken cancellationToken)
    {
        List<string> tags;
        try
        {
            tags = await ListAsync(client, $"v2/{walk.Name}/tags/list", "tags", walk.Scope, $"the tags of {walk.Name}", cancellationToken).ConfigureAwait(false);
        }
        catch (RegistryUnavailableException ex)
        {
            walk.Errors.Add(new CheckError(walk.Name, "tags", ex.Message));
            return;
        }
        foreach (var tag in tags.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            if (TagName().IsMatch(tag)) walk.Tags.Add(tag);
            else walk.Errors.Add(new CheckError(walk.Name, $"tag '{tag}'", "the registry lists a tag that is not a valid tag name (OCI distribution spec); it was not checked"));
        }
        await Parallel.ForEachAsync(walk.Tags, new ParallelOptions { MaxDegreeOfParallelism = options.Concurrency, CancellationToken = cancellationToken },
            (tag, ct) => new ValueTask(ResolveTagAsync(client, walk, tag, ct))).ConfigureAwait(false);
    }

    private async Task ResolveTagAsync(RegistryHttpClient client, RepositoryWalk walk, string tag, CancellationToken cancellationToken)
    {
        RegistryResponse response;
        try
        {
            response = await client.SendAsync(HttpMethod.Get, $"v2/{walk.Name}/manifests/{Uri.EscapeDataString(tag)}", ManifestDocument.Accept, walk.Scope, ManifestDocument.MaxBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (RegistryRequestException ex)
        {
            walk.Errors.Add(new CheckError(walk.Name, $"tag {tag}", ex.Message));
            return;
        }
        if (response.Status == HttpStatusCode.NotFound)
        {
            walk.TagProblems[tag] = response.Describe();
            return;
        }
        if (response.Status != HttpStatusCode.OK)
        {
            walk.Errors.Add(new CheckError(walk.Name, $"tag {tag}", $"GET manifests/{tag} answered {response.Describe()}"));
            return;
        }
        var digest = ManifestDocument.DigestOf(response.Body)!;
        ManifestDocument document;
        try
        {
            document = ManifestDocument.Parse(response.Body, response.ContentType);
        }
        catch (FormatException ex) when (ex.Message.StartsWith("unsupported manifest media type", StringComparison.Ordinal))
        {
            walk.Errors.Add(new CheckError(walk.Name, $"tag {tag}", ex.Message + "; its blobs were not checked"));
            return;
        }
        catch (FormatException ex)
        {
            walk.TagProblems[tag] = ex.Message;
            return;
        }
        walk.TagRoots[tag] = digest;
        var node = await walk.Manifests.GetOrAdd(digest, _ => new Lazy<Task<ManifestNode>>(() => Task.FromResult(new ManifestNode(digest, document, null, null)))).Value.ConfigureAwait(false);
        await VisitAsync(client, walk, node, 0, cancellationToken).ConfigureAwait(false);
    }

    private async Task VisitAsync(RegistryHttpClient client, RepositoryWalk walk, ManifestNode node, int depth, CancellationToken cancellationToken)
    {
        if (node.Document is not { } document) return;
        if (document.IsIndex)
        {
            if (depth >= MaxIndexDepth)
            {
                walk.Errors.Add(new CheckError(walk.Name, $"manifest {node.Digest}", $"indexes nest deeper than {MaxIndexDepth}; the rest was not checked"));
                return;
            }
            foreach (var child in document.Children)
            {
                var childNode = await walk.Manifests.GetOrAdd(child.Digest, d => new Lazy<Task<ManifestNode>>(() => FetchManifestAsync(client, walk, d, cancellationToken))).Value.ConfigureAwait(false);
                await VisitAsync(client, walk, childNode, depth + 1, cancellationToken).ConfigureAwait(false);
            }
            return;
        }
        var blobs = new List<(Descriptor Descriptor, string Kind)>();
        if (document.Config is { } config) blobs.Add((config, "config"));
        blobs.AddRange(document.Layers.Select(l => (l, "layer")));
        foreach (var (descriptor, _) in blobs)
            await walk.Blobs.GetOrAdd(descriptor.Digest, _ => new Lazy<Task<BlobState>>(() => HeadBlobAsync(client, walk, descriptor, cancellationToken))).Value.ConfigureAwait(false);
    }

    private static async Task<ManifestNode> FetchManifestAsync(RegistryHttpClient client, RepositoryWalk walk, string digest, CancellationToken cancellationToken)
    {
        RegistryResponse response;
        try
        {
            response = await client.SendAsync(HttpMethod.Get, $"v2/{walk.Name}/manifests/{digest}", ManifestDocument.Accept, walk.Scope, ManifestDocument.MaxBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (RegistryRequestException ex)
        {
            return new ManifestNode(digest, null, null, ex.Message);
        }
        if (response.Status == HttpStatusCode.NotFound) return new ManifestNode(digest, null, response.Describe(), null);
        if (response.Status != HttpStatusCode.OK) return new ManifestNode(digest, null, null, $"GET manifests/{digest} answered {response.Describe()}");
        var actual = ManifestDocument.DigestOf(response.Body, digest);
        if (actual is not null && actual != digest) return new ManifestNode(digest, null, $"the registry serves content that hashes to {actual}", null);
        try
        {
            return new ManifestNode(digest, ManifestDocument.Parse(response.Body, response.ContentType), null, null);
        }
        catch (FormatException ex) when (ex.Message.StartsWith("unsupported manifest media type", StringComparison.Ordinal))
        {
            return new ManifestNode(digest, null, null, ex.Message + "; its blobs were not checked");
        }
        catch (FormatException ex)
        {
            return new ManifestNode(digest, null, ex.Message, null);
        }
    }

    private static async Task<BlobState> HeadBlobAsync(RegistryHttpClient client, RepositoryWalk walk, Descriptor descriptor, CancellationToken cancellationToken)
    {
        RegistryResponse response;
        try
        {
            response = await client.SendAsync(HttpMethod.Head, $"v2/{walk.Name}/blobs/{descriptor.Digest}", null, walk.Scope, 0, cancellationToken).ConfigureAwait(false);
        }
        catch (RegistryRequestException ex)
        {
            return new BlobState(null, ex.Message);
        }
        if (response.Status == HttpStatusCode.NotFound) return new BlobState($"HEAD answered {response.Describe()}", null);
        if (response.Status != HttpStatusCode.OK) return new BlobState(null, $"HEAD blobs/{descriptor.Digest} answered {response.Describe()}");
        if (descriptor.Size is { } size && response.ContentLength is { } length && length != size)
            return new BlobState($"the registry has {length} bytes, the manifest says {size}", null);
        return new BlobState(null, null);
    }

    /// <summary>What one repository's walk found, with every problem traced to the tags and manifests that reach it.</summary>
    private static RepositoryProblems? Problems(RepositoryWalk walk)
    {
        var nodes = walk.Manifests.Where(m => m.Value.IsValueCreated && m.Value.Value.IsCompletedSuccessfully).ToDictionary(m => m.Key, m => m.Value.Value.Result, StringComparer.Ordinal);
        var blobs = walk.Blobs.Where(b => b.Value.IsValueCreated && b.Value.Value.IsCompletedSuccessfully).ToDictionary(b => b.Key, b => b.Value.Value.Result, StringComparer.Ordinal);
        var manifestParents = new Dictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        var manifestTags = new Dictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        var blobParents = new Dictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        var blobTags = new Dictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        var blobKinds = new Dictionary<string, string>(StringComparer.Ordinal);
        var broken = new SortedSet<string>(walk.TagProblems.Keys, StringComparer.Ordinal);
        foreach (var (tag, root) in walk.TagRoots)
        {
            var stack = new Stack<(string Digest, int Depth)>([(root, 0)]);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (stack.TryPop(out var item))
            {
                if (!seen.Add(item.Digest) || !nodes.TryGetValue(item.Digest, out var node)) continue;
                if (node.Problem is not null)
                {
                    broken.Add(tag);
                    Add(manifestTags, item.Digest, tag);
                }
                if (node.Document is not { } document || item.Depth > MaxIndexDepth) continue;
                foreach (var child in document.Children)
                {
                    Add(manifestParents, child.Digest, item.Digest);
                    stack.Push((child.Digest, item.Depth + 1));
                }
                foreach (var (descriptor, kind) in (document.Config is null ? [] : new[] { (document.Config, "config") }).Concat(document.Layers.Select(l => (l, "layer"))))
                {
                    if (!blobs.TryGetValue(descriptor.Digest, out var state) || state.Problem is null) continue;
                    broken.Add(tag);
                    Add(blobParents, descriptor.Digest, item.Digest);
                    Add(blobTags, descriptor.Digest, tag);
                    // A blob named as a config anywhere is reported as one.
                    if (!blobKinds.TryGetValue(descriptor.Digest, out var known) || known != "config") blobKinds[descriptor.Digest] = kind;
                }
            }
        }
        foreach (var (digest, node) in nodes)
            if (node.Error is not null) walk.Errors.Add(new CheckError(walk.Name, $"manifest {digest}", node.Error));
        foreach (var (digest, state) in blobs)
            if (state.Error is not null) walk.Errors.Add(new CheckError(walk.Name, $"blob {digest}", state.Error));

        var unresolvedTags = walk.TagProblems.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => new UnresolvedTag(t.Key, t.Value)).ToList();
        var unresolvedManifests = manifestTags.Keys.Order(StringComparer.Ordinal)
            .Select(d => new UnresolvedManifest(d, nodes[d].Problem!, [.. manifestParents.GetValueOrDefault(d) ?? []], [.. manifestTags[d]])).ToList();
        var missingBlobs = blobTags.Keys.Order(StringComparer.Ordinal)
            .Select(d => new MissingBlob(d, blobKinds[d], blobs[d].Problem!, [.. blobParents[d]], [.. blobTags[d]])).ToList();
        return broken.Count == 0 ? null : new RepositoryProblems(walk.Name, [.. broken], unresolvedTags, unresolvedManifests, missingBlobs);

        static void Add(Dictionary<string, SortedSet<string>> map, string key, string value)
        {
            if (!map.TryGetValue(key, out var set)) map[key] = set = new SortedSet<string>(StringComparer.Ordinal);
            set.Add(value);
        }
    }

    /// <summary>A fetched manifest: its document, or why it does not resolve (<see cref="Problem"/>), or why it could not be checked (<see cref="Error"/>).</summary>
    private sealed record ManifestNode(string Digest, ManifestDocument? Document, string? Problem, string? Error);

    /// <summary>A checked blob: present (both null), missing (<see cref="Problem"/>), or not checkable (<see cref="Error"/>).</summary>
    private sealed record BlobState(string? Problem, string? Error);

    private sealed class RepositoryWalk(string name)
    {
        public string Name { get; } = name;

        /// <summary>The token scope for pulls (Docker registry token specification, "Token Scope").</summary>
        public string Scope { get; } = $"repository:{name}:pull";

        public List<string> Tags { get; } = [];

        public ConcurrentDictionary<string, string> TagRoots { get; } = new(StringComparer.Ordinal);

        public ConcurrentDictionary<string, string> TagProblems { get; } = new(StringComparer.Ordinal);

        public ConcurrentDictionary<string, Lazy<Task<ManifestNode>>> Manifests { get; } = new(StringComparer.Ordinal);

        public ConcurrentDictionary<string, Lazy<Task<BlobState>>> Blobs { get; } = new(StringComparer.Ordinal);

        public ConcurrentBag<CheckError> Errors { get; } = [];
    }

    [LoggerMessage(9500, LogLevel.Information, "Checking the registry {Registry} ({Authentication})")]
    private partial void LogStarting(string registry, string authentication);

    [LoggerMessage(9501, LogLevel.Debug, "Repository {Repository}: {Tags} tags, {Manifests} manifests, {Blobs} blobs checked")]
    private partial void LogRepositoryChecked(string repository, int tags, int manifests, int blobs);

    [LoggerMessage(9502, LogLevel.Information, "Checked {Repositories} repositories, {Tags} tags, {Manifests} manifests and {Blobs} blobs in {Seconds:F1} s: {Problems} repositories with missing content, {Errors} items not checkable")]
    private partial void LogFinished(int repositories, int tags, int manifests, int blobs, int problems, int errors, double seconds);

    [LoggerMessage(9503, LogLevel.Warning, "The credentials file {File} can be read by other users; chmod 600 it")]
    private partial void LogCredentialsReadable(string file);
}
