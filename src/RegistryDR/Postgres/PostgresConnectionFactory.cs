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
            // A stall bound, not a total one: Npgsql applies it to each wait for the server's next
            // message (a query's answer, the next rows, the next CopyData of a block range), so a
            // COPY of any length is fine while bytes flow, and a server that stops sending is
            // given up on after Database:StallTimeout rather than waited for forever.
            CommandTimeout = StallSeconds,
            // After a cancellation (the operation failed elsewhere, or SIGTERM) wait this long for
            // the server to confirm, then break the connection: a dead server must not hold the
            // caller. Npgsql's default is 2 s; 5 s leaves room for a busy server.
            CancellationTimeout = 5000,
            // TCP keepalive, not Npgsql's KeepAlive query: the query can only run on an idle
            // connection, while the sessions that matter are busy in a COPY or hold the exported
            // snapshot for pg_dump. The kernel's probes find a peer that vanished (host down,
            // partition) within about 60 s + 9 × 10 s even while the session waits for an answer.
            KeepAlive = 0,
            TcpKeepAlive = true,
            TcpKeepAliveTime = 60,
            TcpKeepAliveInterval = 10,
            ApplicationName = "registry-dr",
        };
        return new NpgsqlConnection(builder.ConnectionString);
    }

    private int StallSeconds => Math.Max(1, (int)Math.Ceiling(_options.StallTimeout.TotalSeconds));

    /// <summary>"PostgreSQL at host:port", the peer as messages name it.</summary>
    public string Server => $"PostgreSQL at {_options.Host}:{_options.Port}";

    /// <summary>
    /// Whether <paramref name="ex"/> (or what it wraps) means the server went away or stopped
    /// answering mid-session: the connection closed or was reset, a read timed out, the server
    /// shut down (SQLSTATE class 57), or a tool said so in its stderr. Not: a refused query, nor
    /// a connection that could not be opened at all (<see cref="DatabaseUnavailableException"/>).
    /// </summary>
    public static bool IsConnectionLoss(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case DatabaseUnavailableException:
                    return false; // a connection that could not be opened: its message already says what to check
                case PostgresException pe:
                    return pe.SqlState.StartsWith("57P", StringComparison.Ordinal) || pe.SqlState.StartsWith("08", StringComparison.Ordinal);
                case NpgsqlException { InnerException: IOException or SocketException or TimeoutException or EndOfStreamException }:
                    return true;
                case NpgsqlException ne when ne.IsTransient && ne is not PostgresException:
                    return true;
                case Processes.ProcessFailedException pf when LostConnection(pf.StandardError):
                    return true;
            }
        }
        return false;
    }

    // What libpq's tools print when the server goes away under them.
    private static bool LostConnection(string stderr) =>
        stderr.Contains("server closed the connection unexpectedly", StringComparison.Ordinal)
        || stderr.Contains("could not receive data from server", StringComparison.Ordinal)
        || stderr.Contains("terminating connection due to", StringComparison.Ordinal)
        || stderr.Contains("the database system is shutting down", StringComparison.Ordinal)
        || stderr.Contains("no connection to the server", StringComparison.Ordinal);

    /// <summary>
    /// The sentence for a session the server dropped or stopped answering: it names the server,
    /// what was going on, and the underlying error. <paramref name="during"/> is e.g. "dump database".
    /// </summary>
    public string DescribeConnectionLoss(Exception ex, string during)
    {
        var timedOut = false;
        for (var e = ex; e is not null; e = e.InnerException)
            if (e is TimeoutException) timedOut = true;
        var detail = ex is Processes.ProcessFailedException ? ex.Message : ex.GetBaseException().Message;
        return timedOut
            ? $"{Server} did not answer within {_options.StallTimeout} (Database:StallTimeout) during {during}: {detail}"
            : $"{Server} closed the connection during {during}: {detail}";
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
