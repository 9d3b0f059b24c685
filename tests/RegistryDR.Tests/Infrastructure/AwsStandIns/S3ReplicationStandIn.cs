using System.Net;
using Amazon.S3;
using Amazon.S3.Model;

namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>One replication rule (Amazon S3 User Guide, "Replication configuration file elements").</summary>
/// <param name="SourceBucket">The bucket whose new object versions are replicated.</param>
/// <param name="DestinationBucket">Where the replicas go (in the real service, a bucket in another region).</param>
/// <param name="Prefix">The rule's filter: only keys starting with it. Empty: every key.</param>
/// <param name="DeleteMarkerReplication">
/// "Replicating delete markers between buckets": with it on, a delete without a version id at the
/// source (which makes a delete marker there) makes a delete marker in the destination too.
/// </param>
internal sealed record BucketReplicationRule(string SourceBucket, string DestinationBucket, string Prefix = "", bool DeleteMarkerReplication = true);

/// <summary>
/// How long replication takes, drawn per object version from a seeded generator. Without RTC, S3
/// replicates "most objects within seconds" but some take longer, with no bound ("Replicating
/// objects", "Replication Time Control"): the lag here is <see cref="BaseLag"/>, plus the size
/// over <see cref="BytesPerSecond"/>, plus a uniform random part up to <see cref="Jitter"/>. With
/// <see cref="ReplicationTimeControl"/>, S3 RTC's SLA (99.99 % of objects within 15 minutes) is
/// modelled as a hard cap of 15 minutes. <see cref="LagFor"/> overrides the lag of chosen keys.
/// </summary>
internal sealed record ReplicationTiming
{
    /// <summary>S3 RTC's threshold: "replicates 99.99 percent of new objects within 15 minutes".</summary>
    public static readonly TimeSpan RtcThreshold = TimeSpan.FromMinutes(15);

    public int Seed { get; init; } = 1;

    public TimeSpan BaseLag { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Bytes per second one object is copied at; its size makes a large object late. Default 10 MiB/s.</summary>
    public double BytesPerSecond { get; init; } = 10 * 1024 * 1024;

    public TimeSpan Jitter { get; init; } = TimeSpan.FromMinutes(2);

    public bool ReplicationTimeControl { get; init; }

    /// <summary>A lag for a key and size that replaces the drawn one (null: drawn), e.g. "this manifest is late".</summary>
    public Func<string, long, TimeSpan?>? LagFor { get; init; }
}

/// <summary>An object version waiting to be replicated.</summary>
/// <param name="Key">The object key.</param>
/// <param name="SourceVersionId">Its version id in the source bucket.</param>
/// <param name="IsDeleteMarker">A delete marker rather than an object.</param>
/// <param name="Size">Bytes (0 for a delete marker).</param>
/// <param name="DueAt">When it reaches the destination, if the source region lives that long.</param>
internal sealed record PendingReplica(string Key, string SourceVersionId, bool IsDeleteMarker, long Size, DateTimeOffset DueAt);

/// <summary>What happened to one version: replicated (with the replica's version id), failed, or not replicated by rule.</summary>
internal sealed record ReplicationEvent(string Key, string SourceVersionId, bool IsDeleteMarker, ReplicationOutcome Outcome, string? ReplicaVersionId, DateTimeOffset At, string? Reason = null);

internal enum ReplicationOutcome
{
    /// <summary>The replica is in the destination (replication status COMPLETED at the source, REPLICA at the destination).</summary>
    Completed,
    /// <summary>The copy failed (status FAILED; counted by the OperationsFailedReplication metric), e.g. the version was deleted before it was copied.</summary>
    Failed,
}

/// <summary>
/// Which object versions are replicas (replication status REPLICA), shared by the stand-ins of one
/// test so that a rule whose source is another rule's destination does not replicate them again:
/// "What isn't replicated" — replicas created by another rule are not replicated (there are no
/// replication chains) unless replica modification sync is on, which is not modelled.
/// </summary>
internal sealed class ReplicaLedger
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Bucket, string Key, string VersionId), byte> _replicas = new();

    public void Add(string bucket, string key, string versionId) => _replicas[(bucket, key, versionId)] = 0;

    public bool IsReplica(string bucket, string key, string versionId) => _replicas.ContainsKey((bucket, key, versionId));
}

/// <summary>
/// A stand-in for S3 Cross-Region Replication between two versioned buckets on the tests' Ceph
/// server, following the Amazon S3 User Guide's pages "Replicating objects within and across
/// Regions", "What does Amazon S3 replicate?", "Replicating delete markers between buckets" and
/// "Meeting compliance requirements with S3 Replication Time Control":
/// <list type="bullet">
/// <item>versioning must be on at both ends ("Requirements for replication"): <see cref="StartAsync"/> turns it on;</item>
/// <item>only versions created after the rule exists are replicated (existing objects need Batch
/// Replication): the versions present at start are never copied;</item>
/// <item>replication is asynchronous and unordered between keys: each version gets its own lag
/// (<see cref="ReplicationTiming"/>), and the versions due at a delivery are copied in an order
/// shuffled by the seed;</item>
/// <item>a delete without a version id (a delete marker at the source) becomes a delete marker in
/// the destination when the rule replicates delete markers, and is not replicated otherwise; a
/// delete of a specific version is never replicated;</item>
/// <item>replicas (of any rule sharing the <see cref="ReplicaLedger"/>) are not replicated again;</item>
/// <item>a version deleted before it was copied fails to replicate (it is reported, as S3 reports
/// failed operations).</item>
/// </list>
/// Not modelled: replicas keeping the source's version ids and timestamps (Ceph gives them new
/// ones), the replication status headers, tags and ACLs, encryption changes. Versions of one key
/// reach the destination in the order they were made.
/// Deterministic for a seed and a sequence of calls: the tests drive it with <see cref="ScanAsync"/>
/// (S3 noticing new versions), <see cref="DeliverDueAsync"/> (copying those whose lag has passed
/// on the <see cref="TimeProvider"/>), <see cref="Pause"/>/<see cref="Resume"/> (a backlog),
/// <see cref="DrainAsync"/> (replication caught up) and <see cref="DropInFlight"/> (the source
/// region dies with versions not yet copied); or <see cref="RunAsync"/> polls on its own.
/// </summary>
internal sealed class S3ReplicationStandIn
{
    private readonly IAmazonS3 _client;
    private readonly BucketReplicationRule _rule;
    private readonly ReplicationTiming _timing;
    private readonly TimeProvider _time;
    private readonly ReplicaLedger _ledger;
    private readonly Random _random;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly HashSet<(string Key, string VersionId)> _seen = [];
    private readonly List<PendingReplica> _inFlight = [];
    private readonly List<ReplicationEvent> _events = [];
    private readonly Dictionary<string, DateTimeOffset> _lastDuePerKey = new(StringComparer.Ordinal);
    private bool _paused;
    private bool _sourceGone;

    private S3ReplicationStandIn(IAmazonS3 client, BucketReplicationRule rule, ReplicationTiming timing, TimeProvider time, ReplicaLedger ledger)
    {
        _client = client;
        _rule = rule;
        _timing = timing;
        _time = time;
        _ledger = ledger;
        _random = new Random(timing.Seed);
    }

    public BucketReplicationRule Rule => _rule;

    /// <summary>Versions noticed and not yet copied, oldest due first.</summary>
    public IReadOnlyList<PendingReplica> InFlight
    {
        get { lock (_inFlight) return [.. _inFlight.OrderBy(p => p.DueAt).ThenBy(p => p.Key, StringComparer.Ordinal)]; }
    }

    /// <summary>Every version copied or failed, in the order it happened.</summary>
    public IReadOnlyList<ReplicationEvent> Events
    {
        get { lock (_events) return [.. _events]; }
    }

    /// <summary>
    /// Enables versioning on both buckets and records the source's current versions as existing
    /// before the rule (never replicated).
    /// </summary>
    public static async Task<S3ReplicationStandIn> StartAsync(IAmazonS3 client, BucketReplicationRule rule, ReplicationTiming? timing = null, TimeProvider? time = null,
        ReplicaLedger? ledger = null, CancellationToken cancellationToken = default)
    {
        foreach (var bucket in new[] { rule.SourceBucket, rule.DestinationBucket })
            await client.PutBucketVersioningAsync(new PutBucketVersioningRequest
            {
                BucketName = bucket,
                VersioningConfig = new S3BucketVersioningConfig { Status = VersionStatus.Enabled },
            }, cancellationToken);
        var standIn = new S3ReplicationStandIn(client, rule, timing ?? new ReplicationTiming(), time ?? TimeProvider.System, ledger ?? new ReplicaLedger());
        foreach (var version in await standIn.ListSourceVersionsAsync(cancellationToken)) standIn._seen.Add((version.Key, version.VersionId));
        return standIn;
    }

    /// <summary>Lists the source's versions and queues the new ones (returns how many), each due after its lag.</summary>
    public async Task<int> ScanAsync(CancellationToken cancellationToken = default)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            ThrowIfSourceGone();
            var now = _time.GetUtcNow();
            var added = 0;
            // The listing has each key's newest version first: queue a key's versions oldest first.
            foreach (var group in (await ListSourceVersionsAsync(cancellationToken)).GroupBy(v => v.Key, StringComparer.Ordinal))
            {
                foreach (var version in group.Reverse())
                {
                    if (!_seen.Add((version.Key, version.VersionId))) continue;
                    if (_ledger.IsReplica(_rule.SourceBucket, version.Key, version.VersionId)) continue;
                    var size = version.IsDeleteMarker == true ? 0 : version.Size ?? 0;
                    var due = now + Lag(version.Key, size);
                    // One key's versions arrive in the order they were made.
                    if (_lastDuePerKey.TryGetValue(version.Key, out var previous) && previous > due) due = previous;
                    _lastDuePerKey[version.Key] = due;
                    lock (_inFlight) _inFlight.Add(new PendingReplica(version.Key, version.VersionId, version.IsDeleteMarker == true, size, due));
                    added++;
                }
            }
            return added;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Copies every queued version whose lag has passed (none while paused), in an order shuffled by the seed. Returns what happened.</summary>
    public Task<IReadOnlyList<ReplicationEvent>> DeliverDueAsync(CancellationToken cancellationToken = default) => DeliverAsync(all: false, cancellationToken);

    /// <summary>Replication catches up: notices every new version and copies everything queued, due or not, paused or not.</summary>
    public async Task<IReadOnlyList<ReplicationEvent>> DrainAsync(CancellationToken cancellationToken = default)
    {
        await ScanAsync(cancellationToken);
        return await DeliverAsync(all: true, cancellationToken);
    }

    /// <summary>Holds every delivery (a backlog): versions keep being queued by <see cref="ScanAsync"/>.</summary>
    public void Pause() => _paused = true;

    public void Resume() => _paused = false;

    /// <summary>
    /// The source region dies: what was queued is never copied (returned), and the stand-in
    /// refuses to scan or deliver from then on.
    /// </summary>
    public IReadOnlyList<PendingReplica> DropInFlight()
    {
        _sourceGone = true;
        lock (_inFlight)
        {
            var dropped = _inFlight.OrderBy(p => p.DueAt).ThenBy(p => p.Key, StringComparer.Ordinal).ToList();
            _inFlight.Clear();
            return dropped;
        }
    }

    /// <summary>Scans and delivers every <paramref name="pollInterval"/> (on the time provider) until cancelled or the source region is dropped.</summary>
    public async Task RunAsync(TimeSpan pollInterval, CancellationToken cancellationToken)
    {
        while (!_sourceGone && !cancellationToken.IsCancellationRequested)
        {
            try
            {
                await ScanAsync(cancellationToken);
                await DeliverDueAsync(cancellationToken);
                await Task.Delay(pollInterval, _time, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (InvalidOperationException) when (_sourceGone)
            {
                return;
            }
        }
    }

    private TimeSpan Lag(string key, long size)
    {
        // Draw for every version, used or not, so an override does not shift the others' lags.
        var drawn = _timing.BaseLag + TimeSpan.FromSeconds(size / _timing.BytesPerSecond) + _timing.Jitter * _random.NextDouble();
        var lag = _timing.LagFor?.Invoke(key, size) ?? drawn;
        return _timing.ReplicationTimeControl && lag > ReplicationTiming.RtcThreshold ? ReplicationTiming.RtcThreshold : lag;
    }

    private async Task<IReadOnlyList<ReplicationEvent>> DeliverAsync(bool all, CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            ThrowIfSourceGone();
            if (_paused && !all) return [];
            var now = _time.GetUtcNow();
            List<PendingReplica> due;
            lock (_inFlight)
            {
                due = _inFlight.Where(p => all || p.DueAt <= now).OrderBy(p => p.DueAt).ThenBy(p => p.Key, StringComparer.Ordinal).ToList();
            }
            // Unordered between keys, in order within a key: shuffle the keys, keep each key's versions in sequence.
            var keys = due.Select(p => p.Key).Distinct(StringComparer.Ordinal).ToArray();
            _random.Shuffle(keys);
            var happened = new List<ReplicationEvent>();
            foreach (var key in keys)
            {
                foreach (var pending in due.Where(p => p.Key == key))
                {
                    var result = await CopyAsync(pending, cancellationToken);
                    lock (_inFlight) _inFlight.Remove(pending);
                    lock (_events) _events.Add(result);
                    happened.Add(result);
                }
            }
            return happened;
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task<ReplicationEvent> CopyAsync(PendingReplica pending, CancellationToken cancellationToken)
    {
        var at = _time.GetUtcNow();
        if (pending.IsDeleteMarker)
        {
            if (!_rule.DeleteMarkerReplication)
                return new ReplicationEvent(pending.Key, pending.SourceVersionId, true, ReplicationOutcome.Failed, null, at, "the rule does not replicate delete markers");
            var deleted = await _client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = _rule.DestinationBucket, Key = pending.Key }, cancellationToken);
            _ledger.Add(_rule.DestinationBucket, pending.Key, deleted.VersionId);
            return new ReplicationEvent(pending.Key, pending.SourceVersionId, true, ReplicationOutcome.Completed, deleted.VersionId, at);
        }
        GetObjectResponse source;
        try
        {
            source = await _client.GetObjectAsync(new GetObjectRequest { BucketName = _rule.SourceBucket, Key = pending.Key, VersionId = pending.SourceVersionId }, cancellationToken);
        }
        catch (AmazonS3Exception ex) when (ex.StatusCode == HttpStatusCode.NotFound)
        {
            return new ReplicationEvent(pending.Key, pending.SourceVersionId, false, ReplicationOutcome.Failed, null, at, "the source version was deleted before it was replicated");
        }
        using (source)
        {
            // Buffered: the SDK needs a length, and test objects are small.
            using var content = new MemoryStream();
            await source.ResponseStream.CopyToAsync(content, cancellationToken);
            content.Position = 0;
            var put = new PutObjectRequest
            {
                BucketName = _rule.DestinationBucket,
                Key = pending.Key,
                InputStream = content,
                AutoCloseStream = false,
                ContentType = source.Headers.ContentType,
            };
            foreach (var name in source.Metadata.Keys) put.Metadata[name] = source.Metadata[name];
            var stored = await _client.PutObjectAsync(put, cancellationToken);
            _ledger.Add(_rule.DestinationBucket, pending.Key, stored.VersionId);
            return new ReplicationEvent(pending.Key, pending.SourceVersionId, false, ReplicationOutcome.Completed, stored.VersionId, at);
        }
    }

    private async Task<List<S3ObjectVersion>> ListSourceVersionsAsync(CancellationToken cancellationToken)
    {
        var versions = new List<S3ObjectVersion>();
        var request = new ListVersionsRequest { BucketName = _rule.SourceBucket, Prefix = _rule.Prefix };
        while (true)
        {
            var page = await _client.ListVersionsAsync(request, cancellationToken);
            versions.AddRange(page.Versions ?? []);
            if (page.IsTruncated != true) return versions;
            request.KeyMarker = page.NextKeyMarker;
            request.VersionIdMarker = page.NextVersionIdMarker;
        }
    }

    private void ThrowIfSourceGone()
    {
        if (_sourceGone) throw new InvalidOperationException($"The source region of {_rule.SourceBucket} is gone (DropInFlight): nothing more is replicated from it.");
    }
}
