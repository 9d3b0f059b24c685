using System.ComponentModel.DataAnnotations;
using System.Reflection;
using Microsoft.Extensions.Options;
using RegistryDR.Stores;

namespace RegistryDR.Configuration;

/// <summary>
/// Checks the whole configuration before anything is touched. Every failure names the
/// configuration key (as it would be written in the JSON file or after <c>REGISTRYDR__</c>)
/// and what is wrong with it, so an operator can fix it without reading code.
/// </summary>
public sealed class RegistryDrOptionsValidator : IValidateOptions<RegistryDrOptions>
{
    public ValidateOptionsResult Validate(string? name, RegistryDrOptions options)
    {
        var errors = new List<string>();
        ValidateAnnotations(options.Database, "Database", errors);
        ValidateAnnotations(options.Store, "Store", errors);
        ValidateAnnotations(options.Restore, "Restore", errors);
        ValidateAnnotations(options.Backup, "Backup", errors);

        var db = options.Database;
        Require(db.Host, "Database:Host", errors);
        Require(db.Name, "Database:Name", errors);
        Require(db.User, "Database:User", errors);
        Require(db.MaintenanceDatabase, "Database:MaintenanceDatabase", errors);
        if (string.Equals(db.Name, db.MaintenanceDatabase, StringComparison.Ordinal))
            errors.Add($"Database:Name '{db.Name}' must differ from Database:MaintenanceDatabase: restore drops and recreates it while connected to the maintenance database.");
        // Database:PasswordFile is not checked here: list, verify and prune never connect, so a
        // missing password must not stop them (Postgres.PostgresConnectionFactory.PasswordProblem).
        if (db.PasswordFile is { Length: > 0 } pwFile && !Path.IsPathFullyQualified(pwFile))
            errors.Add($"Database:PasswordFile '{pwFile}' must be an absolute path.");
        if (db.BinDirectory is { Length: > 0 } bin && !Directory.Exists(bin))
            errors.Add($"Database:BinDirectory '{bin}' does not exist.");
        if (db.ConnectTimeout <= TimeSpan.Zero)
            errors.Add("Database:ConnectTimeout must be positive, e.g. \"00:00:15\".");

        var dirs = options.Config.EffectiveDirectories;
        for (var i = 0; i < dirs.Count; i++)
        {
            var d = dirs[i];
            if (string.IsNullOrWhiteSpace(d) || !Path.IsPathFullyQualified(d))
                errors.Add($"Config:Directories:{i} '{d}' must be an absolute path.");
            else if (Path.TrimEndingDirectorySeparator(Path.GetFullPath(d)) == "/")
                errors.Add($"Config:Directories:{i} must not be the root directory.");
        }
        var normalised = dirs.Where(d => Path.IsPathFullyQualified(d)).Select(d => Path.TrimEndingDirectorySeparator(Path.GetFullPath(d)) + "/").ToList();
        for (var i = 0; i < normalised.Count; i++)
            for (var j = 0; j < normalised.Count; j++)
                if (i != j && normalised[j].StartsWith(normalised[i], StringComparison.Ordinal))
                    errors.Add($"Config:Directories: '{normalised[j].TrimEnd('/')}' lies inside '{normalised[i].TrimEnd('/')}'; list each tree once.");
        for (var i = 0; i < options.Config.Exclude.Count; i++)
            if (string.IsNullOrWhiteSpace(options.Config.Exclude[i]))
                errors.Add($"Config:Exclude:{i} is empty.");

        var reg = options.Registry;
        if (reg.HealthUrl is { Length: > 0 } url &&
            (!Uri.TryCreate(url, UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https")))
            errors.Add($"Registry:HealthUrl '{url}' must be an absolute http:// or https:// URL.");
        if (reg.HealthTimeout <= TimeSpan.Zero)
            errors.Add("Registry:HealthTimeout must be positive, e.g. \"00:05:00\".");
        if (reg.CommandTimeout <= TimeSpan.Zero)
            errors.Add("Registry:CommandTimeout must be positive, e.g. \"00:02:00\".");
        if (reg.StopCommand.Any(string.IsNullOrEmpty) || reg.StartCommand.Any(string.IsNullOrEmpty))
            errors.Add("Registry:StopCommand and Registry:StartCommand are argv arrays and must not contain empty strings.");

        if (!StoreLocation.TryParse(options.Store.Url, out _, out var storeError))
            errors.Add($"Store:Url {storeError}");
        if (options.Store.ServiceUrl is { Length: > 0 } svc &&
            (!Uri.TryCreate(svc, UriKind.Absolute, out var s) || (s.Scheme != "http" && s.Scheme != "https")))
            errors.Add($"Store:ServiceUrl '{svc}' must be an absolute http:// or https:// URL.");
        if (options.Store.ServerSideEncryption != ServerSideEncryptionMode.Kms && !string.IsNullOrEmpty(options.Store.KmsKeyId))
            errors.Add("Store:KmsKeyId is set but Store:ServerSideEncryption is not 'Kms'.");

        if (!Quartz.CronExpression.TryParse(options.Schedule.Cron, out _))
            errors.Add($"Schedule:Cron '{options.Schedule.Cron}' is not a valid Quartz cron expression (six or seven fields, seconds first; e.g. \"0 0/15 * * * ?\" for every 15 minutes).");

        if (options.Schedule.DrillCron is { Length: > 0 } drill && !Quartz.CronExpression.TryParse(drill, out _))
            errors.Add($"Schedule:DrillCron '{drill}' is not a valid Quartz cron expression (empty disables drills).");

        if (options.Restore.StagingDirectory is { Length: > 0 } staging && !Path.IsPathFullyQualified(staging))
            errors.Add($"Restore:StagingDirectory '{staging}' must be an absolute path.");

        Retention.RetentionOptions.Validate(options.Retention, errors);
        Monitoring.MonitoringOptions.Validate(options.Monitoring, errors);
        AgentOptions.Validate(options.Agent, errors);
        Continuous.ContinuousOptions.Validate(options, errors);

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void Require(string? value, string key, List<string> errors)
    {
        if (string.IsNullOrWhiteSpace(value)) errors.Add($"{key} is required.");
    }

    private static void ValidateAnnotations(object section, string prefix, List<string> errors)
    {
        foreach (var property in section.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            var range = property.GetCustomAttribute<RangeAttribute>();
            if (range is null) continue;
            var value = property.GetValue(section);
            if (!range.IsValid(value))
                errors.Add($"{prefix}:{property.Name} is {value}; it must be between {range.Minimum} and {range.Maximum}.");
        }
    }
}
