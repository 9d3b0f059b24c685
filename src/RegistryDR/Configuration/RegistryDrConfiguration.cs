using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.EnvironmentVariables;
using Microsoft.Extensions.Configuration.Json;
using RegistryDR.Configuration.Internal;

namespace RegistryDR.Configuration;

/// <summary>
/// Builds and validates <see cref="RegistryDrOptions"/> from the usual .NET layering:
/// the JSON file, then <c>REGISTRYDR__Section__Key</c> environment variables.
/// </summary>
public static partial class RegistryDrConfiguration
{
    public const string EnvironmentPrefix = "REGISTRYDR__";

    /// <summary>The configuration sources, for hosts that want to add their own on top.</summary>
    public static IConfigurationBuilder AddRegistryDrSources(this IConfigurationBuilder builder, string? configPath)
    {
        var explicitPath = !string.IsNullOrEmpty(configPath);
        var path = explicitPath ? Path.GetFullPath(configPath!) : RegistryDrOptions.DefaultConfigPath;
        if (explicitPath && !File.Exists(path))
            throw new ConfigurationException($"Configuration file '{path}' does not exist (given with --config).");
        // Optional here: Load decides whether a node may run on environment variables alone.
        builder.AddJsonFile(path, optional: !explicitPath, reloadOnChange: false);
        builder.AddEnvironmentVariables(EnvironmentPrefix);
        return builder;
    }

    /// <summary>
    /// Loads, reads and validates; throws <see cref="ConfigurationException"/> listing every
    /// problem at once, each naming its key as it was written (<c>Section:Key</c> with the file,
    /// line and column, or the <c>REGISTRYDR__Section__Key</c> variable) and the form it must take.
    /// With no <paramref name="configPath"/> the default file must exist unless
    /// <c>REGISTRYDR__</c> variables (or <paramref name="overrides"/>) configure the node: running
    /// silently on defaults would back up to a directory nobody chose.
    /// </summary>
    public static RegistryDrOptions Load(string? configPath, IConfiguration? overrides = null)
    {
        var explicitPath = !string.IsNullOrEmpty(configPath);
        var path = explicitPath ? Path.GetFullPath(configPath!) : RegistryDrOptions.DefaultConfigPath;
        JsonConfigurationFile? file = null;
        if (File.Exists(path))
            file = JsonConfigurationFile.Read(path);
        else if (explicitPath)
            throw new ConfigurationException($"Configuration file '{path}' does not exist (given with --config).");
        else if (overrides is null && !EnvironmentConfigures())
            throw new ConfigurationException(NoConfigurationMessage(path));

        IConfigurationRoot configuration;
        try
        {
            var builder = new ConfigurationBuilder().AddRegistryDrSources(configPath);
            if (overrides is not null) builder.AddConfiguration(overrides);
            configuration = builder.Build();
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException)
        {
            // JsonConfigurationFile has already refused what it knows to be invalid; this is the provider's own word.
            throw new ConfigurationException($"Invalid configuration:{Environment.NewLine}  {path}: {ex.InnerException?.Message ?? ex.Message}", ex);
        }
        return Bind(configuration, file);
    }

    /// <summary>What to do when there is no configuration at all.</summary>
    public static string NoConfigurationMessage(string path) =>
        $"No configuration: {path} does not exist, and no {EnvironmentPrefix}Section__Key environment variable is set. " +
        $"Create it (mode 0600; every setting and an example are in docs/configuration.md), for example:{Environment.NewLine}" +
        $"  install -d -m 0700 {Path.GetDirectoryName(path)}{Environment.NewLine}" +
        $"  printf '%s\\n' '{{ \"Database\": {{ \"PasswordFile\": \"/etc/registry-dr/db-password\" }}, \"Store\": {{ \"Url\": \"file:///var/backups/registry-dr\" }} }}' > {path}{Environment.NewLine}" +
        $"  chmod 600 {path}{Environment.NewLine}" +
        $"or name another file with --config PATH, or configure with {EnvironmentPrefix}Section__Key environment variables.";

    private static bool EnvironmentConfigures() =>
        Environment.GetEnvironmentVariables().Keys.Cast<string>().Any(k => k.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// The configuration file says where the database password lives and how to reach the store
    /// (it holds no secret itself: the password is in <c>Database:PasswordFile</c>); anyone but its
    /// owner writing it, or users outside its group reading it, is worth a warning (returned, for
    /// the caller to log), not a refusal. Its group reading it is not: in continuous mode the
    /// PostgreSQL server's user runs <c>wal-push</c> and reads it through its group (0640, docs/configuration.md).
    /// </summary>
    public static string? PermissionWarning(string? configPath)
    {
        var path = string.IsNullOrEmpty(configPath) ? RegistryDrOptions.DefaultConfigPath : Path.GetFullPath(configPath);
        if (OperatingSystem.IsWindows() || !File.Exists(path)) return null;
        var mode = File.GetUnixFileMode(path);
        const UnixFileMode others = UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;
        return (mode & others) == 0 ? null
            : $"Configuration file {path} can be written by users other than its owner, or read by users outside its group (mode {Convert.ToString((int)mode, 8)}); " +
              "chmod 600 it (640 when its group must read it: the PostgreSQL server's group in continuous mode).";
    }

    /// <summary>Reads and validates an already built configuration (see <see cref="Load"/> for the messages).</summary>
    public static RegistryDrOptions Bind(IConfiguration configuration) => Bind(configuration, null);

    private static RegistryDrOptions Bind(IConfiguration configuration, JsonConfigurationFile? file)
    {
        var keys = new KeySources(configuration, file);
        var options = new RegistryDrOptions();
        var problems = OptionsReader.Read(configuration, options, keys.Name)
            .Select(p => WithLocation(p.Message, keys.Location(p.Key)))
            .ToList();
        // Values that did not parse kept their defaults, so the checks below still see every other problem.
        var result = new RegistryDrOptionsValidator().Validate(null, options);
        if (result.Failed) problems.AddRange((result.Failures ?? []).Select(keys.Rewrite));
        if (problems.Count > 0)
            throw new ConfigurationException("Invalid configuration:" + Environment.NewLine + "  " + string.Join(Environment.NewLine + "  ", problems));
        return options;
    }

    public static void Validate(RegistryDrOptions options)
    {
        var result = new RegistryDrOptionsValidator().Validate(null, options);
        if (result.Failed)
            throw new ConfigurationException("Invalid configuration:" + Environment.NewLine + "  " +
                string.Join(Environment.NewLine + "  ", result.Failures ?? []));
    }

    private static string WithLocation(string message, string location) =>
        location.Length == 0 ? message
        : message.EndsWith('.') ? message[..^1] + location + "." : message + location;

    /// <summary>Which source each key came from, to name it as the operator wrote it.</summary>
    private sealed partial class KeySources(IConfiguration configuration, JsonConfigurationFile? file)
    {
        private readonly IReadOnlyList<IConfigurationProvider> _providers = (configuration as IConfigurationRoot)?.Providers.ToList() ?? [];

        private IConfigurationProvider? SourceOf(string key)
        {
            for (var i = _providers.Count - 1; i >= 0; i--)
            {
                var p = _providers[i];
                if (p.TryGet(key, out _) || p.GetChildKeys([], key).Any()) return p;
            }
            return null;
        }

        /// <summary><c>Section:Key</c>, or the environment variable that set it.</summary>
        public string Name(string key)
        {
            if (SourceOf(key) is not EnvironmentVariablesConfigurationProvider) return key;
            var variable = EnvironmentPrefix + key.Replace(":", "__", StringComparison.Ordinal);
            // Name the variable exactly as it is spelled in the environment.
            return Environment.GetEnvironmentVariables().Keys.Cast<string>()
                .FirstOrDefault(k => string.Equals(k, variable, StringComparison.OrdinalIgnoreCase)) ?? variable;
        }

        /// <summary>" (FILE line L, column C)" for a key in the configuration file, else "".</summary>
        public string Location(string key)
        {
            if (file is null || SourceOf(key) is not JsonConfigurationProvider) return "";
            return file.TryLocate(key, out var line, out var column) ? $" ({file.Path} line {line}, column {column})" : $" (in {file.Path})";
        }

        /// <summary>A validator message starts with the key it is about; name that key as it was written.</summary>
        public string Rewrite(string message)
        {
            var match = LeadingKey().Match(message);
            if (!match.Success || SourceOf(match.Value) is null) return message;
            return WithLocation(Name(match.Value) + message[match.Length..], Location(match.Value));
        }

        [GeneratedRegex(@"^[A-Za-z][A-Za-z0-9]*(?::[A-Za-z0-9]+)+")]
        private static partial Regex LeadingKey();
    }
}

/// <summary>The configuration is unusable; the message says which key and why.</summary>
public sealed class ConfigurationException(string message, Exception? inner = null) : Exception(message, inner);
