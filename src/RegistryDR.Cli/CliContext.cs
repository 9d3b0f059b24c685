using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Postgres;
using RegistryDR.Processes;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Cli;

/// <summary>What a command needs before it runs, checked up front so that it fails before touching anything.</summary>
[Flags]
internal enum Needs
{
    /// <summary>The configuration and an initialised store (every command does).</summary>
    Store = 1,
    /// <summary>The database password: backup, restore, drill, worker and bootstrap connect. list, verify, prune and status do not need it.</summary>
    Database = 2,
}

/// <summary>What every subcommand needs: validated options, a logger, the store, and the mapping of failures to exit codes.</summary>
internal sealed class CliContext : IDisposable
{
    public required RegistryDrOptions Options { get; init; }
    public required ILoggerFactory LoggerFactory { get; init; }
    public required IBackupStore Store { get; init; }
    public required bool Json { get; init; }
    public TimeProvider Time { get; } = TimeProvider.System;

    public void Dispose()
    {
        (Store as IDisposable)?.Dispose();
        LoggerFactory.Dispose();
    }

    /// <summary>The command line's loggers: below <see cref="LogLevel.Debug"/> (no <c>--verbose</c>), without exceptions' stack traces (<see cref="Rendering.ExceptionDetailFilter"/>).</summary>
    internal static ILoggerFactory CreateLoggerFactory(LogLevel minimum)
    {
        var factory = Microsoft.Extensions.Logging.LoggerFactory.Create(b =>
        {
            b.SetMinimumLevel(minimum);
            ConfigureConsole(b);
        });
        return minimum > LogLevel.Debug ? new Rendering.ExceptionDetailFilter(factory) : factory;
    }

    /// <summary>Logs go to stderr, one line per event; under systemd (JOURNAL_STREAM set) in journald's format.</summary>
    internal static void ConfigureConsole(ILoggingBuilder builder)
    {
        builder.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        if (Environment.GetEnvironmentVariable("JOURNAL_STREAM") is { Length: > 0 })
            builder.AddSystemdConsole(o => { o.IncludeScopes = true; o.UseUtcTimestamp = true; });
        else
            builder.AddSimpleConsole(o => { o.SingleLine = true; o.IncludeScopes = true; o.UseUtcTimestamp = true; o.TimestampFormat = "yyyy-MM-ddTHH:mm:ssZ "; });
    }

    /// <summary>
    /// An error for the operator: "error: MESSAGE" on stderr and, with --json, <c>{"error": {"code": N, "message": ...}}</c>
    /// on stdout (a script reading stdout gets JSON on every path). Returns <paramref name="code"/>.
    /// </summary>
    internal static int Fail(bool json, int code, string message)
    {
        Console.Error.WriteLine("error: " + message);
        if (json) Console.WriteLine(JsonSerializer.Serialize(new { error = new { code, message } }, RegistryDrCli.JsonOutput));
        return code;
    }

    /// <summary>Loads and validates the configuration and, for commands that connect, checks that the password can be read.</summary>
    internal static RegistryDrOptions Load(ParseResult parse, Needs needs)
    {
        var options = RegistryDrConfiguration.Load(parse.GetValue(RegistryDrCli.ConfigOption));
        if (needs.HasFlag(Needs.Database) && PostgresConnectionFactory.PasswordProblem(options.Database) is { } problem)
            throw new ConfigurationException("Invalid configuration:" + Environment.NewLine + "  " + problem);
        return options;
    }

    /// <summary>Loads the configuration, opens the store, runs <paramref name="body"/>, and turns failures into a message and an exit code.</summary>
    /// <param name="openStore">How the store is opened; default <see cref="BackupStoreFactory.Open"/> (refuses a store without its marker).</param>
    /// <param name="onInvalidConfiguration">Run (with the message) before exiting with <see cref="ExitCodes.InvalidConfiguration"/>; <c>bootstrap</c> reports to AWS there.</param>
    public static async Task<int> RunAsync(ParseResult parse, bool json, Needs needs, Func<CliContext, CancellationToken, Task<int>> body,
        Func<RegistryDrOptions, ILogger, IBackupStore>? openStore = null, Func<string, ILoggerFactory, Task>? onInvalidConfiguration = null)
    {
        using var cts = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });

        RegistryDrOptions options;
        try
        {
            options = Load(parse, needs);
        }
        catch (ConfigurationException ex)
        {
            var code = Fail(json, ExitCodes.InvalidConfiguration, ex.Message);
            if (onInvalidConfiguration is not null)
            {
                using var reportLoggers = CreateLoggerFactory(LogLevel.Information);
                await onInvalidConfiguration(ex.Message, reportLoggers);
            }
            return code;
        }
        var verbose = parse.GetValue(RegistryDrCli.VerboseOption);
        var loggers = CreateLoggerFactory(verbose ? LogLevel.Debug : LogLevel.Information);
        var storeLogger = loggers.CreateLogger("RegistryDR.Stores");
        using var context = new CliContext
        {
            Options = options,
            LoggerFactory = loggers,
            Store = openStore?.Invoke(options, storeLogger) ?? BackupStoreFactory.Open(options.Store, logger: storeLogger),
            Json = json,
        };
        var logger = context.LoggerFactory.CreateLogger("registry-dr");
        if (RegistryDrConfiguration.PermissionWarning(parse.GetValue(RegistryDrCli.ConfigOption)) is { } warning)
            logger.LogWarning("{Warning}", warning);
        try
        {
            return await body(context, cts.Token);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            return Fail(json, ExitCodes.Cancelled, "Interrupted.");
        }
        catch (Exception ex) when (Classify(ex) is { } code)
        {
            // The message is the operator's instruction; stack traces only with --verbose.
            if (verbose) logger.LogError(ex, "{Message}", ex.Message);
            return Fail(json, code, ex.Message);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Not a failure we know: still one line (and JSON with --json), the detail with --verbose.
            if (verbose) logger.LogError(ex, "{Message}", ex.Message);
            return Fail(json, ExitCodes.Failed, verbose ? ex.Message : ex.Message + " (unexpected; run again with --verbose for the detail)");
        }
    }

    private static int? Classify(Exception ex) => ex switch
    {
        ConfigurationException => ExitCodes.InvalidConfiguration,
        Agent.LifecycleActionNotCompletedException => ExitCodes.LifecycleNotCompleted,
        Agent.BootstrapFailedException b when b.InnerException is BackupNotFoundException or StoreNotInitializedException => ExitCodes.NoBackup,
        Agent.BootstrapFailedException b when b.InnerException is RestoreFailedException => ExitCodes.RestoreFailed,
        Agent.BootstrapFailedException b when b.InnerException is ConfigurationException => ExitCodes.InvalidConfiguration,
        Agent.BootstrapFailedException => ExitCodes.Failed,
        Aws.InstanceMetadataUnavailableException => ExitCodes.Failed,
        BackupNotFoundException or Continuous.RecoveryPlanException => ExitCodes.NoBackup,
        Continuous.CorruptWalException => ExitCodes.VerificationFailed,
        RestoreFailedException r when r.InnerException is Continuous.CorruptWalException or Continuous.RecoveryPlanException => ExitCodes.VerificationFailed,
        Continuous.RecoveryFailedException or Continuous.ForeignClusterException => ExitCodes.Failed,
        ArtifactCorruptException or InvalidManifestException => ExitCodes.VerificationFailed,
        RestoreFailedException r when r.InnerException is ArtifactCorruptException or InvalidManifestException => ExitCodes.VerificationFailed,
        // An artifact the manifest lists is not in the store (not replicated yet, deleted): the set cannot be verified or restored.
        Stores.StoreObjectNotFoundException => ExitCodes.VerificationFailed,
        RestoreFailedException r when r.InnerException is Stores.StoreObjectNotFoundException => ExitCodes.VerificationFailed,
        RestoreFailedException => ExitCodes.RestoreFailed,
        RestorePreflightException => ExitCodes.Failed,
        Retention.PruneFailedException => ExitCodes.Failed,
        BackupFailedException or StoreUnavailableException or StoreNotInitializedException or DatabaseUnavailableException or ProcessFailedException
            or IOException or UnauthorizedAccessException or TimeoutException or Archive.UnsafeArchiveException => ExitCodes.Failed,
        _ => null,
    };
}
