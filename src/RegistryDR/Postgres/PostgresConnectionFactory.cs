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
    // Which of SessionLimits.Candidates the server accepts: the newest until the server refuses
    // it, then remembered for the process, so that a refused start-up (a FATAL line in the
    // server's log) happens once per server, not once per operation.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> AcceptedLimits = new(StringComparer.Ordinal);
    private string ServerKey => $"{_options.Host}:{_options.Port}";
    private int _limits;
    private bool LimitsKnown => AcceptedLimits.ContainsKey(ServerKey);

    public PostgresConnectionFactory(DatabaseOptions options, ILogger? logger = null)
    {
        _options = options;
        _password = ReadPassword(options, logger);
        _limits = AcceptedLimits.GetValueOrDefault(ServerKey);
    }

    public DatabaseOptions Options => _options;

    /// <summary>"host:port/database as user", for messages.</summary>
    public string Describe(string? database = null) => $"{_options.Host}:{_options.Port}/{database ?? _options.Name} as {_options.User}";

    /// <summary>
    /// Why the password cannot be read (the file named by Database:PasswordFile is missing or
    /// unreadable), or null. Checked only by what connects to the database: backup, restore,
    /// drill, worker, bootstrap and status's database check; list, verify and prune never need it.
    /// </summary>
    public static string? PasswordProblem(DatabaseOptions options)
    {
        if (string.IsNullOrEmpty(options.PasswordFile)) return null;
        try
        {
            using var reader = new StreamReader(new FileStream(options.PasswordFile, FileMode.Open, FileAccess.Read));
            // An empty first line would reach the server as "no password" and be blamed on host and port.
            return string.IsNullOrEmpty(reader.ReadLine())
                ? $"Database:PasswordFile '{options.PasswordFile}' is empty: put the database password on its first line."
                : null;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return $"Database:PasswordFile '{options.PasswordFile}' does not exist: create it with the database password on its first line (install -m 600), or correct the path.";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"Database:PasswordFile '{options.PasswordFile}' cannot be read: {ex.Message}";
        }
    }

    /// <summary>Where the password came from, for messages: never the password itself.</summary>
    internal string PasswordSource => !string.IsNullOrEmpty(_options.PasswordFile)
        ? $"Database:PasswordFile {_options.PasswordFile}"
        : _password is not null ? $"the password in ${_options.PasswordEnvironmentVariable}" : "no password given";

    internal static string? ReadPassword(DatabaseOptions options, ILogger? logger)
    {
        if (PasswordProblem(options) is { } problem) throw new ConfigurationException(problem);
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

    /// <summary>
    /// Whether the next backup could connect: the password can be read, and Database:Name answers
    /// <c>SELECT 1</c> within Database:ConnectTimeout. Returns null, or what is wrong in the words
    /// of <see cref="OpenAsync"/> (wrong password, no password, server down at host:port...).
    /// </summary>
    public static async Task<string?> ProbeAsync(DatabaseOptions options, ILogger? logger, CancellationToken cancellationToken)
    {
        if (PasswordProblem(options) is { } problem) return problem;
        var factory = new PostgresConnectionFactory(options, logger);
        try
        {
            await using var connection = await factory.OpenAsync(null, cancellationToken);
            await using var command = connection.CreateCommand();
            command.CommandText = "SELECT 1";
            command.CommandTimeout = (int)Math.Ceiling(options.ConnectTimeout.TotalSeconds);
            await command.ExecuteScalarAsync(cancellationToken);
            return null;
        }
        catch (DatabaseUnavailableException ex)
        {
            return ex.Message;
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException && !cancellationToken.IsCancellationRequested)
        {
            return factory.Explain(ex, null).Message;
        }
    }

    /// <summary>
    /// An unopened connection. Every session RegistryDR opens has the server-side limits that
    /// could end it part-way turned off at start-up (<see cref="SessionLimits"/>).
    /// </summary>
    public NpgsqlConnection Create(string? database = null) => new(Builder(database).ConnectionString);

    private NpgsqlConnectionStringBuilder Builder(string? database) =>
        new()
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
            Options = SessionLimits.Options(_limits),
        };

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
    public Task<NpgsqlConnection> OpenAsync(string? database = null, CancellationToken cancellationToken = default) =>
        OpenAsync(Builder(database), database, cancellationToken);

    /// <summary>
    /// Opens a connection to <paramref name="database"/> that exchanges text in the database's own
    /// encoding, one .NET char per byte (ISO-8859-1), when that encoding is not UTF8: text that has
    /// no UTF8 form (Latin-1 bytes in SQL_ASCII, user-defined characters of EUC_JP) then travels
    /// unchanged both ways. For a UTF8 database it is an ordinary connection.
    /// </summary>
    public async Task<NpgsqlConnection> OpenInDatabaseEncodingAsync(string? database, CancellationToken cancellationToken)
    {
        var connection = await OpenAsync(database, cancellationToken);
        var encoding = connection.PostgresParameters.TryGetValue("server_encoding", out var e) ? e : "UTF8";
        if (IsUtf8(encoding)) return connection;
        await connection.DisposeAsync();
        var builder = Builder(database);
        builder.ClientEncoding = encoding;
        builder.Encoding = "ISO-8859-1";
        return await OpenAsync(builder, database, cancellationToken);
    }

    internal static bool IsUtf8(string encoding) => encoding.Equals("UTF8", StringComparison.OrdinalIgnoreCase) || encoding.Equals("UNICODE", StringComparison.OrdinalIgnoreCase);

    private async Task<NpgsqlConnection> OpenAsync(NpgsqlConnectionStringBuilder builder, string? database, CancellationToken cancellationToken)
    {
        var limits = _limits;
        while (true)
        {
            builder.Options = SessionLimits.Options(limits);
            var connection = new NpgsqlConnection(builder.ConnectionString);
            try
            {
                await connection.OpenAsync(cancellationToken);
                AcceptedLimits[ServerKey] = _limits = limits;
                return connection;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UndefinedObject && limits < SessionLimits.Candidates.Length - 1)
            {
                // The server does not know one of the limits (only a setting name can be unknown
                // at start-up): try the next older set, skipping those that name it.
                await connection.DisposeAsync();
                var next = Array.FindIndex(SessionLimits.Candidates, set => !set.Any(name => ex.MessageText.Contains('"' + name + '"', StringComparison.Ordinal)));
                limits = next > limits ? next : limits + 1;
            }
            catch (Exception ex) when (ex is NpgsqlException or SocketException or TimeoutException && !cancellationToken.IsCancellationRequested)
            {
                await connection.DisposeAsync();
                throw Explain(ex, database);
            }
            catch
            {
                await connection.DisposeAsync();
                throw;
            }
        }
    }

    internal DatabaseUnavailableException Explain(Exception ex, string? database)
    {
        var where = Describe(database);
        return ex switch
        {
            PostgresException { SqlState: "28P01" } => new($"password authentication failed for user \"{_options.User}\" on {_options.Host}:{_options.Port} ({PasswordSource}): the password is wrong for that user. Check Database:PasswordFile (or ${_options.PasswordEnvironmentVariable}) and Database:User.", ex),
            NpgsqlException when _password is null && ex.Message.Contains("password", StringComparison.OrdinalIgnoreCase) =>
                new($"{_options.Host}:{_options.Port} asks for a password for user \"{_options.User}\" and none was given: set Database:PasswordFile (a file whose first line is the password, chmod 600) or the ${_options.PasswordEnvironmentVariable} environment variable.", ex),
            PostgresException { SqlState: "28000" } pe => new($"The server refused {where}: {pe.MessageText}. Check pg_hba.conf and Database:User.", ex),
            PostgresException { SqlState: "3D000" } => new($"Database '{database ?? _options.Name}' does not exist on {_options.Host}:{_options.Port}. Check Database:Name.", ex),
            PostgresException pe => new($"PostgreSQL refused {where}: {pe.SqlState} {pe.MessageText}", ex),
            _ => new($"Could not connect to PostgreSQL at {_options.Host}:{_options.Port}: {ex.GetBaseException().Message}. Is the server running, and are Database:Host and Database:Port right?", ex),
        };
    }

    /// <summary>
    /// The environment for pg_dump, pg_dumpall, pg_restore and psql. Everything is passed here
    /// rather than in argv so that neither the password nor the connection string shows in <c>ps</c>.
    /// PGOPTIONS turns off the server-side session limits (<see cref="SessionLimits"/>): those every
    /// server knows, and the newer ones once a connection has shown the server has them.
    /// </summary>
    /// <summary>
    /// <see cref="ToolEnvironment"/> once the server's limits are known: connects first if no
    /// connection has yet shown which limits the server has, so that PGOPTIONS turns them all off.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, string?>> ToolEnvironmentAsync(string? database, CancellationToken cancellationToken)
    {
        if (!LimitsKnown) await (await OpenAsync(database, cancellationToken)).DisposeAsync();
        return ToolEnvironment(database);
    }

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
            ["PGOPTIONS"] = SessionLimits.Options(LimitsKnown ? AcceptedLimits[ServerKey] : SessionLimits.Candidates.Length - 1),
            // The tools then talk the database's own encoding (their default), whatever the shell had.
            ["PGCLIENTENCODING"] = null,
            ["PGPASSWORD"] = _password,
        };
        if (_password is null) env.Remove("PGPASSWORD");
        return env;
    }
}

/// <summary>The database could not be reached or refused us; the message says what to check.</summary>
public sealed class DatabaseUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
