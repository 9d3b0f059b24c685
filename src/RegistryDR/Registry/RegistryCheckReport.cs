namespace RegistryDR.Registry;

/// <summary>
/// What <see cref="RegistryChecker"/> found: how much it walked, and per repository exactly what
/// does not resolve. Lists are sorted (repositories, tags and digests ordinally) so that two checks
/// of the same registry give the same report.
/// </summary>
/// <param name="Registry">The registry's base URL.</param>
/// <param name="StartedAt">When the walk started (UTC).</param>
/// <param name="Elapsed">How long it took.</param>
/// <param name="Repositories">Repositories listed by <c>/v2/_catalog</c>.</param>
/// <param name="Tags">Tags listed over all repositories.</param>
/// <param name="Manifests">Distinct manifests (per repository) fetched: tagged ones and index children.</param>
/// <param name="Blobs">Distinct blobs (per repository) checked with HEAD: configs and layers.</param>
/// <param name="Problems">Repositories with something that does not resolve; empty when everything does.</param>
/// <param name="Errors">What could not be checked at all (an answer other than found / not found, a timeout); empty when the walk was complete.</param>
public sealed record RegistryCheckReport(
    string Registry,
    DateTimeOffset StartedAt,
    TimeSpan Elapsed,
    int Repositories,
    int Tags,
    int Manifests,
    int Blobs,
    IReadOnlyList<RepositoryProblems> Problems,
    IReadOnlyList<CheckError> Errors)
{
    /// <summary>Every listed tag, manifest and blob was checked (nothing answered other than found or not found).</summary>
    public bool Complete => Errors.Count == 0;

    /// <summary>The walk was complete and nothing is missing.</summary>
    public bool AllResolved => Complete && Problems.Count == 0;
}

/// <summary>
/// One repository's problems. <paramref name="BrokenTags"/> is the short answer — the tags a client
/// cannot pull — and the other lists say why.
/// </summary>
/// <param name="Repository">The repository name, e.g. <c>team/app</c>.</param>
/// <param name="BrokenTags">Tags that do not resolve, or whose image reaches a manifest or blob that does not.</param>
/// <param name="UnresolvedTags">Tags whose manifest cannot be fetched or is not usable.</param>
/// <param name="UnresolvedManifests">Manifests named by an image index or manifest list that cannot be fetched or are not usable.</param>
/// <param name="MissingBlobs">Configs and layers a manifest names that the registry does not have.</param>
public sealed record RepositoryProblems(
    string Repository,
    IReadOnlyList<string> BrokenTags,
    IReadOnlyList<UnresolvedTag> UnresolvedTags,
    IReadOnlyList<UnresolvedManifest> UnresolvedManifests,
    IReadOnlyList<MissingBlob> MissingBlobs);

/// <summary>A tag whose manifest does not resolve.</summary>
/// <param name="Tag">The tag.</param>
/// <param name="Reason">The registry's answer, e.g. <c>404 MANIFEST_UNKNOWN: manifest unknown</c>, or what is wrong with the manifest.</param>
public sealed record UnresolvedTag(string Tag, string Reason);

/// <summary>A manifest named by an index or manifest list that does not resolve.</summary>
/// <param name="Digest">Its digest, as the index names it.</param>
/// <param name="Reason">The registry's answer or what is wrong with the content.</param>
/// <param name="ReferencedBy">Digests of the indexes / manifest lists that name it.</param>
/// <param name="Tags">Tags whose image reaches it.</param>
public sealed record UnresolvedManifest(string Digest, string Reason, IReadOnlyList<string> ReferencedBy, IReadOnlyList<string> Tags);

/// <summary>A config or layer blob that a manifest names and the registry does not have (or has with another size).</summary>
/// <param name="Digest">The blob's digest.</param>
/// <param name="Kind"><c>config</c> or <c>layer</c>.</param>
/// <param name="Reason">The registry's answer to <c>HEAD /v2/&lt;name&gt;/blobs/&lt;digest&gt;</c>, or the size difference.</param>
/// <param name="ReferencedBy">Digests of the manifests that name it.</param>
/// <param name="Tags">Tags whose image reaches it.</param>
public sealed record MissingBlob(string Digest, string Kind, string Reason, IReadOnlyList<string> ReferencedBy, IReadOnlyList<string> Tags);

/// <summary>Something that could not be checked: neither found nor reported missing.</summary>
/// <param name="Repository">The repository, or null for the catalog itself.</param>
/// <param name="What">What was being checked, e.g. <c>tag 1.0</c> or <c>blob sha256:…</c>.</param>
/// <param name="Reason">Why not: the answer, the timeout, the refused credentials.</param>
public sealed record CheckError(string? Repository, string What, string Reason);
