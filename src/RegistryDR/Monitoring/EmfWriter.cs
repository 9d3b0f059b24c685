using System.Text.Json;
using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Configuration;

namespace RegistryDR.Monitoring;

/// <summary>
/// Appends one CloudWatch embedded-metric-format (EMF) line per finished backup to
/// <c>Monitoring:EmfLogPath</c>. The CloudWatch agent ships the file to CloudWatch Logs as plain
/// log events, and CloudWatch Logs extracts the metrics from any event that is an EMF document:
/// no PutMetricData call, no cloudwatch:* permission, and the line stays readable as a log.
/// </summary>
/// <remarks>
/// <para>Each line is one JSON object and nothing else (the specification requires the whole
/// event to be the document). <c>_aws.Timestamp</c> is the time the backup finished, in Unix
/// milliseconds. Metrics: <c>BackupSucceeded</c> and <c>BackupFailed</c> (Count, 1 or 0),
/// <c>BackupDurationSeconds</c> (Seconds) and, for a success only, <c>BackupSizeBytes</c> (Bytes):
/// a failed backup stored nothing, and a 0 would drag any size statistic or "backup shrank"
/// alarm down. Properties: <c>Host</c>, <c>BackupId</c>, and <c>Reason</c> for a failure.</para>
/// <para>Dimension sets: <c>["Host"]</c>, and <c>["Stack"]</c> when <c>Agent:StackName</c> is
/// set (the CloudFormation nodes). A host name changes with every node replacement, so an alarm
/// on <c>Host</c> would lose its metric exactly when disaster recovery happens; the stack's
/// series survives replacements, and that is what the template's staleness alarm watches.</para>
/// <para>The file is opened, appended to and closed for every line, so log rotation by rename
/// needs no signal, and the agent (which tails it) never sees a half-written line.</para>
/// </remarks>
public sealed partial class EmfWriter : IOperationEvents
{
    private readonly string? _path;
    private readonly string _namespace;
    private readonly string _host;
    private readonly string? _stack;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();

    public EmfWriter(RegistryDrOptions options, TimeProvider time, ILogger<EmfWriter> logger)
        : this(options.Monitoring, Environment.MachineName, options.Agent.StackName, time, logger)
    {
    }

    internal EmfWriter(MonitoringOptions monitoring, string host, string? stack, TimeProvider time, ILogger logger)
    {
        _path = string.IsNullOrEmpty(monitoring.EmfLogPath) ? null : monitoring.EmfLogPath;
        _namespace = monitoring.EmfNamespace;
        _host = host;
        _stack = string.IsNullOrEmpty(stack) ? null : stack;
        _time = time;
        _logger = logger;
    }

    /// <summary>The file written, or null when EMF is disabled (<c>Monitoring:EmfLogPath</c> empty).</summary>
    public string? Path => _path;

    public void BackupSucceeded(BackupManifest manifest, TimeSpan duration) =>
        Append(manifest.BackupId, succeeded: true, duration, manifest.TotalSize, reason: null);

    public void BackupFailed(string backupId, BackupFailureReason reason, TimeSpan duration) =>
        Append(backupId, succeeded: false, duration, size: null, PrometheusExposition.ReasonLabel(reason));

    public void BackupStarted(string backupId) { }
    public void RestoreStarted(string backupId) { }
    public void RestoreFinished(string backupId, bool succeeded, TimeSpan duration) { }
    public void ScheduleMissed() { }
    public void StoreRetry(string operation) { }

    private DateTimeOffset _lastWalLine = DateTimeOffset.MinValue;

    /// <summary>
    /// Continuous mode: one line a minute at most with <c>WalArchiveLagSeconds</c> (Seconds) and
    /// <c>WalArchiveFailing</c> (Count, 1 or 0), so CloudWatch can alarm on the recovery point too.
    /// </summary>
    public void WalArchiveObserved(Continuous.WalArchiveObservation observation)
    {
        if (_path is null) return;
        lock (_lock)
        {
            if (observation.ObservedAt - _lastWalLine < TimeSpan.FromMinutes(1)) return;
            _lastWalLine = observation.ObservedAt;
        }
        var lag = observation.LagSeconds(observation.ObservedAt);
        using var buffer = new MemoryStream(512);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("_aws");
            w.WriteNumber("Timestamp", observation.ObservedAt.ToUnixTimeMilliseconds());
            w.WriteStartArray("CloudWatchMetrics");
            w.WriteStartObject();
            w.WriteString("Namespace", _namespace);
            w.WriteStartArray("Dimensions");
            w.WriteStartArray();
            w.WriteStringValue("Host");
            w.WriteEndArray();
            if (_stack is not null)
            {
                w.WriteStartArray();
                w.WriteStringValue("Stack");
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteStartArray("Metrics");
            Metric(w, "WalArchiveLagSeconds", "Seconds");
            Metric(w, "WalArchiveFailing", "Count");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteString("Host", _host);
            if (_stack is not null) w.WriteString("Stack", _stack);
            // JSON has no infinity: "never archived" is reported as a day, which breaches any sane threshold.
            w.WriteNumber("WalArchiveLagSeconds", double.IsInfinity(lag) ? 86400 : Math.Round(lag, 1));
            w.WriteNumber("WalArchiveFailing", observation.Failing ? 1 : 0);
            if (observation.LastFailedWal is not null) w.WriteString("LastFailedWal", observation.LastFailedWal);
            w.WriteEndObject();
        }
        AppendLine(buffer.ToArray(), observation.LastArchivedWal ?? "wal");
    }

    /// <summary>One EMF document, without the trailing newline.</summary>
    internal byte[] FormatLine(string backupId, bool succeeded, TimeSpan duration, long? size, string? reason)
    {
        using var buffer = new MemoryStream(1024);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("_aws");
            w.WriteNumber("Timestamp", _time.GetUtcNow().ToUnixTimeMilliseconds());
            w.WriteStartArray("CloudWatchMetrics");
            w.WriteStartObject();
            w.WriteString("Namespace", _namespace);
            w.WriteStartArray("Dimensions");
            w.WriteStartArray();
            w.WriteStringValue("Host");
            w.WriteEndArray();
            if (_stack is not null)
            {
                w.WriteStartArray();
                w.WriteStringValue("Stack");
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteStartArray("Metrics");
            Metric(w, "BackupSucceeded", "Count");
            Metric(w, "BackupFailed", "Count");
            Metric(w, "BackupDurationSeconds", "Seconds");
            if (size is not null) Metric(w, "BackupSizeBytes", "Bytes");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();

            w.WriteString("Host", _host);
            if (_stack is not null) w.WriteString("Stack", _stack);
            w.WriteString("BackupId", backupId);
            w.WriteNumber("BackupSucceeded", succeeded ? 1 : 0);
            w.WriteNumber("BackupFailed", succeeded ? 0 : 1);
            w.WriteNumber("BackupDurationSeconds", Math.Round(duration.TotalSeconds, 3));
            if (size is { } bytes) w.WriteNumber("BackupSizeBytes", bytes);
            if (reason is not null) w.WriteString("Reason", reason);
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private static void Metric(Utf8JsonWriter w, string name, string unit)
    {
        w.WriteStartObject();
        w.WriteString("Name", name);
        w.WriteString("Unit", unit);
        w.WriteEndObject();
    }

    private void Append(string backupId, bool succeeded, TimeSpan duration, long? size, string? reason)
    {
        if (_path is null) return;
        AppendLine(FormatLine(backupId, succeeded, duration, size, reason), backupId);
    }

    private void AppendLine(byte[] line, string backupId)
    {
        if (_path is null) return;
        try
        {
            lock (_lock)
            {
                var directory = System.IO.Path.GetDirectoryName(_path);
                if (!string.IsNullOrEmpty(directory)) Directory.CreateDirectory(directory);
                var created = !File.Exists(_path);
                using (var file = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
                {
                    // One write of the whole line: the agent tails the file and must never read half of one.
                    var withNewline = new byte[line.Length + 1];
                    line.CopyTo(withNewline, 0);
                    withNewline[^1] = (byte)'\n';
                    file.Write(withNewline);
                    file.Flush();
                }
                // Readable by the CloudWatch agent's own user whatever the process umask; the lines hold no secrets.
                if (created) File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Reporting must never fail a backup (IOperationEvents must not throw); the log says why
            // the metric is missing, and the staleness alarm notices the gap.
            LogWriteFailed(ex, _path, backupId);
        }
    }

    [LoggerMessage(6000, LogLevel.Warning, "Could not append the EMF metrics line for backup {BackupId} to {Path}; CloudWatch will not see this backup")]
    private partial void LogWriteFailed(Exception ex, string path, string backupId);
}
