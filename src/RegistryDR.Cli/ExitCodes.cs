namespace RegistryDR.Cli;

/// <summary>Process exit codes; documented in docs/cli.md and in every command's --help. Scripts and systemd rely on them.</summary>
internal static class ExitCodes
{
    public const int Success = 0;
    /// <summary>The operation failed (database, store, process); the message says why.</summary>
    public const int Failed = 1;
    /// <summary>The configuration or the command line is invalid; nothing was touched.</summary>
    public const int InvalidConfiguration = 2;
    /// <summary>The requested backup (or any complete backup) does not exist.</summary>
    public const int NoBackup = 3;
    /// <summary>A backup set failed verification: an artifact is corrupt or the manifest is invalid.</summary>
    public const int VerificationFailed = 4;
    /// <summary>A restore failed part-way; the message says what state the node is in.</summary>
    public const int RestoreFailed = 5;
    /// <summary><c>status</c>: the registry is not protected (LATE, MISSING, BLOCKED, or the store cannot be read).</summary>
    public const int NotProtected = 6;
    /// <summary><c>bootstrap</c>: the node restored, but Auto Scaling did not accept CONTINUE for the launch hook; the instance will not enter service.</summary>
    public const int LifecycleNotCompleted = 7;
    /// <summary>Interrupted by SIGINT or SIGTERM.</summary>
    public const int Cancelled = 130;

    /// <summary>Every code with its meaning, as --help prints them (docs/cli.md has the same table).</summary>
    public static readonly IReadOnlyList<(int Code, string Meaning)> All =
    [
        (Success, "success"),
        (Failed, "the operation failed (database, store, a tool, disk); the message says why"),
        (InvalidConfiguration, "invalid configuration or command line; nothing was touched"),
        (NoBackup, "no such backup, or no complete backup in the store"),
        (VerificationFailed, "verification failed (corrupt artifact, invalid manifest, failed drill)"),
        (RestoreFailed, "a restore failed part-way; the message ends with \"Node state: ...\""),
        (NotProtected, "status: not protected (LATE, MISSING, BLOCKED or UNKNOWN)"),
        (Cancelled, "interrupted by SIGINT or SIGTERM"),
    ];
}
