using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RegistryDR.Agent;
using RegistryDR.Aws;
using RegistryDR.Backup;
using RegistryDR.Cli.Rendering;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;
using RegistryDR.Restore;
using RegistryDR.Worker;

namespace RegistryDR.Cli;

/// <summary>The <c>registry-dr</c> command line. Each subcommand is a thin shell over a library service.</summary>
internal static class RegistryDrCli
{
    public static readonly Option<string?> ConfigOption = new("--config", "-c")
    {
        Description = $"Configuration file (default {RegistryDrOptions.DefaultConfigPath}; REGISTRYDR__Section__Key variables override it).",
        Recursive = true,
    };

    public static readonly Option<bool> VerboseOption = new("--verbose", "-v")
    {
        Description = "Debug logging, and stack traces with errors.",
        Recursive = true,
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Machine-readable JSON on stdout; no progress display." };

    internal static readonly JsonSerializerOptions JsonOutput = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static RootCommand Build()
    {
        var root = new RootCommand("RegistryDR: backup, verification and restore for a single-node container registry (PostgreSQL metadata and config directories).");
        root.Options.Add(ConfigOption);
        root.Options.Add(VerboseOption);
        root.Subcommands.Add(BackupCommand());
        root.Subcommands.Add(ListCommand());
        root.Subcommands.Add(StatusCommand());
        root.Subcommands.Add(VerifyCommand());
        root.Subcommands.Add(RestoreCommand());
        root.Subcommands.Add(DrillCommand());
        root.Subcommands.Add(PruneCommand());
        root.Subcommands.Add(WorkerCommand());
        root.Subcommands.Add(BootstrapCommand());
        root.Subcommands.Add(ContinuousCommands.WalPushCommand());
        return root;
    }

    private static Command BackupCommand()
    {
        var json = JsonOption();
        var command = new Command("backup", "Take one backup set now: roles, database, config directories, then the manifest.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), async (ctx, ct) =>
        {
            var service = new BackupService(ctx.Options, ctx.Store, ctx.LoggerFactory.CreateLogger<BackupService>(), ctx.Time);
            var progress = TerminalProgress.For(ctx.Json);
            var manifest = await service.RunAsync(progress, ct);
            (progress as TerminalProgress)?.Done();
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(manifest, JsonOutput));
            else
            {
                Console.WriteLine($"Backup {manifest.BackupId} complete in {ctx.Store.Description}");
                foreach (var a in manifest.Artifacts.Where(a => !BackupLayout.IsTableDataArtifact(a.Name)))
                    Console.WriteLine($"  {a.Name,-10} {a.Size,14:N0} bytes  sha256 {a.Sha256}");
                var ranges = manifest.Artifacts.Where(a => BackupLayout.IsTableDataArtifact(a.Name)).ToList();
                if (ranges.Count > 0)
                    Console.WriteLine($"  {"table data",-10} {ranges.Sum(a => a.Size),14:N0} bytes  {ranges.Count} block ranges of {string.Join(", ", manifest.SplitTables.Select(t => t.Schema + "." + t.Name))}");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command ListCommand()
    {
        var json = JsonOption();
        var command = new Command("list", "List backup sets, newest first.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), async (ctx, ct) =>
        {
            if (ctx.Options.Database.Mode == RegistryDR.Continuous.DatabaseMode.Continuous) return await ContinuousCommands.ListAsync(ctx, ct);
            var sets = await new BackupCatalog(ctx.Store).ListAsync(ct);
            if (ctx.Json)
            {
                Console.WriteLine(JsonSerializer.Serialize(sets, JsonOutput));
                return ExitCodes.Success;
            }
            if (sets.Count == 0)
            {
                Console.WriteLine($"No backups in {ctx.Store.Description}.");
                return ExitCodes.Success;
            }
            Console.WriteLine($"{"BACKUP ID",-26} {"TIME (UTC)",-20} {"SIZE",12} STATE");
            foreach (var s in sets)
                Console.WriteLine($"{s.BackupId,-26} {s.Time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),-20} {TerminalProgress.Bytes(s.Size),12} {(s.IsComplete ? "complete" : "INCOMPLETE")}");
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command StatusCommand()
    {
        var json = JsonOption();
        var command = new Command("status",
            "Is the registry protected? The newest backup and its age against the schedule (OK, LATE, MISSING), whether the store is reachable, and the recovery point a restore now would give. Exit 0 only when OK.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), async (ctx, ct) =>
        {
            var status = ctx.Options.Database.Mode == RegistryDR.Continuous.DatabaseMode.Continuous
                ? await RegistryDR.Continuous.ContinuousStatus.ReadAsync(ctx.Store, ctx.Options.Schedule.Cron, ctx.Time, ct)
                : await ProtectionStatusReader.ReadAsync(ctx.Store, ctx.Options.Schedule.Cron, ctx.Time, ct);
            if (ctx.Json)
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    state = status.State,
                    store = status.Store,
                    storeReachable = status.StoreReachable,
                    storeError = status.StoreError,
                    schedule = status.Schedule,
                    intervalSeconds = status.Interval.TotalSeconds,
                    newestBackupId = status.NewestBackupId,
                    newestBackupTime = status.NewestBackupTime,
                    newestBackupAgeSeconds = status.NewestBackupAge?.TotalSeconds,
                    newestBackupSizeBytes = status.NewestBackupSize,
                    recoveryPoint = status.RecoveryPoint,
                    completeSets = status.CompleteSets,
                    incompleteSets = status.IncompleteSets,
                    wal = status.Wal,
                }, JsonOutput));
            }
            else
            {
                Console.WriteLine($"Protection:      {status.State.ToString().ToUpperInvariant()}");
                Console.WriteLine($"Store:           {status.Store} ({(status.StoreReachable ? "reachable" : "UNREACHABLE: " + status.StoreError)})");
                Console.WriteLine($"Schedule:        {status.Schedule} (every {status.Interval}; LATE after {status.Interval * ProtectionStatusReader.LateAfterIntervals})");
                if (status.NewestBackupId is not null)
                {
                    Console.WriteLine($"Newest backup:   {status.NewestBackupId}, {TerminalProgress.Bytes(status.NewestBackupSize ?? 0)}, {Age(status.NewestBackupAge!.Value)} old");
                    Console.WriteLine($"Recovery point:  a restore now returns the registry to {status.RecoveryPoint:u}");
                }
                else if (status.StoreReachable)
                {
                    Console.WriteLine("Newest backup:   none: a restore now has nothing to return");
                }
                Console.WriteLine($"Sets:            {status.CompleteSets} complete, {status.IncompleteSets} incomplete");
                if (status.Wal is { } wal) ContinuousCommands.PrintWalStatus(wal);
            }
            return status.State == ProtectionState.Ok ? ExitCodes.Success : ExitCodes.NotProtected;
        }));
        return command;
    }

    private static string Age(TimeSpan age) => age.TotalDays >= 1 ? $"{age.TotalDays:F1} days" : age.TotalHours >= 1 ? $"{age.TotalHours:F1} hours" : age.TotalMinutes >= 1 ? $"{age.TotalMinutes:F0} minutes" : $"{age.TotalSeconds:F0} seconds";

    private static Command VerifyCommand()
    {
        var json = JsonOption();
        var id = new Argument<string>("backup") { Description = "A backup id, or 'latest' (the newest complete set).", DefaultValueFactory = _ => "latest" };
        var command = new Command("verify", "Download a backup set and check every SHA-256, the dump's table of contents and the config archive.") { id, json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), async (ctx, ct) =>
        {
            if (ctx.Options.Database.Mode == RegistryDR.Continuous.DatabaseMode.Continuous) return await ContinuousCommands.VerifyAsync(ctx, parse.GetValue(id), ct);
            var catalog = new BackupCatalog(ctx.Store);
            var backupId = await catalog.ResolveAsync(parse.GetValue(id), ct);
            var manifest = await catalog.ReadManifestAsync(backupId, ct);
            var progress = TerminalProgress.For(ctx.Json);
            var report = await new BackupVerifier(ctx.Store, ctx.Options.Database, ctx.LoggerFactory.CreateLogger<BackupVerifier>()).VerifyAsync(manifest, progress, ct);
            (progress as TerminalProgress)?.Done();
            await RegistryDR.Retention.VerificationRecord.WriteAsync(ctx.Store, report.BackupId, "verify", ctx.Time, ct);
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(new { report.BackupId, valid = true, artifacts = report.Artifacts }, JsonOutput));
            else
            {
                Console.WriteLine($"Backup {report.BackupId} is valid.");
                foreach (var a in report.Artifacts.Where(a => !BackupLayout.IsTableDataArtifact(a.Name)))
                    Console.WriteLine($"  {a.Name,-10} {a.Size,14:N0} bytes  {a.Detail}");
                var ranges = report.Artifacts.Where(a => BackupLayout.IsTableDataArtifact(a.Name)).ToList();
                if (ranges.Count > 0)
                    Console.WriteLine($"  {"table data",-10} {ranges.Sum(a => a.Size),14:N0} bytes  {ranges.Count} block ranges, each a whole binary COPY with the recorded SHA-256");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command RestoreCommand()
    {
        var json = JsonOption();
        var backup = new Option<string>("--backup", "-b") { Description = "A backup id, or 'latest' (the newest complete set).", DefaultValueFactory = _ => "latest" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the plan and change nothing." };
        var to = new Option<string?>("--to") { Description = "Continuous mode: 'latest' (the default) or a UTC time such as 2026-11-22T02:17:00Z; the database returns to that moment, the config directories to the newest base set not after it." };
        var command = new Command("restore", "Verify a backup set, then restore the config directories, roles and database, and restart the registry.") { backup, dryRun, to, json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), async (ctx, ct) =>
        {
            if (ctx.Options.Database.Mode == RegistryDR.Continuous.DatabaseMode.Continuous)
                return await ContinuousCommands.RestoreAsync(ctx, parse.GetValue(to), parse.GetResult(backup) is { Implicit: false } ? parse.GetValue(backup) : null, parse.GetValue(dryRun), ct);
            if (parse.GetValue(to) is { } toValue)
                throw new ConfigurationException($"restore --to {toValue} needs Database:Mode Continuous (WAL archiving); in logical mode restore a set with --backup ID (`registry-dr list`).");
            var service = new RestoreService(ctx.Options, ctx.Store, ctx.LoggerFactory.CreateLogger<RestoreService>(), ctx.Time);
            var isDryRun = parse.GetValue(dryRun);
            var progress = TerminalProgress.For(ctx.Json || isDryRun);
            var result = await service.RestoreAsync(new RestoreRequest(parse.GetValue(backup), isDryRun), progress, ct);
            (progress as TerminalProgress)?.Done();
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(new { result.Plan.BackupId, dryRun = result.DryRun, steps = result.Plan.Steps, elapsedSeconds = result.Elapsed.TotalSeconds }, JsonOutput));
            else
            {
                Console.WriteLine(result.DryRun ? $"Plan for restoring backup {result.Plan.BackupId} (dry run: nothing was changed):" : $"Restored backup {result.Plan.BackupId} in {result.Elapsed.TotalSeconds:F1} s:");
                for (var i = 0; i < result.Plan.Steps.Count; i++) Console.WriteLine($"  {i + 1}. {result.Plan.Steps[i]}");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command BootstrapCommand()
    {
        var json = JsonOption();
        var command = new Command("bootstrap",
            "EC2 agent, run once at boot: restore the newest valid backup, start the registry, wait for health, then complete the launch lifecycle action and signal CloudFormation.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), async (ctx, ct) =>
        {
            var agentOptions = ctx.Options.Agent;
            // The load balancer's health check must see "restoring" while the agent works, so the
            // monitoring endpoints are served by the agent too until the worker takes over.
            var metrics = new OperationMetrics(ctx.Time);
            await using var monitoring = ctx.Options.Monitoring.Enabled ? await MonitoringServer.StartAsync(ctx.Options, metrics, ctx.LoggerFactory, ct) : null;
            var agent = new BootstrapAgent(ctx.Options, ctx.Store,
                new InstanceMetadataClient(agentOptions.MetadataEndpoint),
                identity => AwsQueryControlPlane.FromDefaultCredentials(identity.Region, agentOptions.AutoScalingEndpoint, agentOptions.CloudFormationEndpoint),
                ctx.LoggerFactory, ctx.Time, events: metrics);
            var result = await agent.RunAsync(ct);
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(result, JsonOutput));
            else
            {
                Console.WriteLine(result.Status == NodeStatus.FirstBoot
                    ? "Bootstrap complete: first boot with an empty registry (the store held no backup)."
                    : $"Bootstrap complete: restored backup {result.BackupId}.");
                if (result.SkippedBackups.Count > 0)
                    Console.WriteLine($"Newer backups failed verification and were skipped: {string.Join(", ", result.SkippedBackups)}");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command DrillCommand()
    {
        var json = JsonOption();
        var id = new Argument<string>("backup") { Description = "A backup id, or 'latest' (the newest complete set).", DefaultValueFactory = _ => "latest" };
        var command = new Command("drill",
            "Rehearse a restore without touching the live registry: restore a set into a scratch database and directory, check the fingerprint and the archive, clean up, report.") { id, json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), async (ctx, ct) =>
        {
            var progress = TerminalProgress.For(ctx.Json);
            var report = await new DrillService(ctx.Options, ctx.Store, ctx.LoggerFactory, ctx.Time).RunAsync(parse.GetValue(id), progress, ct);
            (progress as TerminalProgress)?.Done();
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(report, JsonOutput));
            else if (report.Succeeded)
                Console.WriteLine($"Drill of backup {report.BackupId} passed in {report.Elapsed.TotalSeconds:F1} s: {report.Tables} tables and {report.Rows} rows match the fingerprint; {report.ConfigFiles} config files extracted. Scratch copies removed.");
            else
                Console.Error.WriteLine($"Drill of backup {report.BackupId} FAILED: {report.Failure}");
            return report.Succeeded ? ExitCodes.Success : ExitCodes.VerificationFailed;
        }));
        return command;
    }

    private static Command PruneCommand()
    {
        var json = JsonOption();
        var dryRun = new Option<bool>("--dry-run") { Description = "Print what would be deleted and why; delete nothing." };
        var command = new Command("prune",
            "Apply retention (Retention:KeepLast, KeepDailyDays, KeepWeeklyWeeks, IncompleteGrace). Never deletes the newest verified set, nor the only complete one.") { dryRun, json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), async (ctx, ct) =>
        {
            var pruner = new RegistryDR.Retention.Pruner(ctx.Store, ctx.Options.Retention, ctx.Time, ctx.LoggerFactory.CreateLogger<RegistryDR.Retention.Pruner>());
            var plan = await pruner.PruneAsync(parse.GetValue(dryRun), ct);
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(plan, JsonOutput));
            else
            {
                Console.Write(plan.Render());
                Console.WriteLine(parse.GetValue(dryRun)
                    ? $"Dry run: {plan.DeleteCount} set(s) would be deleted, {plan.KeepCount} kept. Nothing was deleted."
                    : $"{plan.DeleteCount} set(s) deleted, {plan.KeepCount} kept.");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command WorkerCommand()
    {
        var command = new Command("worker", "Run the scheduled backup service (Schedule:Cron, every 15 minutes by default) until SIGTERM.");
        command.SetAction(async (parse, _) =>
        {
            RegistryDrOptions options;
            try
            {
                options = RegistryDrConfiguration.Load(parse.GetValue(ConfigOption));
            }
            catch (ConfigurationException ex)
            {
                Console.Error.WriteLine(ex.Message);
                return ExitCodes.InvalidConfiguration;
            }
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, ApplicationName = "registry-dr" });
            builder.Logging.ClearProviders();
            builder.Logging.SetMinimumLevel(parse.GetValue(VerboseOption) ? LogLevel.Debug : LogLevel.Information);
            builder.Logging.AddFilter("Quartz", LogLevel.Warning);
            CliContext.ConfigureConsole(builder.Logging);
            builder.Services.AddRegistryDrMonitoring(options);
            builder.Services.AddRegistryDrWorker(options);
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(2));
            using var host = builder.Build();
            // The host's own console lifetime turns SIGTERM into a graceful stop.
            await host.RunAsync();
            return ExitCodes.Success;
        });
        return command;
    }
}
