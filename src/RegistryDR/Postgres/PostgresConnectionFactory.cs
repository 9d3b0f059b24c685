using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Npgsql;
using RegistryDR.Configuration;

namespace RegistryDR.Postgres;

/// <summary>
/// Connections to the metadata database server, and the environment its command-line tools
/// need. The password is read once from the root-only file or the environment and only ever
/// travels in a connection-string builder or a child's PGPASSWORD: never in argv, a log line
/// or an exception message.
/// </summary>
public sealed class PostgresConnectionFactory
{
    private readonly DatabaseOptions _options;
    private readonly string? _password;

    public PostgresConnectionFactory(DatabaseOptions options, ILogger? logger = null)
    {
        _options = options;
        _password = ReadPassword(options, logger);
    }

    public DatabaseOptions Options => _options;

    /// <summary>"host:port/database as user", for messages.</summary>
    public string Describe(string? database = null) => $"{_options.Host}:{_options.Port}/{database ?? _options.Name} as {_options.User}";

    internal static string? ReadPassword(DatabaseOptions options, ILogger? logger)
    {
        if (!string.IsNullOrEmpty(options.PasswordFile))
        {
            if (!OperatingSystem.IsWindows())
            {
                var mode = File.GetUnixFileMode(options.PasswordFile);
                if ((mode & (UnixFileMode.GroupRead | UnixFileMode.OtherRead | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
                    logger?.LogWarning("Database:PasswordFile {PasswordFile} can be read by users other than its owner; chmod 600 it.", options.PasswordFile);
            }
            using var reader = new StreamReader(options.PasswordFile);
            return reader.ReadLine() ?? "";
        }
        var fromEnv = Environment.GetEnvironmentVariable(options.PasswordEnvironmentVariable);
        return string.IsNullOrEmpty(fromEnv) ? null : fromEnv;
    }

    public NpgsqlConnection Create(string? database = null)
    {
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = _options.Host,
            Port = _options.Port,
            Database = database ?? _options.Name,
            Username = _options.User,
            Password = _password,
            Pooling = false,
            Timeout = (int)Math.Ceiling(_options.ConnectTimeout.TotalSeconds),
            CommandTimeout = 0,
            ApplicationName = "registry-dr",
        };
        return new NpgsqlConnection(builder.ConnectionString);
    }

    /// <summary>Opens a connection, turning Npgsql's failures into one that says what to fix.</summary>
    public async Task<NpgsqlConnection> OpenAsync(string? database = null, CancellationToken cancellationToken = default)
    {
        var connection = Create(database);
        try
        {
            await connection.OpenAsync(cancellationToken);
            return connection;
        }
        catch (Exception ex) when (ex is NpgsqlException or SocketException or TimeoutException && !cancellationToken.IsCancellationRequested)
        {
            await connection.DisposeAsync();
            throw Explain(ex, database);
        }
    }

    internal DatabaseUnavailableException Explain(Exception ex, string? database)
    {
        var where = Describe(database);
        return ex switch
        {
            PostgresException { SqlState: "28P01" } => new($"Password authentication failed for {where}. Check Database:PasswordFile or ${_options.PasswordEnvironmentVariable}.", ex),
            PostgresException { SqlState: "28000" } pe => new($"The server refused {where}: {pe.MessageText}. Check pg_hba.conf and Database:User.", ex),
            PostgresException { SqlState: "3D000" } => new($"Database '{database ?? _options.Name}' does not exist on {_options.Host}:{_options.Port}. Check Database:Name.", ex),
            PostgresException pe => new($"PostgreSQL refused {where}: {pe.SqlState} {pe.MessageText}", ex),
            _ => new($"Could not connect to PostgreSQL at {_options.Host}:{_options.Port}: {ex.GetBaseException().Message}. Is the server running, and are Database:Host and Database:Port right?", ex),
        };
    }

    /// <summary>
    /// The environment for pg_dump, pg_dumpall, pg_restore and psql. Everything is passed here
    /// rather than in argv so that neither the password nor the connection string shows in <c>ps</c>.
    /// </summary>
    public IReadOnlyDictionary<string, string?> ToolEnvironment(string? database = null)
    {
        var env = new Dictionary<string, string?>
        {
            ["PGHOST"] = _options.Host,
            ["PGPORT"] = _options.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["PGUSER"] = _options.User,
            ["PGDATABASE"] = database ?? _options.Name,
            ["PGCONNECT_TIMEOUT"] = ((int)Math.Ceiling(_options.ConnectTimeout.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["PGAPPNAME"] = "registry-dr",
            // Whatever the operator's shell had must not redirect the tools elsewhere.
            ["PGSERVICE"] = null,
            ["PGSERVICEFILE"] = null,
            ["PGOPTIONS"] = null,
            ["PGPASSWORD"] = _password,
        };
        if (_password is null) env.Remove("PGPASSWORD");
        return env;
    }
}

/// <summary>The database could not be reached or refused us; the message says what to check.</summary>
public sealed class DatabaseUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
