using Microsoft.Extensions.Logging;
using RegistryDR.Registry;

namespace RegistryDR.Agent;

/// <summary>
/// What the agent's <c>check-registry</c> after a restore found, kept in the node state file for
/// <c>status</c> and the <c>registrydr_registry_missing_blobs</c> metric.
/// </summary>
/// <param name="At">When the check finished (UTC).</param>
/// <param name="Registry">The registry's base URL (Agent:CheckRegistryAfterRestore).</param>
/// <param name="Complete">Every tag, manifest and blob was checked; false when the check failed or something could not be checked.</param>
/// <param name="MissingBlobs">Configs and layers the restored metadata names that the registry does not have (per repository, summed).</param>
/// <param name="Repositories">Per repository with a problem, one line: "apps/worker: tags 2.0 cannot be pulled; 1 missing blob(s): sha256:… (layer)".</param>
/// <param name="Error">Why the check could not finish (registry unreachable, timeout); null when it did.</param>
public sealed record RegistryCheckSummary(DateTimeOffset At, string Registry, bool Complete, int MissingBlobs, IReadOnlyList<string> Repositories, string? Error);

/// <summary>
/// Runs <see cref="RegistryChecker"/> once the restored registry serves (after a failover the
/// restored metadata can name blobs S3 replication has not delivered), bounded by
/// <see cref="RegistryCheckOptions.Timeout"/>. It never fails the boot: the registry serves what it
/// has, so missing blobs and a check that could not run are logged and recorded, not thrown.
/// </summary>
internal static partial class RegistryCheckAfterRestore
{
    /// <summary>Checks and logs; throws only when <paramref name="cancellationToken"/> is cancelled.</summary>
    public static async Task<RegistryCheckSummary> RunAsync(RegistryCheckOptions options, ILoggerFactory loggers, TimeProvider time, CancellationToken cancellationToken)
    {
        var logger = loggers.CreateLogger(typeof(RegistryCheckAfterRestore));
        RegistryCheckReport report;
        try
        {
            report = await new RegistryChecker(options, loggers.CreateLogger<RegistryChecker>(), time).CheckAsync(cancellationToken);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            LogCheckFailed(logger, options.RegistryUrl.ToString(), ex.Message);
            return new RegistryCheckSummary(time.GetUtcNow(), options.RegistryUrl.ToString(), false, 0, [], ex.Message);
        }
        var lines = report.Problems.Select(Describe).ToList();
        foreach (var line in lines) LogMissing(logger, line);
        var missing = report.Problems.Sum(p => p.MissingBlobs.Count);
        var error = report.Errors.Count == 0 ? null
            : $"{report.Errors.Count} item(s) could not be checked: " + string.Join("; ", report.Errors.Take(3).Select(e => $"{e.Repository ?? "(registry)"} {e.What}: {e.Reason}"));
        LogChecked(logger, report.Registry, report.Repositories, report.Tags, report.Problems.Count, missing, error ?? "every item was checked");
        return new RegistryCheckSummary(time.GetUtcNow(), report.Registry, report.Complete, missing, lines, error);
    }

    private static string Describe(RepositoryProblems p)
    {
        var parts = new List<string> { $"tags {(p.BrokenTags.Count == 0 ? "(none)" : string.Join(", ", p.BrokenTags))} cannot be pulled" };
        if (p.MissingBlobs.Count > 0)
            parts.Add($"{p.MissingBlobs.Count} missing blob(s): {string.Join(", ", p.MissingBlobs.Select(b => $"{b.Digest} ({b.Kind})"))}");
        if (p.UnresolvedTags.Count > 0)
            parts.Add($"{p.UnresolvedTags.Count} tag(s) without a manifest: {string.Join(", ", p.UnresolvedTags.Select(t => t.Tag))}");
        if (p.UnresolvedManifests.Count > 0)
            parts.Add($"{p.UnresolvedManifests.Count} missing manifest(s): {string.Join(", ", p.UnresolvedManifests.Select(m => m.Digest))}");
        return $"{p.Repository}: {string.Join("; ", parts)}";
    }

    [LoggerMessage(4048, LogLevel.Warning, "After the restore the registry does not resolve {Problem} (docs/runbook.md, \"Fail over\", step 3)")]
    private static partial void LogMissing(ILogger logger, string problem);

    [LoggerMessage(4049, LogLevel.Information, "Registry check of {Registry} after the restore: {Repositories} repositories, {Tags} tags, {Broken} with problems, {Missing} missing blobs; {Completeness}")]
    private static partial void LogChecked(ILogger logger, string registry, int repositories, int tags, int broken, int missing, string completeness);

    [LoggerMessage(4050, LogLevel.Warning, "The registry check of {Registry} after the restore could not finish (the boot goes on; run registry-dr check-registry by hand): {Reason}")]
    private static partial void LogCheckFailed(ILogger logger, string registry, string reason);
}
