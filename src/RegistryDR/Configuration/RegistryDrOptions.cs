using System.ComponentModel.DataAnnotations;

namespace RegistryDR.Configuration;

/// <summary>
/// Everything RegistryDR knows about the node it protects. Bound from one JSON file
/// (default <c>/etc/registry-dr/registry-dr.json</c>) layered under <c>REGISTRYDR__…</c>
/// environment variables, and validated by <see cref="RegistryDrOptionsValidator"/> before
/// any command touches the database, the disk or the store.
/// </summary>
public sealed class RegistryDrOptions
{
    public const string DefaultConfigPath = "/etc/registry-dr/registry-dr.json";

    public DatabaseOptions Database { get; set; } = new();
    public ConfigDirectoriesOptions Config { get; set; } = new();
    public RegistryProcessOptions Registry { get; set; } = new();
    public StoreOptions Store { get; set; } = new();
    public ScheduleOptions Schedule { get; set; } = new();
    public BackupOptions Backup { get; set; } = new();
    public RestoreOptions Restore { get; set; } = new();
    public AgentOptions Agent { get; set; } = new();
    public Retention.RetentionOptions Retention { get; set; } = new();
    public Monitoring.MonitoringOptions Monitoring { get; set; } = new();
    public Continuous.ContinuousOptions Continuous { get; set; } = new();
}

/// <summary>The registry's metadata database.</summary>
public sealed class DatabaseOptions
{
    /// <summary>
    /// <c>Logical</c> (pg_dump sets, the default) or <c>Continuous</c> (base backups plus WAL
    /// archiving, point-in-time restore; see <see cref="RegistryDR.Continuous.ContinuousOptions"/>).
    /// </summary>
    public RegistryDR.Continuous.DatabaseMode Mode { get; set; } = RegistryDR.Continuous.DatabaseMode.Logical;

    /// <summary>Default <c>127.0.0.1</c>.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Default 5432.</summary>
    [Range(1, 65535)]
    public int Port { get; set; } = 5432;

    /// <summary>The database to dump. Default <c>dtr</c>.</summary>
    public string Name { get; set; } = "dtr";

    /// <summary>A superuser, or a role able to dump every object and (for restore) create databases and roles.</summary>
    public string User { get; set; } = "postgres";

    /// <summary>
    /// A file holding the password (first line). Should be readable by root only; a file others
    /// can read is warned about. When unset, <see cref="PasswordEnvironmentVariable"/> is read.
    /// There is deliberately no way to put the password itself in the config or on the command line.
    /// </summary>
    public string? PasswordFile { get; set; }

    /// <summary>The environment variable holding the password when no file is given. Default <c>REGISTRYDR_DB_PASSWORD</c>.</summary>
    public string PasswordEnvironmentVariable { get; set; } = "REGISTRYDR_DB_PASSWORD";

    /// <summary>The database to connect to for CREATE/DROP/RENAME DATABASE. Default <c>postgres</c>.</summary>
    public string MaintenanceDatabase { get; set; } = "postgres";

    /// <summary>Where pg_dump, pg_dumpall, pg_restore and psql live. Default: <c>pg_config --bindir</c>, then PATH.</summary>
    public string? BinDirectory { get; set; }

    /// <summary>pg_dump's gzip level for the custom-format dump, 0–9. Default 6 (pg_dump's own default).</summary>
    [Range(0, 9)]
    public int CompressionLevel { get; set; } = 6;

    /// <summary>
    /// Tables whose data (main fork) is at least this many MiB are not dumped by pg_dump but as
    /// block ranges, several at once (<see cref="DumpJobs"/>), each a binary COPY in pg_dump's
    /// snapshot, compressed (RangeCompression) and uploaded as its own object; restore loads the ranges in parallel
    /// straight from the store. 0 turns splitting off (one pg_dump archive holds everything).
    /// Default 8: binary COPY and level-1 compression cost less CPU than pg_dump's text COPY and
    /// gzip 6 even for one range, and the table then loads in parallel with the others.
    /// Needs PostgreSQL 14 or later (TID range scans); older servers are never split.
    /// </summary>
    [Range(0.0, 1048576.0)]
    public double SplitTablesFromMiB { get; set; } = 8;

    /// <summary>
    /// The size of one block range of a split table, in MiB of table data. Default 32 (about
    /// 5 MiB stored for registry data with zstd, 11 MiB with gzip, so a range's upload holds at most two part buffers).
    /// </summary>
    [Range(0.0078125, 4096.0)]
    public double RangeMiB { get; set; } = 32;

    /// <summary>Block ranges dumped at once. Default: the number of cores.</summary>
    [Range(1, 64)]
    public int DumpJobs { get; set; } = Math.Max(1, Environment.ProcessorCount);

    /// <summary>
    /// The codec of the block ranges, compressed by RegistryDR itself: <c>Zstd</c> (default;
    /// ZstdSharp, with a content checksum) or <c>Gzip</c> (zlib-ng). On registry data zstd level 1
    /// stores about 40 % less than gzip level 1 for about half its CPU (docs/performance.md). Each
    /// range records its codec in the manifest, so sets of either kind restore.
    /// </summary>
    public RangeCompressionCodec RangeCompression { get; set; } = RangeCompressionCodec.Zstd;

    /// <summary>
    /// The level of <see cref="RangeCompression"/>, 0–9: gzip's level, or zstd's (0 is zstd's
    /// default, 3). Default 1: on registry data it stores less than pg_dump's gzip 6 at a fraction of the CPU.
    /// </summary>
    [Range(0, 9)]
    public int RangeCompressionLevel { get; set; } = 1;

    /// <summary>Whether the roles dump carries password hashes (needs a superuser). Default true: a restored node must let the registry log in.</summary>
    public bool DumpRolePasswords { get; set; } = true;

    /// <summary>Connect timeout for RegistryDR's own connections and the tools (<c>PGCONNECT_TIMEOUT</c>). Default 15 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long PostgreSQL may go without sending anything on one of RegistryDR's own sessions (the
    /// answer to a query, the next bytes of a block range's COPY) before the session counts as dead
    /// and the operation fails naming the server. A bound on silence, not on length: a COPY of
    /// any size is fine while bytes flow. TCP keepalive finds a vanished host sooner (about 2.5
    /// minutes). Default 30 minutes (the row count of the largest table must fit). 10 s – 1 day.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:10", "1.00:00:00")]
    public TimeSpan StallTimeout { get; set; } = TimeSpan.FromMinutes(30);
}

/// <summary>The registry's configuration directories, archived as one tar.gz.</summary>
public sealed class ConfigDirectoriesOptions
{
    /// <summary>Absolute paths. Default: Docker Trusted Registry's <c>/var/local/dtr</c> and <c>/usr/local/etc/dtr</c>.</summary>
    public List<string> Directories { get; set; } = [];

    /// <summary>Globs relative to each directory (<c>*</c>, <c>**</c>, <c>?</c>; a pattern without '/' matches a name at any depth).</summary>
    public List<string> Exclude { get; set; } = [];

    internal static readonly string[] DtrDefaults = ["/var/local/dtr", "/usr/local/etc/dtr"];

    /// <summary>The directories in effect: the configured ones, or the DTR defaults when none are configured.</summary>
    /// <remarks>Configuration binding appends to a list initialiser, so the defaults cannot live in the initialiser.</remarks>
    public IReadOnlyList<string> EffectiveDirectories => Directories.Count > 0 ? Directories : DtrDefaults;
}

/// <summary>How restore stops, starts and health-checks the registry.</summary>
public sealed class RegistryProcessOptions
{
    /// <summary>argv of the command that stops the registry, e.g. <c>["systemctl","stop","docker-registry"]</c>. Empty: nothing to stop.</summary>
    public List<string> StopCommand { get; set; } = [];

    /// <summary>argv of the command that starts the registry. Empty: nothing to start.</summary>
    public List<string> StartCommand { get; set; } = [];

    /// <summary>A URL that answers 2xx when the registry serves. Empty: restore does not wait.</summary>
    public string? HealthUrl { get; set; }

    /// <summary>How long restore waits for <see cref="HealthUrl"/>. Default 5 minutes.</summary>
    public TimeSpan HealthTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long the stop or start command may run. Default 2 minutes.</summary>
    public TimeSpan CommandTimeout { get; set; } = TimeSpan.FromMinutes(2);
}

/// <summary>Where backup sets are kept.</summary>
public sealed class StoreOptions
{
    /// <summary><c>s3://bucket/prefix</c> or <c>file:///path</c>. Default <c>file:///var/backups/registry-dr</c> (no AWS account needed).</summary>
    public string Url { get; set; } = "file:///var/backups/registry-dr";

    /// <summary>AWS region of the bucket. Default: the SDK's own resolution (AWS_REGION, profile, instance metadata).</summary>
    public string? Region { get; set; }

    /// <summary>Endpoint of an S3-compatible server (Ceph RGW, MinIO…). Default: AWS.</summary>
    public string? ServiceUrl { get; set; }

    /// <summary>Path-style addressing (<c>http://host/bucket/key</c>); most S3-compatible servers need it. Default false.</summary>
    public bool ForcePathStyle { get; set; }

    /// <summary>
    /// When the SDK adds and checks CRC checksums: <c>WhenSupported</c> (AWS default) or <c>WhenRequired</c>.
    /// Servers that predate flexible checksums (Ceph 16, older MinIO) reject every write with
    /// XAmzContentSHA256Mismatch unless this is <c>WhenRequired</c>. RegistryDR keeps its own SHA-256 per artifact either way.
    /// </summary>
    public S3ChecksumMode Checksums { get; set; } = S3ChecksumMode.WhenSupported;

    /// <summary><c>None</c>, <c>S3</c> (SSE-S3, AES256) or <c>Kms</c> (SSE-KMS with <see cref="KmsKeyId"/>). Default <c>S3</c>.</summary>
    public ServerSideEncryptionMode ServerSideEncryption { get; set; } = ServerSideEncryptionMode.S3;

    /// <summary>KMS key id or ARN for SSE-KMS; empty uses the account's aws/s3 key.</summary>
    public string? KmsKeyId { get; set; }

    /// <summary>
    /// Multipart part size in MiB, 5–512. Default 8. Memory used by an upload is at most
    /// PartSizeMiB × (Concurrency + 1); a backup runs Database:DumpJobs + 1 uploads at once.
    /// </summary>
    [Range(5, 512)]
    public int PartSizeMiB { get; set; } = 8;

    /// <summary>Parts uploaded at once, 1–16. Default 4.</summary>
    [Range(1, 16)]
    public int Concurrency { get; set; } = 4;

    /// <summary>
    /// How long one S3 request (a put, one part, the completion, a listing page, a delete, the
    /// re-opening of a broken download) may keep being retried after throttling (503 SlowDown,
    /// 429), server errors (500, 502, 503, 504), RequestTimeout, connection resets and timeouts,
    /// counted from its first attempt; when it runs out the operation fails and a multipart
    /// upload is aborted. Retries wait with exponential backoff and full jitter between
    /// <see cref="RetryBaseDelay"/> and <see cref="RetryMaxDelay"/>. There is deliberately no
    /// attempt count: this is the time a backup will wait out an S3 outage. Default 5 minutes;
    /// zero disables retrying. 0 s – 1 day.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan RetryBudget { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The backoff before the first retry is drawn from 0 to this; each later one from 0 to twice the previous ceiling. Default 200 ms. 1 ms – 1 minute.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:01:00")]
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The ceiling of the backoff between two retries of one request. Default 20 s. 1 ms – 10 minutes.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:10:00")]
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// How long one S3 request may take before it counts as a failed attempt (and is retried);
    /// for a download, how long its body may go without delivering a byte before it is resumed.
    /// Default 5 minutes. 1 s – 1 hour.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromMinutes(5);
}

public enum S3ChecksumMode { WhenSupported, WhenRequired }

/// <summary>Database:RangeCompression: the codec of the split tables' block ranges (<see cref="Backup.ArtifactCompression"/>).</summary>
public enum RangeCompressionCodec { Zstd, Gzip }

public enum ServerSideEncryptionMode { None, S3, Kms }

/// <summary>How one backup runs.</summary>
public sealed class BackupOptions
{
    /// <summary>
    /// The longest one backup may take, from its start to its manifest. When it passes, the backup
    /// is cancelled like a SIGTERM (its partial set is removed, the failure says which phase it was
    /// in) and the next scheduled run starts afresh. A bound on the whole operation on top of the
    /// per-request ones (Store:RequestTimeout, Database:StallTimeout). Default 4 hours. 1 minute – 7 days.
    /// </summary>
    [Range(typeof(TimeSpan), "00:01:00", "7.00:00:00")]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromHours(4);
}

/// <summary>When the worker backs up.</summary>
public sealed class ScheduleOptions
{
    /// <summary>A Quartz cron expression (seconds first). Default every 15 minutes: <c>0 0/15 * * * ?</c>.</summary>
    public string Cron { get; set; } = "0 0/15 * * * ?";

    /// <summary>
    /// When the worker rehearses a restore (<c>registry-dr drill</c>: scratch database and directory,
    /// fingerprint checked, cleaned up). A Quartz cron expression; empty disables. Default daily at 03:30 UTC.
    /// </summary>
    public string? DrillCron { get; set; } = "0 30 3 * * ?";

    /// <summary>Run one catch-up backup at start when the newest complete set is older than one interval. Default true.</summary>
    public bool CatchUpOnStart { get; set; } = true;

    /// <summary>
    /// Back up only when <see cref="AgentOptions.StateFile"/> says this node restored (or was
    /// explicitly first-booted) successfully. Default false (a node set up by hand); the boot
    /// scripts set it, so a fresh empty node can never become the "latest backup".
    /// </summary>
    public bool RequireRestoredNode { get; set; }
}

/// <summary>How restore stages its work.</summary>
public sealed class RestoreOptions
{
    /// <summary>Where downloaded artifacts are staged (and checked) before anything is replaced. Default: the system temp directory.</summary>
    public string? StagingDirectory { get; set; }

    /// <summary>
    /// pg_restore's parallel jobs (<c>--jobs</c>) when loading the downloaded dump. Default: the
    /// number of cores. Parallel restore works from the staged file even though the dump was
    /// streamed without data offsets (pg_restore scans for them).
    /// </summary>
    [Range(1, 64)]
    public int Jobs { get; set; } = Math.Max(1, Environment.ProcessorCount);

    /// <summary>
    /// <c>maintenance_work_mem</c> for the sessions that build the restored database's indexes and
    /// constraints (pg_restore's post-data section), in MiB; 0 keeps the server's setting.
    /// Default 256: on the benchmark's 4 GiB database an index build took 5.7 s with 512 MiB
    /// against 6.9 s with the server default of 64 MiB. Up to Restore:Jobs sessions use it at once.
    /// </summary>
    [Range(0, 1 << 20)]
    public int MaintenanceWorkMemMiB { get; set; } = 256;

    /// <summary>Keep the replaced database and directories (renamed aside) after a successful restore. Default false.</summary>
    public bool KeepPrevious { get; set; }
}

/// <summary>What a node's restore means for the store (<c>Agent:Role</c>).</summary>
public enum AgentRole
{
    /// <summary>The store's own region: a restore takes the next generation in the current epoch.</summary>
    Primary,
    /// <summary>Another region takes the store over: a restore opens a new fencing epoch.</summary>
    Failover,
}

/// <summary>The EC2 bootstrap agent (<c>registry-dr bootstrap</c>).</summary>
public sealed class AgentOptions
{
    /// <summary>The instance metadata service (IMDSv2). Default <c>http://169.254.169.254</c>.</summary>
    public string MetadataEndpoint { get; set; } = "http://169.254.169.254";

    /// <summary>Override the instance id instead of reading it from instance metadata.</summary>
    public string? InstanceId { get; set; }

    /// <summary>Override the region instead of reading it from instance metadata.</summary>
    public string? Region { get; set; }

    /// <summary>
    /// The CloudFormation stack to signal. The template writes <c>${AWS::StackName}</c> here; without it
    /// the instance's <c>aws:cloudformation:stack-name</c> tag is used when instance metadata has tags.
    /// </summary>
    public string? StackName { get; set; }

    /// <summary>
    /// The Auto Scaling group. Default: asked with <c>DescribeAutoScalingInstances</c> for this
    /// instance, then the <c>aws:autoscaling:groupName</c> tag when instance metadata has tags.
    /// </summary>
    public string? AutoScalingGroupName { get; set; }

    /// <summary>The launch lifecycle hook to complete. Empty: no lifecycle action is sent. Default <c>registry-dr-launch</c>.</summary>
    public string? LifecycleHookName { get; set; } = "registry-dr-launch";

    /// <summary>
    /// The terminating lifecycle hook: when Auto Scaling moves this instance towards
    /// <c>Terminated</c>, the worker takes one final backup and then completes this hook with
    /// CONTINUE. Empty: the worker does not watch for termination. Default <c>registry-dr-terminate</c>.
    /// </summary>
    public string? TerminationHookName { get; set; } = "registry-dr-terminate";

    /// <summary>
    /// How often the worker reads <c>autoscaling/target-lifecycle-state</c> from instance metadata to
    /// notice termination; 1 s to 5 min. Default 5 seconds.
    /// </summary>
    public TimeSpan TargetLifecycleStatePollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The logical id CloudFormation waits on (creation/update policy). Empty: no signal is sent. Default <c>RegistryGroup</c>.</summary>
    public string? SignalResource { get; set; } = "RegistryGroup";

    /// <summary>
    /// <c>primary</c> (default) or <c>failover</c>: a failover node (the template's Role=failover,
    /// or a failback restore in the first region) takes over the store with a new fencing epoch
    /// when it restores, so nothing the previous region writes later is ever newer
    /// (<see cref="Fencing.GenerationLedger"/>), and checks the registry after its restore.
    /// </summary>
    public AgentRole Role { get; set; } = AgentRole.Primary;

    /// <summary>
    /// The registry's base URL (<c>http://127.0.0.1:5000</c>): once a restore has started the
    /// registry, the agent walks it (<c>check-registry</c>) and logs and records, per repository,
    /// what does not resolve. The template sets it for Role standby/failover. Empty: no check.
    /// </summary>
    public string? CheckRegistryAfterRestore { get; set; }

    /// <summary>The containers auth file for that check (see <c>check-registry --credentials-file</c>). Empty: anonymous.</summary>
    public string? CheckRegistryCredentialsFile { get; set; }

    /// <summary>How long that check may take in all; the boot has already succeeded, the check only reports. Default 10 minutes.</summary>
    public TimeSpan CheckRegistryTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Allow starting with an empty registry when the store holds no backup at all (the very first deploy only). Default false.</summary>
    public bool AllowFirstBoot { get; set; }

    /// <summary>How often a long restore, and the final backup before termination, record a lifecycle heartbeat. Default 5 minutes.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Where the agent records whether this node restored successfully. Default <c>/var/lib/registry-dr/node-state.json</c>.</summary>
    public string StateFile { get; set; } = "/var/lib/registry-dr/node-state.json";

    /// <summary>Auto Scaling API endpoint override (a VPC endpoint; the tests' stand-in). Default: the regional endpoint.</summary>
    public string? AutoScalingEndpoint { get; set; }

    /// <summary>CloudFormation API endpoint override. Default: the regional endpoint.</summary>
    public string? CloudFormationEndpoint { get; set; }

    /// <summary>Adds a message naming the <c>Agent:</c> key for every unusable value.</summary>
    public static void Validate(AgentOptions agent, List<string> errors)
    {
        if (agent.HeartbeatInterval <= TimeSpan.Zero)
            errors.Add("Agent:HeartbeatInterval must be positive, e.g. \"00:05:00\" (and shorter than the lifecycle hooks' HeartbeatTimeout).");
        if (agent.TargetLifecycleStatePollInterval < TimeSpan.FromSeconds(1) || agent.TargetLifecycleStatePollInterval > TimeSpan.FromMinutes(5))
            errors.Add($"Agent:TargetLifecycleStatePollInterval is {agent.TargetLifecycleStatePollInterval}; it must be between 00:00:01 and 00:05:00.");
        // LifecycleHookName's pattern in the Amazon EC2 Auto Scaling API Reference (PutLifecycleHook).
        foreach (var (key, value) in new[] { ("LifecycleHookName", agent.LifecycleHookName), ("TerminationHookName", agent.TerminationHookName) })
        {
            if (!string.IsNullOrEmpty(value) && (value.Length > 255 || !value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '/')))
                errors.Add($"Agent:{key} '{value}' is not a lifecycle hook name (1 to 255 of A-Z, a-z, 0-9, '-', '_', '/').");
        }
        if (!string.IsNullOrEmpty(agent.LifecycleHookName) && agent.LifecycleHookName == agent.TerminationHookName)
            errors.Add($"Agent:LifecycleHookName and Agent:TerminationHookName are both '{agent.LifecycleHookName}'; the launch and the terminating hook are two hooks.");
        foreach (var (key, value) in new[] { ("MetadataEndpoint", agent.MetadataEndpoint), ("AutoScalingEndpoint", agent.AutoScalingEndpoint), ("CloudFormationEndpoint", agent.CloudFormationEndpoint) })
        {
            if (!string.IsNullOrEmpty(value) && (!Uri.TryCreate(value, UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https") || !string.IsNullOrEmpty(u.Query)))
                errors.Add($"Agent:{key} '{value}' must be an absolute http:// or https:// URL without a query.");
        }
        if (!string.IsNullOrEmpty(agent.CheckRegistryAfterRestore) && (!Uri.TryCreate(agent.CheckRegistryAfterRestore, UriKind.Absolute, out var registry) || (registry.Scheme != "http" && registry.Scheme != "https")))
            errors.Add($"Agent:CheckRegistryAfterRestore '{agent.CheckRegistryAfterRestore}' must be the registry's absolute http:// or https:// base URL, e.g. http://127.0.0.1:5000.");
        if (agent.CheckRegistryTimeout < TimeSpan.FromSeconds(1) || agent.CheckRegistryTimeout > TimeSpan.FromDays(1))
            errors.Add($"Agent:CheckRegistryTimeout is {agent.CheckRegistryTimeout}; it must be between 00:00:01 and 1.00:00:00.");
        if (string.IsNullOrWhiteSpace(agent.StateFile) || !Path.IsPathFullyQualified(agent.StateFile))
            errors.Add($"Agent:StateFile '{agent.StateFile}' must be an absolute path.");
    }
}
