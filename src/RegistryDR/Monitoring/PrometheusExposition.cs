using System.Globalization;
using System.Text;
using RegistryDR.Backup;

namespace RegistryDR.Monitoring;

/// <summary>
/// <see cref="OperationMetrics"/> in the Prometheus text exposition format 0.0.4, written by hand
/// (no client library is available). Names carry base units (<c>_seconds</c>, <c>_bytes</c>) and
/// counters end in <c>_total</c>, so the output passes <c>promtool check metrics</c>.
/// </summary>
/// <remarks>
/// Before any backup is known, <c>registrydr_backup_last_success_timestamp_seconds</c> is 0 and
/// <c>registrydr_backup_age_seconds</c> is <c>+Inf</c>: an alert such as
/// <c>registrydr_backup_age_seconds &gt; 1800</c> then fires for a node that has never backed up,
/// where an absent series or NaN would silently compare false. Values that only exist after an
/// event (last duration, sizes, last restore duration) are left out until then.
/// </remarks>
internal static class PrometheusExposition
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <param name="scheduleInterval">The backup schedule's interval, so alert rules can say "older than two intervals" without repeating the cron; null leaves the gauge out.</param>
    /// <param name="registryCheck">The agent's registry check after the restore, from the node state file; null leaves its gauges out.</param>
    public static string Render(OperationMetrics.Snapshot s, DateTimeOffset now, string version, TimeSpan? scheduleInterval = null, Agent.RegistryCheckSummary? registryCheck = null)
    {
        var w = new StringBuilder(4096);

        Family(w, "registrydr_build_info", "gauge", "RegistryDR build; the value is always 1.");
        Sample(w, "registrydr_build_info", 1, ("version", version));

        Family(w, "registrydr_backup_last_success_timestamp_seconds", "gauge",
            "Start (database snapshot) time of the newest successful backup, Unix seconds; 0 when none is known.");
        Sample(w, "registrydr_backup_last_success_timestamp_seconds", s.LastSuccess is { } last ? last.ToUnixTimeMilliseconds() / 1000.0 : 0);

        Family(w, "registrydr_backup_age_seconds", "gauge",
            "Seconds since the newest successful backup's snapshot, computed at scrape time; +Inf when none is known.");
        Sample(w, "registrydr_backup_age_seconds", s.LastSuccess is { } since ? Math.Max(0, (now - since).TotalSeconds) : double.PositiveInfinity);

        Family(w, "registrydr_backup_schedule_interval_seconds", "gauge",
            "Interval of the backup schedule (Schedule:Cron); alert when the age exceeds twice this, as `registry-dr status` calls LATE.");
        if (scheduleInterval is { } interval) Sample(w, "registrydr_backup_schedule_interval_seconds", interval.TotalSeconds);

        Family(w, "registrydr_backup_last_duration_seconds", "gauge", "Wall time of the newest successful backup taken by this process.");
        if (s.LastDuration is { } duration) Sample(w, "registrydr_backup_last_duration_seconds", duration.TotalSeconds);

        Family(w, "registrydr_backup_last_size_bytes", "gauge", "Stored size of each artifact of the newest successful backup taken by this process.");
        foreach (var (artifact, size) in s.LastSizes) Sample(w, "registrydr_backup_last_size_bytes", size, ("artifact", artifact));

        Family(w, "registrydr_backups_total", "counter", "Backups that completed (manifest written) since the process started.");
        Sample(w, "registrydr_backups_total", s.Successes);

        Family(w, "registrydr_backup_failures_total", "counter", "Backups that failed since the process started, by reason.");
        foreach (var reason in Enum.GetValues<BackupFailureReason>())
            Sample(w, "registrydr_backup_failures_total", s.Failures.GetValueOrDefault(reason), ("reason", ReasonLabel(reason)));

        Family(w, "registrydr_backup_running_seconds", "gauge", "How long the backup running now has run; 0 when none runs. Alert when it exceeds the schedule interval by far (Backup:Timeout stops it).");
        Sample(w, "registrydr_backup_running_seconds", s.BackupRunning?.TotalSeconds ?? 0);

        Family(w, "registrydr_backup_overruns_total", "counter", "Backup fires that came due while an earlier backup was still running (each is also logged, with the run's phase and age).");
        Sample(w, "registrydr_backup_overruns_total", s.BackupOverruns);

        Family(w, "registrydr_restore_in_progress", "gauge", "1 while a restore is running (the node answers 503 to the load balancer), else 0.");
        Sample(w, "registrydr_restore_in_progress", s.RestoreInProgress ? 1 : 0);

        Family(w, "registrydr_restore_last_duration_seconds", "gauge", "Wall time of the newest finished restore, successful or not.");
        if (s.LastRestoreDuration is { } restore) Sample(w, "registrydr_restore_last_duration_seconds", restore.TotalSeconds);

        Family(w, "registrydr_restores_total", "counter", "Restores finished since the process started, by result.");
        Sample(w, "registrydr_restores_total", s.RestoreSuccesses, ("result", "success"));
        Sample(w, "registrydr_restores_total", s.RestoreFailures, ("result", "failure"));

        Family(w, "registrydr_drills_total", "counter", "Restore drills finished since the process started, by result.");
        Sample(w, "registrydr_drills_total", s.DrillSuccesses, ("result", "success"));
        Sample(w, "registrydr_drills_total", s.DrillFailures, ("result", "failure"));

        Family(w, "registrydr_drill_last_success_timestamp_seconds", "gauge", "Unix time of the newest passed restore drill by this process (absent until one).");
        if (s.LastDrillSuccess is { } drill) Sample(w, "registrydr_drill_last_success_timestamp_seconds", drill.ToUnixTimeMilliseconds() / 1000.0);

        Family(w, "registrydr_schedule_missed_total", "counter", "Scheduled backups missed (previous one still running, or the process was down) and collapsed into a catch-up.");
        Sample(w, "registrydr_schedule_missed_total", s.ScheduleMissed);

        Family(w, "registrydr_store_retries_total", "counter", "Store requests that failed and were retried, by operation.");
        foreach (var (operation, count) in s.StoreRetries) Sample(w, "registrydr_store_retries_total", count, ("operation", operation));

        if (s.WalArchive is { } wal) Continuous.WalArchiveObservation.Render(wal, now, (name, type, help) => Family(w, name, type, help), (name, value) => Sample(w, name, value));
        // From the node state file (the agent is another process): absent until a check ran.
        Family(w, "registrydr_registry_missing_blobs", "gauge", "Blobs the restored registry metadata names that the registry does not have, found by the agent's check after the restore (docs/runbook.md, \"Fail over\").");
        if (registryCheck is not null) Sample(w, "registrydr_registry_missing_blobs", registryCheck.MissingBlobs);
        Family(w, "registrydr_registry_check_complete", "gauge", "1 when the agent's registry check after the restore checked every tag, manifest and blob, 0 when it could not (absent until a check ran).");
        if (registryCheck is not null) Sample(w, "registrydr_registry_check_complete", registryCheck.Complete ? 1 : 0);

        return w.ToString();
    }

    /// <summary>The label value of a failure reason: the enum name in lower case (<c>database</c>, <c>store</c>, …).</summary>
    public static string ReasonLabel(BackupFailureReason reason) => reason.ToString().ToLowerInvariant();

    private static void Family(StringBuilder w, string name, string type, string help) =>
        w.Append("# HELP ").Append(name).Append(' ').Append(EscapeHelp(help)).Append('\n')
         .Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    private static void Sample(StringBuilder w, string name, double value, params (string Name, string Value)[] labels)
    {
        w.Append(name);
        if (labels.Length > 0)
        {
            w.Append('{');
            for (var i = 0; i < labels.Length; i++)
            {
                if (i > 0) w.Append(',');
                w.Append(labels[i].Name).Append("=\"").Append(EscapeLabelValue(labels[i].Value)).Append('"');
            }
            w.Append('}');
        }
        w.Append(' ').Append(FormatValue(value)).Append('\n');
    }

    /// <summary>Go's ParseFloat spellings: <c>+Inf</c>, <c>-Inf</c>, <c>NaN</c>, otherwise the shortest round-trip form.</summary>
    internal static string FormatValue(double value) => value switch
    {
        double.PositiveInfinity => "+Inf",
        double.NegativeInfinity => "-Inf",
        _ when double.IsNaN(value) => "NaN",
        _ => value.ToString("R", CultureInfo.InvariantCulture),
    };

    internal static string EscapeLabelValue(string value) =>
        value.Replace("\\", @"\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", @"\n", StringComparison.Ordinal);

    private static string EscapeHelp(string help) =>
        help.Replace("\\", @"\\", StringComparison.Ordinal).Replace("\n", @"\n", StringComparison.Ordinal);
}
