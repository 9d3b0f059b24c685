using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace RegistryDR.Configuration;

/// <summary>
/// Builds and validates <see cref="RegistryDrOptions"/> from the usual .NET layering:
/// the JSON file, then <c>REGISTRYDR__Section__Key</c> environment variables.
/// </summary>
public static class RegistryDrConfiguration
{
    public const string EnvironmentPrefix = "REGISTRYDR__";

    /// <summary>The configuration sources, for hosts that want to add their own on top.</summary>
    public static IConfigurationBuilder AddRegistryDrSources(this IConfigurationBuilder builder, string? configPath)
    {
        var explicitPath = !string.IsNullOrEmpty(configPath);
        var path = explicitPath ? Path.GetFullPath(configPath!) : RegistryDrOptions.DefaultConfigPath;
        if (explicitPath && !File.Exists(path))
            throw new ConfigurationException($"Configuration file '{path}' does not exist (given with --config).");
        // The default file is optional so that `REGISTRYDR__…` variables alone can configure a node.
        builder.AddJsonFile(path, optional: !explicitPath, reloadOnChange: false);
        builder.AddEnvironmentVariables(EnvironmentPrefix);
        return builder;
    }

    /// <summary>Loads, binds and validates; throws <see cref="ConfigurationException"/> naming every bad key.</summary>
    public static RegistryDrOptions Load(string? configPath, IConfiguration? overrides = null)
    {
        IConfiguration configuration;
        try
        {
            var builder = new ConfigurationBuilder().AddRegistryDrSources(configPath);
            if (overrides is not null) builder.AddConfiguration(overrides);
            configuration = builder.Build();
        }
        catch (InvalidDataException ex)
        {
            throw new ConfigurationException($"Configuration file is not valid JSON: {ex.InnerException?.Message ?? ex.Message}", ex);
        }
        catch (FormatException ex)
        {
            throw new ConfigurationException($"Configuration file is not valid JSON: {ex.Message}", ex);
        }
        return Bind(configuration);
    }

    /// <summary>
    /// The configuration file says where the database password lives and how to reach the store;
    /// others reading it is worth a warning (returned, for the caller to log), not a refusal.
    /// </summary>
    public static string? PermissionWarning(string? configPath)
    {
        var path = string.IsNullOrEmpty(configPath) ? RegistryDrOptions.DefaultConfigPath : Path.GetFullPath(configPath);
        if (OperatingSystem.IsWindows() || !File.Exists(path)) return null;
        var mode = File.GetUnixFileMode(path);
        const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;
        return (mode & others) == 0 ? null
            : $"Configuration file {path} can be read or written by users other than its owner (mode {Convert.ToString((int)mode, 8)}); chmod 600 it.";
    }

    public static RegistryDrOptions Bind(IConfiguration configuration)
    {
        var options = new RegistryDrOptions();
        try
        {
            configuration.Bind(options, o => o.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidOperationException ex)
        {
            // The binder's message names the key and the value it could not convert, or the unknown key.
            throw new ConfigurationException($"Invalid configuration: {ex.Message}", ex);
        }
        Validate(options);
        return options;
    }

    public static void Validate(RegistryDrOptions options)
    {
        var result = new RegistryDrOptionsValidator().Validate(null, options);
        if (result.Failed)
            throw new ConfigurationException("Invalid configuration:" + Environment.NewLine + "  " +
                string.Join(Environment.NewLine + "  ", result.Failures ?? []));
    }
}

/// <summary>The configuration is unusable; the message says which key and why.</summary>
public sealed class ConfigurationException(string message, Exception? inner = null) : Exception(message, inner);
