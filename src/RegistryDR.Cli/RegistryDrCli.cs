using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
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
using RegistryDR.Stores;
using RegistryDR.Worker;

namespace RegistryDR.Cli;

/// <summary>The <c>registry-dr</c> command line. Each subcommand is a thin shell over a library service. docs/cli.md describes it, and a test holds the two together.</summary>
internal static class RegistryDrCli
{
    public static readonly Option<string?> ConfigOption = new("--config", "-c")
    {
        Description = $"Configuration file (default {RegistryDrOptions.DefaultConfigPath}; REGISTRYDR__Section__Key variables override it).",
        HelpName = "PATH",
        Recursive = true,
    };

    public static readonly Option<bool> VerboseOption = new("--verbose", "-v")
    {
        Description = "Debug logging, and stack traces with errors.",
        Recursive = true,
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Machine-readable JSON on stdout (errors too: {\"error\": {\"code\": N, \"message\": ...}}); no progress display." };

    /// <summary>A set to work on: optional, 'latest' when left out. No DefaultValueFactory, so help does not print "[default: latest]" after the command's own description.</summary>
    private static Argument<string?> BackupArgument() => new("ID|latest")
    {
        Description = "A backup id from `registry-dr list`, or 'latest' (when left out): the newest restorable set (manifest valid, every artifact present).",
        HelpName = "ID|latest",
        Arity = ArgumentArity.ZeroOrOne,
    };

    /// <summary>Indented, and quotes and apostrophes left as they are (the output is read by people and by JSON parsers, never embedded in HTML).</summary>
    internal static readonly JsonSerializerOptions JsonOutput = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static RootCommand Build()
    {
        var root = new RootCommand("RegistryDR: backup, verification and restore for a single-node container registry (PostgreSQL metadata and config directories). docs/cli.md describes every command.");
        root.Options.Add(ConfigOption);
        root.Options.Add(VerboseOption);
        root.Subcommands.Add(InitStoreCommand());
        root.Subcommands.Add(BackupCommand());
        root.Subcommands.Add(ListCommand());
        root.Subcommands.Add(StatusCommand());
        root.Subcommands.Add(VerifyCommand());
        root.Subcommands.Add(RestoreCommand());
        root.Subcommands.Add(DrillCommand());
        root.Subcommands.Add(PruneCommand());
        root.Subcommands.Add(WorkerCommand());
        root.Subcommands.Add(BootstrapCommand());
        root.Subcommands.Add(CheckRegistryCommand.Create());
        root.Subcommands.Add(ContinuousCommands.WalPushCommand());
        var help = root.Options.OfType<HelpOption>().Single();
        help.Action = new HelpWithExitCodes((HelpAction)help.Action!);
        return root;
    }

    /// <summary>The exit codes, as every --help ends with them.</summary>
    internal static string ExitCodesHelp() =>
        "Exit codes:" + Environment.NewLine +
        string.Concat(ExitCodes.All.Select(c => $"  {c.Code,-5}{c.Meaning}{Environment.NewLine}"));

    /// <summary>System.CommandLine's help, then the exit codes.</summary>
    private sealed class HelpWithExitCodes(HelpAction inner) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            var result = inner.Invoke(parseResult);
            parseResult.InvocationConfiguration.Output.WriteLine(ExitCodesHelp());
            return result;
        }
    }

    /// <summary>
    /// An invalid command line: what is wrong, the nearest command for a typo, and where help is.
    /// Exit 2, like an invalid configuration (docs/cli.md; the worker unit's RestartPreventExitStatus=2).
    /// </summary>
    public static int ReportParseErrors(ParseResult parse, bool json)
    {
        var messages = parse.Errors.Select(e => e.Message).Distinct().ToList();
        var command = parse.CommandResult.Command;
        var unmatched = parse.UnmatchedTokens.FirstOrDefault();
        // "registry-dr lisst" is a mistyped command, not a missing one.
        if (unmatched is not null && messages.Count > 1) messages.RemoveAll(m => m.StartsWith("Required command", StringComparison.Ordinal));
        if (unmatched is not null && command.Subcommands.Count > 0 &&
            Configuration.Internal.OptionsReader.Closest(unmatched, command.Subcommands.Select(c => c.Name)) is { } closest)
            messages.Add($"Did you mean '{closest}'?");
        var path = string.Join(' ', parse.CommandResult.Command is RootCommand ? ["registry-dr"] : new[] { "registry-dr", command.Name });
        messages.Add($"'{path} --help' lists the commands and options.");
        return CliContext.Fail(json, ExitCodes.InvalidConfiguration, string.Join(Environment.NewLine, messages));
    }

    private static Command InitStoreCommand()
    {
        var json = JsonOption();
        var command = new Command("init-store",
            $"Initialise the store Store:Url names, once: check it is writable and write its marker ({StoreMarker.Key}). Every other command refuses a store without it, so an unmounted file system or a wrong bucket is never mistaken for an empty store.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store, async (ctx, ct) =>
        {
            var location = StoreLocation.Parse(ctx.Options.Store.Url);
            var notes = new List<string>();
            if (location.Kind == StoreKind.FileSystem)
            {
                if (File.Exists(location.Path))
                    throw new StoreUnavailableException($"Store:Url {location}: {location.Path} is a file, not a directory.");
                if (!Directory.Exists(location.Path))
                {
                    // Backups hold role password hashes and config secrets: private from creation.
                    Directory.CreateDirectory(location.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                    notes.Add($"created {location.Path} (mode 0700)");
                }
                if (FileSystemMounts.Find(location.Path) is { } mount)
                    notes.Add($"{location.Path} is on {mount.Source} mounted at {mount.MountPoint} ({mount.Type})");
            }
            await ctx.Store.CheckAccessAsync(ct);
            var survey = await StoreMarker.SurveyAsync(ctx.Store, ct);
            StoreMarker.Contents marker;
            bool written;
            if (survey.Marker is not null)
            {
                (marker, written) = (survey.Marker, false);
            }
            else if (!survey.HasBackups && survey.OtherObjects > 0)
            {
                throw new StoreNotInitializedException(
                    $"Store:Url {location} is not empty ({(survey.OtherObjects >= 10 ? "10 or more" : survey.OtherObjects.ToString(CultureInfo.InvariantCulture))} object(s)) and holds no backups: it is not a RegistryDR store. Point Store:Url at an empty directory or prefix.");
            }
            else
            {
                (marker, written) = await StoreMarker.WriteAsync(ctx.Store, survey.HasBackups ? "adopted" : "init-store", ctx.Time, ct);
                if (survey.HasBackups) notes.Add("it already held backups from before stores had a marker: adopted");
            }
            if (ctx.Json)
                Console.WriteLine(JsonSerializer.Serialize(new { store = location.ToString(), initialised = written, marker, notes }, JsonOutput));
            else
            {
                Console.WriteLine(written
                    ? $"Initialised {location}: wrote {StoreMarker.Key} (format {marker.Format}, {SetFormat.Time(marker.CreatedAt)}, host {marker.Host})."
                    : $"{location} is already initialised: {StoreMarker.Key} was written {SetFormat.Time(marker.CreatedAt)} on {marker.Host} ({marker.CreatedBy}). Nothing was changed.");
                foreach (var note in notes) Console.WriteLine("  " + note);
            }
            return ExitCodes.Success;
        }, openStore: (options, logger) => BackupStoreFactory.Create(options.Store, logger: logger)));
        return command;
    }

    private static Command BackupCommand()
    {
        var json = JsonOption();
        var command = new Command("backup", "Take one backup set now: roles, database, config directories, then the manifest.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store | Needs.Database, async (ctx, ct) =>
        {
            var service = new BackupService(ctx.Options, ctx.Store, ctx.LoggerFactory.CreateLogger<BackupService>(), ctx.Time);
            var progress = TerminalProgress.For(ctx.Json);
            var manifest = await service.RunAsync(progress, ct);
            (progress as TerminalProgress)?.Done();
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(manifest, JsonOutput));
            else
            {
                Console.WriteLine($"Backup {manifest.BackupId} complete in {ctx.Store.Description}: recovery point {SetFormat.Time(manifest.StartedAt)}, {SetFormat.Bytes(manifest.TotalSize)}");
                WriteArtifacts(manifest.Artifacts.Select(a => (a.Name, a.Size, "sha256 " + a.Sha256)), manifest.SplitTables.Select(t => t.Schema + "." + t.Name));
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>One line per artifact, the block ranges of split tables summed into one.</summary>
    private static void WriteArtifacts(IEnumerable<(string Name, long Size, string Detail)> artifacts, IEnumerable<string> splitTables)
    {
        var all = artifacts.ToList();
        foreach (var a in all.Where(a => !BackupLayout.IsTableDataArtifact(a.Name)))
            Console.WriteLine($"  {a.Name,-10} {SetFormat.Bytes(a.Size),10}  {a.Detail}");
        var ranges = all.Where(a => BackupLayout.IsTableDataArtifact(a.Name)).ToList();
        if (ranges.Count > 0)
            Console.WriteLine($"  {"table data",-10} {SetFormat.Bytes(ranges.Sum(a => a.Size)),10}  {ranges.Count} block ranges of {string.Join(", ", splitTables)}");
    }

    private static Command ListCommand()
    {
        var json = JsonOption();
        var command = new Command("list", "List backup sets, newest first: id, recovery point, size, state, and whether the set was verified.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store, async (ctx, ct) =>
        {
            if (ctx.Options.Database.Mode == RegistryDR.Continuous.DatabaseMode.Continuous) return await ContinuousCommands.ListAsync(ctx, ct);
            // Each set judged as restore would judge it (RestorableSets): manifest valid, every artifact there.
            var sets = await new RestorableSets(ctx.Store).ListAsync(ct);
            var verified = await Retention.VerificationRecord.ReadVerifiedIdsAsync(ctx.Store, ct);
            if (ctx.Json)
            {
                var array = new JsonArray();
                foreach (var j in sets)
                {
                    var node = JsonSerializer.SerializeToNode(j.Set, JsonOutput)!.AsObject();
                    node["verified"] = verified.Contains(j.BackupId);
                    node["restorable"] = j.IsRestorable;
                    node["condition"] = j.Condition.ToString();
                    node["problem"] = j.Problem;
                    array.Add(node);
                }
                Console.WriteLine(array.ToJsonString(JsonOutput));
                return ExitCodes.Success;
            }
            if (sets.Count == 0)
            {
                Console.WriteLine($"No backups in {ctx.Store.Description}.");
                return ExitCodes.Success;
            }
            Console.WriteLine($"{"BACKUP ID",-27} {"RECOVERY POINT",-23} {"SIZE",10}  {"STATE",-10} VERIFIED");
            foreach (var j in sets)
                Console.WriteLine($"{j.BackupId,-27} {SetFormat.Time(j.Set.Time),-23} {SetFormat.Bytes(j.Set.Size),10}  {j.Label,-10} {(verified.Contains(j.BackupId) ? "yes" : "-")}");
            foreach (var j in sets.Where(j => j.Problem is not null && j.Condition != SetCondition.Incomplete))
                Console.WriteLine($"  {j.BackupId}: {j.Problem}");
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command StatusCommand()
    {
        var json = JsonOption();
        var command = new Command("status",
            "Is the registry protected? The newest backup's age against the schedule (OK, LATE, MISSING), whether the next backup can run (database reachable with the password, store writable, config directories present; BLOCKED if not), and the recovery point a restore now would give. Exit 0 only when OK.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store, async (ctx, ct) =>
        {
            var status = await ProtectionStatusReader.ReadAsync(ctx.Store, ctx.Options, ctx.Time, ctx.LoggerFactory.CreateLogger("RegistryDR.Postgres"), ct);
            var db = ctx.Options.Database;
            // The node itself: a restore killed part-way is rolled back or finished, what dead
            // restores and drills left is removed, and what remains is listed with its size.
            var nodeLogger = ctx.LoggerFactory.CreateLogger("registry-dr");
            InterruptedRestore.Tidying? tidying = null;
            IReadOnlyList<Leftover> leftovers = [];
            string? nodeError = null;
            try
            {
                tidying = await InterruptedRestore.TidyAsync(ctx.Options, nodeLogger, ctx.Time, ct);
                leftovers = await new RestoreLeftovers(ctx.Options, nodeLogger).FindAsync(ct);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // status reports; it never fails on what it could not check (the database's own
                // check above already names an unusable password file or an unreachable server).
                nodeError = ex.Message;
            }
            var registryCheck = RegistryDR.Agent.NodeStateFile.Read(ctx.Options.Agent.StateFile)?.RegistryCheck;
            if (ctx.Json)
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    state = status.State,
                    store = status.Store,
                    storeReachable = status.StoreReachable,
                    storeWritable = status.StoreWritable,
                    storeError = status.StoreError,
                    database = $"{db.Host}:{db.Port}/{db.Name}",
                    databaseReachable = status.DatabaseReachable,
                    schedule = status.Schedule,
                    intervalSeconds = status.Interval.TotalSeconds,
                    newestBackupId = status.NewestBackupId,
                    newestBackupTime = status.NewestBackupTime,
                    newestBackupAgeSeconds = status.NewestBackupAge?.TotalSeconds,
                    newestBackupSizeBytes = status.NewestBackupSize,
                    recoveryPoint = status.RecoveryPoint,
                    completeSets = status.CompleteSets,
                    incompleteSets = status.IncompleteSets,
                    problems = status.Problems,
                    skipped = status.Skipped.Select(j => new { j.BackupId, condition = j.Condition, problem = j.Problem }),
                    interruptedRestore = tidying?.Recovered?.Description,
                    restoreRunning = tidying?.Running is { } r ? $"backup {r.BackupId}, pid {r.ProcessId}, since {r.StartedAt:u}" : null,
                    removed = tidying?.Removed ?? [],
                    leftovers = leftovers.Select(l => new { kind = l.Kind, location = l.Location, bytes = l.Bytes, removal = l.Removal }),
                    nodeError,
                    wal = status.Wal,
                    registryCheck,
                }, JsonOutput));
            }
            else
            {
                var storeState = !status.StoreReachable ? "UNREACHABLE: " + status.StoreError
                    : status.StoreWritable == false ? "reachable, NOT WRITABLE" : "reachable, writable";
                Console.WriteLine($"Protection:      {status.State.ToString().ToUpperInvariant()}");
                Console.WriteLine($"Store:           {status.Store} ({storeState})");
                Console.WriteLine($"Database:        {db.Host}:{db.Port}/{db.Name} as {db.User} ({(status.DatabaseReachable == true ? "reachable, password accepted" : "NOT USABLE, see below")})");
                Console.WriteLine($"Schedule:        {ScheduleDescription.Words(status.Schedule, ctx.Time.GetUtcNow())} (\"{status.Schedule}\", UTC); LATE after {Age(status.Interval * ProtectionStatusReader.LateAfterIntervals)}");
                foreach (var j in status.Skipped)
                    Console.WriteLine($"Passed over:     {j.Describe()}");
                if (status.NewestBackupId is not null)
                {
                    Console.WriteLine($"Newest backup:   {status.NewestBackupId}, {SetFormat.Bytes(status.NewestBackupSize ?? 0)}, {Age(status.NewestBackupAge!.Value)} old{(status.Skipped.Count > 0 ? " (the newest restorable set)" : "")}");
                    // In continuous mode a base backup can exist while no restore can be planned (a WAL gap, a
                    // missing base archive): then there is no recovery point to show, and the state says LATE.
                    Console.WriteLine(status.RecoveryPoint is { } point
                        ? $"Recovery point:  {SetFormat.Time(point)} (a restore now returns the registry to this moment)"
                        : "Recovery point:  NONE: a restore to latest cannot be planned from the archive now (`registry-dr restore --dry-run` says why)");
                }
                else if (status.StoreReachable)
                {
                    Console.WriteLine("Newest backup:   none restorable: a restore now has nothing to return");
                }
                // "complete" is structural (a manifest, every artifact listed): say how many of those a
                // restore passes over (FENCED, CORRUPT, artifacts missing), so "0 restorable" is never read as "5 complete".
                var passedOver = status.Skipped.Count(j => j.Set.IsComplete);
                Console.WriteLine($"Sets:            {status.CompleteSets} complete{(passedOver > 0 ? $" ({passedOver} of them passed over by a restore, listed above)" : "")}, {status.IncompleteSets} incomplete");
                if (status.Problems.Count > 0)
                {
                    Console.WriteLine(status.State == ProtectionState.Blocked ? "The next backup cannot run:" : "Problems:");
                    foreach (var p in status.Problems) Console.WriteLine("  " + p);
                }
                if (tidying?.Recovered is { } recovered) Console.WriteLine($"Interrupted:     {recovered.Description}");
                if (tidying?.Running is { } running) Console.WriteLine($"Restore running: backup {running.BackupId} (pid {running.ProcessId}, since {running.StartedAt:u}); not touched");
                foreach (var line in tidying?.Removed ?? []) Console.WriteLine($"Removed:         the {line}");
                foreach (var l in leftovers) Console.WriteLine($"Leftover:        {l.Kind} {l.Location}, {SetFormat.Bytes(l.Bytes)} ({l.Bytes} bytes); remove with: {l.Removal}");
                if (nodeError is not null) Console.WriteLine($"Node:            could not check for interrupted restores and leftovers: {nodeError}");
                if (status.Wal is { } wal) ContinuousCommands.PrintWalStatus(wal);
                if (registryCheck is { } check)
                {
                    Console.WriteLine($"Registry check:  {check.Registry} at {SetFormat.Time(check.At)} after the restore: " + (check.Error is { } why && !check.Complete
                        ? $"NOT COMPLETE ({why})" : check.MissingBlobs == 0 && check.Repositories.Count == 0 ? "every image resolves" : $"{check.MissingBlobs} MISSING BLOB(S)"));
                    foreach (var line in check.Repositories) Console.WriteLine("  " + line);
                }
            }
            return status.State == ProtectionState.Ok ? ExitCodes.Success : ExitCodes.NotProtected;
        }));
        return command;
    }

    private static string Age(TimeSpan age) => age.TotalDays >= 1 ? $"{age.TotalDays:F1} days" : age.TotalHours >= 1 ? $"{age.TotalHours:F1} hours" : age.TotalMinutes >= 1 ? $"{age.TotalMinutes:F0} minutes" : $"{age.TotalSeconds:F0} seconds";

    private static Command VerifyCommand()
    {
        var json = JsonOption();
        var id = BackupArgument();
        var command = new Command("verify",
            "Stream a backup set back from the store and check every SHA-256, the dump's table of contents and the config archive; writes nothing to disk. A set that passes is marked verified in the store (verified.json), which retention protects.") { id, json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store, async (ctx, ct) =>
        {
            if (ctx.Options.Database.Mode == RegistryDR.Continuous.DatabaseMode.Continuous) return await ContinuousCommands.VerifyAsync(ctx, parse.GetValue(id), ct);
            var catalog = new BackupCatalog(ctx.Store);
            var (backupId, selection) = await catalog.ResolveWithSkippedAsync(parse.GetValue(id), ct);
            if (selection?.SkippedSentence is { } skipped) Console.Error.WriteLine($"Verifying {backupId}, the newest restorable set: {skipped}");
            var manifest = await catalog.ReadManifestAsync(backupId, ct);
            var progress = TerminalProgress.For(ctx.Json);
            progress.Expect(manifest.TotalSize);
            var logger = ctx.LoggerFactory.CreateLogger<BackupVerifier>();
            VerificationReport report;
            try
            {
                report = await new BackupVerifier(ctx.Store, ctx.Options.Database, logger).VerifyAsync(manifest, progress, ct);
            }
            catch (ArtifactCorruptException ex)
            {
                // Recorded, so status, list and restore latest stop treating the set as good.
                await CorruptionRecord.TryWriteAsync(ctx.Store, backupId, "verify", ex.Message, ctx.Time, logger, ct);
                throw;
            }
            (progress as TerminalProgress)?.Done();
            await Retention.VerificationRecord.WriteAsync(ctx.Store, report.BackupId, "verify", ctx.Time, ct);
            if (await CorruptionRecord.ClearAsync(ctx.Store, report.BackupId, ct))
                Console.Error.WriteLine($"Backup {report.BackupId} was recorded as corrupt; it passed now, and that record ({CorruptionRecord.Key(report.BackupId)}) was removed.");
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(new { report.BackupId, valid = true, recordedAs = Retention.VerificationRecord.Key(report.BackupId), artifacts = report.Artifacts }, JsonOutput));
            else
            {
                Console.WriteLine($"Backup {report.BackupId} is valid: recovery point {SetFormat.Time(manifest.StartedAt)}, {SetFormat.Bytes(manifest.TotalSize)}. Recorded as verified ({Retention.VerificationRecord.Key(report.BackupId)}).");
                WriteArtifacts(report.Artifacts.Select(a => (a.Name, a.Size, a.Detail)), manifest.SplitTables.Select(t => t.Schema + "." + t.Name));
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command RestoreCommand()
    {
        var json = JsonOption();
        var id = BackupArgument();
        // Before the id was positional it was --backup; kept, hidden, for scripts that use it.
        var backup = new Option<string?>("--backup", "-b") { Description = "Same as the ID argument.", Hidden = true };
        var dryRun = new Option<bool>("--dry-run") { Description = "Run the preflight checks and print them with the plan; change nothing." };
        var terminate = new Option<bool>("--terminate-sessions")
        {
            Description = "Allow the swap to terminate the live database's sessions although no Registry:StopCommand stops the registry first. Without Registry:StopCommand the restore refuses otherwise.",
        };
        var to = new Option<string?>("--to") { Description = "Continuous mode: 'latest' (the default) or a UTC time such as 2026-11-22T02:17:00Z; the database returns to that moment, the config directories to the newest base set not after it." };
        var command = new Command("restore",
            "Restore a backup set: preflight (database, privileges, sessions, staging space, pg_restore version), download and verify, restore into a scratch database and staging directories, then stop the registry, swap them in (terminating any session left on the database) and start it again. A failure before the swap leaves the node as it was.")
            { id, backup, dryRun, terminate, to, json };
        command.Validators.Add(result =>
        {
            if (result.GetValue(id) is { } a && result.GetValue(backup) is { } b && a != b)
                result.AddError($"The backup is given twice, as '{a}' and with --backup '{b}': give it once.");
        });
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store | Needs.Database, async (ctx, ct) =>
        {
            if (ctx.Options.Database.Mode == RegistryDR.Continuous.DatabaseMode.Continuous)
                return await ContinuousCommands.RestoreAsync(ctx, parse.GetValue(to), parse.GetValue(id) ?? parse.GetValue(backup), parse.GetValue(dryRun), ct);
            if (parse.GetValue(to) is { } toValue)
                throw new ConfigurationException($"restore --to {toValue} needs Database:Mode Continuous (WAL archiving); in logical mode restore a set with --backup ID (`registry-dr list`).");
            var service = new RestoreService(ctx.Options, ctx.Store, ctx.LoggerFactory.CreateLogger<RestoreService>(), ctx.Time);
            var isDryRun = parse.GetValue(dryRun);
            // Resolve 'latest' once, so the total shown and the set restored are the same set.
            var plan = await service.PlanAsync(parse.GetValue(id) ?? parse.GetValue(backup), ct);
            var progress = TerminalProgress.For(ctx.Json || isDryRun);
            progress.Expect(plan.Bytes);
            // Agent:Region, as the agent's restore: over a store another region wrote last (a failback), the restore is a takeover.
            var result = await service.RestoreAsync(new RestoreRequest(plan.BackupId, isDryRun, TerminateSessions: parse.GetValue(terminate))
            {
                InstanceId = ctx.Options.Agent.InstanceId, Region = ctx.Options.Agent.Region,
            }, progress, ct);
            (progress as TerminalProgress)?.Done();
            var preflightPassed = result.Preflight?.Passed ?? true;
            if (ctx.Json)
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    result.Plan.BackupId,
                    recoveryPoint = result.Plan.BackupTime,
                    sizeBytes = result.Plan.Bytes,
                    dryRun = result.DryRun,
                    preflight = result.Preflight?.Checks,
                    steps = result.Plan.Steps,
                    elapsedSeconds = result.Elapsed.TotalSeconds,
                }, JsonOutput));
            else
            {
                // Before the plan: which newer sets were passed over is the first thing to know.
                foreach (var j in result.Plan.Skipped) Console.WriteLine($"Passed over (not restorable): {j.Describe()}");
                Console.WriteLine(result.DryRun
                    ? $"Plan for restoring backup {result.Plan.BackupId} (dry run: nothing was changed):"
                    : $"Restored backup {result.Plan.BackupId} in {result.Elapsed.TotalSeconds:F1} s:");
                Console.WriteLine($"  Recovery point {SetFormat.Time(result.Plan.BackupTime)}, {SetFormat.Bytes(result.Plan.Bytes)}");
                for (var i = 0; i < result.Plan.Steps.Count; i++) Console.WriteLine($"  {i + 1}. {result.Plan.Steps[i]}");
                if (result.Preflight is { } preflight)
                {
                    Console.WriteLine("Preflight:");
                    foreach (var c in preflight.Checks) Console.WriteLine($"  {(c.Passed ? "ok  " : "FAIL")}  {c.Name}: {c.Detail}");
                }
            }
            // The JSON above already carries the failed checks: stdout stays one document.
            if (!preflightPassed)
                return CliContext.Fail(json: false, ExitCodes.Failed, $"The restore of backup {result.Plan.BackupId} would not start:{Environment.NewLine}{result.Preflight!.Failures}");
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command BootstrapCommand()
    {
        var json = JsonOption();
        var command = new Command("bootstrap",
            "EC2 agent, run once at boot: restore the newest valid backup, start the registry, wait for health, then complete the launch lifecycle action and signal CloudFormation.") { json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store | Needs.Database, async (ctx, ct) =>
        {
            var agentOptions = ctx.Options.Agent;
            // The load balancer's health check must see "restoring" while the agent works, so the
            // monitoring endpoints are served by the agent too until the worker takes over.
            var metrics = new OperationMetrics(ctx.Time);
            await using var monitoring = ctx.Options.Monitoring.Enabled ? await MonitoringServer.StartAsync(ctx.Options, metrics, ctx.LoggerFactory, ct) : null;
            var agent = new BootstrapAgent(ctx.Options, ctx.Store,
                new InstanceMetadataClient(agentOptions.MetadataEndpoint),
                region => AwsQueryControlPlane.FromDefaultCredentials(region, agentOptions.AutoScalingEndpoint, agentOptions.CloudFormationEndpoint),
                ctx.LoggerFactory, ctx.Time, events: metrics);
            BootstrapResult result;
            try
            {
                result = await agent.RunAsync(ct);
            }
            catch (LifecycleActionNotCompletedException ex) when (ctx.Json)
            {
                Console.WriteLine(JsonSerializer.Serialize(ex.Result, JsonOutput));
                throw;
            }
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(result, JsonOutput));
            else
            {
                Console.WriteLine(result.Status == NodeStatus.FirstBoot
                    ? "Bootstrap complete: first boot with an empty registry (the store held no backup)."
                    : $"Bootstrap complete: restored backup {result.BackupId}.");
                if (result.SkippedBackups.Count > 0)
                    Console.WriteLine($"Newer backups failed verification and were skipped: {string.Join(", ", result.SkippedBackups)}");
                Console.WriteLine($"Lifecycle action: {result.Lifecycle}; CloudFormation signal: {result.Signal}.");
            }
            return ExitCodes.Success;
        }, openStore: (options, logger) => BackupStoreFactory.Open(options.Store, logger: logger,
            // The very first node initialises the empty store; a replacement node never does: an
            // empty, unmarked store there means Store:Url points at the wrong place.
            firstBoot: options.Agent.AllowFirstBoot,
            hint: options.Agent.AllowFirstBoot ? null
                : "If this is the very first deploy, set Agent:AllowFirstBoot=true (the template's AllowFirstBoot parameter) so that the first node initialises it; a replacement node never does."),
        onInvalidConfiguration: async (reason, loggers) =>
        {
            // The agent cannot run, but AWS can still hear it at once rather than at the hooks' timeouts.
            var logger = loggers.CreateLogger("registry-dr.bootstrap");
            var agent = UnstartableBootstrap.ReadAgentOptions(parse.GetValue(ConfigOption), logger);
            var (lifecycle, signal) = await UnstartableBootstrap.ReportAsync(agent, "invalid configuration: " + reason,
                new InstanceMetadataClient(agent.MetadataEndpoint),
                region => AwsQueryControlPlane.FromDefaultCredentials(region, agent.AutoScalingEndpoint, agent.CloudFormationEndpoint),
                TimeProvider.System, logger);
            Console.Error.WriteLine($"Reported to AWS: lifecycle action {lifecycle}, CloudFormation signal {signal}.");
        }));
        return command;
    }

    private static Command DrillCommand()
    {
        var json = JsonOption();
        var id = BackupArgument();
        var command = new Command("drill",
            "Rehearse a restore without touching the live registry: restore a set into a scratch database and directory, check the fingerprint and the archive, clean up, report. A set that passes is marked verified.") { id, json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store | Needs.Database, async (ctx, ct) =>
        {
            var catalog = new BackupCatalog(ctx.Store);
            var backupId = await catalog.ResolveAsync(parse.GetValue(id), ct);
            var progress = TerminalProgress.For(ctx.Json);
            progress.Expect((await catalog.ReadManifestAsync(backupId, ct)).TotalSize);
            var report = await new DrillService(ctx.Options, ctx.Store, ctx.LoggerFactory, ctx.Time).RunAsync(backupId, progress, ct);
            (progress as TerminalProgress)?.Done();
            if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(report, JsonOutput));
            else if (report.Succeeded)
                Console.WriteLine($"Drill of backup {report.BackupId} passed in {report.Elapsed.TotalSeconds:F1} s: {report.Tables} tables and {report.Rows} rows match the fingerprint; {report.ConfigFiles} config files extracted. Scratch copies removed.");
            else
                Console.Error.WriteLine($"Drill of backup {report.BackupId} FAILED: {report.Failure}");
            return report.Succeeded ? ExitCodes.Success : report.SetIsBad ? ExitCodes.VerificationFailed : ExitCodes.Failed;
        }));
        return command;
    }

    private static Command PruneCommand()
    {
        var json = JsonOption();
        var dryRun = new Option<bool>("--dry-run") { Description = "Print what would be deleted and why; delete nothing." };
        var command = new Command("prune",
            "Apply retention (Retention:KeepLast, KeepDailyDays, KeepWeeklyWeeks, IncompleteGrace). Never deletes the newest verified set, nor the only complete one.") { dryRun, json };
        command.SetAction((parse, _) => CliContext.RunAsync(parse, parse.GetValue(json), Needs.Store, async (ctx, ct) =>
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
        var command = new Command("worker", "Run the scheduled backup service (Schedule:Cron, every 15 minutes by default; daily drills; monitoring endpoints) until SIGTERM. Logs the schedule and the next backup and drill at start.");
        command.SetAction(async (parse, _) =>
        {
            RegistryDrOptions options;
            try
            {
                options = CliContext.Load(parse, Needs.Store | Needs.Database);
            }
            catch (ConfigurationException ex)
            {
                return CliContext.Fail(false, ExitCodes.InvalidConfiguration, ex.Message);
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
