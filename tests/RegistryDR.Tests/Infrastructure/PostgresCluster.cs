using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Npgsql;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// A throw-away PostgreSQL cluster (initdb + pg_ctl) in its own temp directory, listening on a free
/// TCP port on 127.0.0.1 only. Tests use a real server rather than a mock because the thing under
/// test is a backup/restore tool: only a real server shows whether pg_dump/pg_restore round-trips
/// sequences, owners, grants, enums, bytea and jsonb.
/// </summary>
/// <remarks>
/// Not thread-safe for Start/Stop: call <see cref="StopAsync"/> and <see cref="StartAgainAsync"/>
/// from one test at a time. Connections and database creation are safe to use concurrently.
/// </remarks>
internal sealed partial class PostgresCluster : IAsyncDisposable
{
    /// <summary>OS account that owns the data directory when the tests run as root.</summary>
    private const string ServiceOsUser = "postgres";

    private const string FallbackBinDirectory = "/usr/lib/postgresql/15/bin";

    /// <summary>Lets CI point at another PostgreSQL installation without code changes.</summary>
    private const string BinDirectoryEnvironmentVariable = "REGISTRYDR_TEST_PG_BINDIR";

    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(120);

    // Clusters still running when the test host exits (crashed test, forgotten dispose) would keep a
    // postmaster and a temp dir alive forever; this is the last-chance cleanup.
    private static readonly ConcurrentDictionary<PostgresCluster, byte> LiveClusters = new();

    private static readonly Lazy<Task<string>> InitdbLocale = new(DetectLocaleAsync);

    private readonly bool _runAsServiceUser;
    private bool _running;
    private bool _disposed;

    static PostgresCluster()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var cluster in LiveClusters.Keys)
            {
                cluster.EmergencyStop();
            }
        };
    }

    /// <summary>
    /// What a dedicated cluster needs beyond the defaults (continuous-mode tests): settings given with
    /// <c>-c</c> on every start (they win over postgresql.conf and postgresql.auto.conf, so a data
    /// directory restored from another cluster still runs with this node's settings), the
    /// postmaster's environment (archive_command inherits it), and a chosen superuser password
    /// (nodes restored from one another share their roles).
    /// </summary>
    internal sealed record ServerOptions
    {
        public IReadOnlyDictionary<string, string> Settings { get; init; } = new Dictionary<string, string>();
        public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();
        public string? Password { get; init; }
    }

    private ServerOptions _server = new();

    private PostgresCluster(string binDirectory, string rootDirectory, string password, bool runAsServiceUser)
    {
        BinDirectory = binDirectory;
        RootDirectory = rootDirectory;
        DataDirectory = Path.Combine(rootDirectory, "data");
        LogFile = Path.Combine(rootDirectory, "postgres.log");
        SuperUserPassword = password;
        _runAsServiceUser = runAsServiceUser;
    }

    public string Host => "127.0.0.1";

    public int Port { get; private set; }

    public string SuperUser => "postgres";

    public string SuperUserPassword { get; }

    /// <summary>Directory holding initdb, pg_ctl, pg_dump, pg_restore, psql of the running server's version.</summary>
    public string BinDirectory { get; }

    public string DataDirectory { get; }

    /// <summary>Temp directory holding the data directory, the server log and the Unix socket.</summary>
    public string RootDirectory { get; }

    public string LogFile { get; }

    public bool IsRunning => _running;

    /// <summary>initdb + first start; roughly 1-2 s with fsync disabled.</summary>
    /// <remarks>
    /// Every cluster gets its own initdb rather than a copy of a cached template directory: copies
    /// would share one system identifier, and PostgreSQL uses that identifier to reject WAL and base
    /// backups from a different cluster, which restore tests need to be able to observe.
    /// </remarks>
    public static Task<PostgresCluster> StartAsync() => StartAsync(new ServerOptions());

    /// <inheritdoc cref="StartAsync()"/>
    public static async Task<PostgresCluster> StartAsync(ServerOptions server)
    {
        var binDirectory = await LocateBinDirectoryAsync().ConfigureAwait(false);
        var runAsServiceUser = IsRoot();
        var root = Path.Combine(Path.GetTempPath(), "registrydr-pg-" + Guid.NewGuid().ToString("N")[..12]);

        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("The PostgreSQL test cluster needs Linux (initdb, pg_ctl, runuser).");
        }

        // 0700: the directory briefly holds the password file, and later the Unix socket.
        Directory.CreateDirectory(root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        var password = server.Password ?? RandomNumberGenerator.GetHexString(32, lowercase: true);
        var cluster = new PostgresCluster(binDirectory, root, password, runAsServiceUser) { _server = server };
        try
        {
            await cluster.InitDbAsync().ConfigureAwait(false);
            LiveClusters.TryAdd(cluster, 0);
            await cluster.StartOnFreePortAsync().ConfigureAwait(false);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Npgsql connection string for the superuser. Pooling is off so that stopping the
    /// server or dropping a database never leaves broken pooled connections behind.</summary>
    public string ConnectionString(string database = "postgres") =>
        ConnectionString(database, SuperUser, SuperUserPassword);

    /// <summary>Npgsql connection string for another login role (e.g. the registry's application role).</summary>
    public string ConnectionString(string database, string username, string password) =>
        new NpgsqlConnectionStringBuilder
        {
            Host = Host,
            Port = Port,
            Database = database,
            Username = username,
            Password = password,
            Pooling = false,
            Timeout = 15,
            CommandTimeout = 120,
            IncludeErrorDetail = true,
        }.ConnectionString;

    /// <summary>Creates an empty database with a unique name (or the given one) and returns its name.</summary>
    public async Task<string> CreateDatabaseAsync(string? name = null)
    {
        name ??= "regdr_" + Guid.NewGuid().ToString("N")[..16];
        ValidateDatabaseName(name);
        await ExecuteAsync($"CREATE DATABASE {QuoteIdentifier(name)}").ConfigureAwait(false);
        return name;
    }

    /// <summary>Drops a database, terminating any sessions still connected to it.</summary>
    public async Task DropDatabaseAsync(string name)
    {
        ValidateDatabaseName(name);
        await ExecuteAsync($"DROP DATABASE IF EXISTS {QuoteIdentifier(name)} WITH (FORCE)").ConfigureAwait(false);
    }

    /// <summary>Stops the server (fast shutdown: disconnects clients, no crash recovery on restart),
    /// so tests can simulate "database down".</summary>
    public async Task StopAsync()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_running)
        {
            return;
        }

        var result = await RunPgToolAsync("pg_ctl", ["-D", DataDirectory, "-m", "fast", "-w", "-t", "60", "stop"])
            .ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw Failure("pg_ctl stop", result);
        }

        _running = false;
    }

    /// <summary>Stops the server the way a crash would (<c>pg_ctl stop -m immediate</c>: every backend
    /// quits at once, no shutdown checkpoint); <see cref="StartAgainAsync"/> then runs crash recovery.</summary>
    public async Task CrashAsync()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_running)
        {
            return;
        }

        var result = await RunPgToolAsync("pg_ctl", ["-D", DataDirectory, "-m", "immediate", "-w", "-t", "60", "stop"])
            .ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw Failure("pg_ctl stop -m immediate", result);
        }

        _running = false;
    }

    /// <summary>Starts a stopped cluster again on the same port (connection strings stay valid).</summary>
    public async Task StartAgainAsync()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_running)
        {
            return;
        }

        var result = await PgCtlStartAsync(Port).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw Failure($"pg_ctl start (port {Port})", result);
        }

        _running = true;
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        try
        {
            if (_running)
            {
                var stop = await RunPgToolAsync("pg_ctl", ["-D", DataDirectory, "-m", "fast", "-w", "-t", "30", "stop"])
                    .ConfigureAwait(false);
                if (stop.ExitCode != 0)
                {
                    // Should never happen, but a leaked postmaster would hold the port and the
                    // directory: fall back to an immediate shutdown, then to killing our own postmaster.
                    var immediate = await RunPgToolAsync("pg_ctl", ["-D", DataDirectory, "-m", "immediate", "-w", "stop"])
                        .ConfigureAwait(false);
                    if (immediate.ExitCode != 0)
                    {
                        KillPostmaster();
                    }
                }

                _running = false;
            }
        }
        finally
        {
            LiveClusters.TryRemove(this, out _);
            DeleteRootDirectory();
        }
    }

    public override string ToString() => $"PostgreSQL at {Host}:{Port} (data {DataDirectory})";

    /// <summary>Last lines of the server log; included in every failure message.</summary>
    public string LogTail(int lines = 40)
    {
        try
        {
            if (!File.Exists(LogFile))
            {
                return "(no server log)";
            }

            var all = File.ReadAllLines(LogFile);
            return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
        }
        catch (IOException e)
        {
            return $"(could not read {LogFile}: {e.Message})";
        }
    }

    private async Task InitDbAsync()
    {
        var passwordFile = Path.Combine(RootDirectory, "pwfile");
        // The password goes through a 0600 file, never through argv (visible in ps / /proc).
        if (!OperatingSystem.IsWindows())
        {
            // Created 0600 from the start, so the password is never readable by others.
            await using var stream = new FileStream(passwordFile, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            });
            await using var writer = new StreamWriter(stream);
            await writer.WriteLineAsync(SuperUserPassword).ConfigureAwait(false);
        }

        if (_runAsServiceUser)
        {
            // initdb/postgres refuse to run as root, so the service account must own everything
            // it writes: the data directory (created by initdb), the log file and the socket.
            var chown = await RunAsync("chown", ["-R", ServiceOsUser + ":", RootDirectory], RootDirectory)
                .ConfigureAwait(false);
            if (chown.ExitCode != 0)
            {
                throw new InvalidOperationException($"chown of {RootDirectory} to {ServiceOsUser} failed: {chown.Output}");
            }
        }

        var locale = await InitdbLocale.Value.ConfigureAwait(false);
        var result = await RunPgToolAsync(
                "initdb",
                [
                    "-D", DataDirectory,
                    "--username=" + SuperUser,
                    "--pwfile=" + passwordFile,
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=" + locale,
                    // Skipping fsync of the new cluster saves most of initdb's time; a test cluster
                    // never has to survive an OS crash.
                    "--no-sync",
                    "--no-instructions",
                ])
            .ConfigureAwait(false);
        File.Delete(passwordFile);
        if (result.ExitCode != 0)
        {
            throw Failure("initdb", result);
        }

        // Settings that never change between restarts go into postgresql.conf (appending keeps the
        // file owned by the service user). Port, listen address and socket directory are passed on
        // the pg_ctl command line instead so a start can be retried on another port.
        var settings = new StringBuilder()
            .AppendLine()
            .AppendLine("# Added by RegistryDR.Tests: durability is irrelevant for a throw-away test cluster.")
            .AppendLine("fsync = off")
            .AppendLine("synchronous_commit = off")
            .AppendLine("shared_buffers = 32MB")
            .AppendLine("max_connections = 100")
            .AppendLine("log_min_messages = warning")
            .AppendLine("log_line_prefix = '%m [%p] %q%u@%d '")
            .ToString();
        await File.AppendAllTextAsync(Path.Combine(DataDirectory, "postgresql.conf"), settings).ConfigureAwait(false);
    }

    private async Task StartOnFreePortAsync()
    {
        const int attempts = 5;
        for (var attempt = 1; ; attempt++)
        {
            // Another process may grab the port between probing and binding; retrying on a fresh
            // port is cheaper and more reliable than any reservation scheme.
            var port = FindFreePort();
            var result = await PgCtlStartAsync(port).ConfigureAwait(false);
            if (result.ExitCode == 0)
            {
                Port = port;
                _running = true;
                return;
            }

            var log = LogTail();
            var portTaken = log.Contains("could not bind", StringComparison.OrdinalIgnoreCase)
                || log.Contains("Address already in use", StringComparison.OrdinalIgnoreCase)
                || log.Contains("could not create any TCP/IP sockets", StringComparison.OrdinalIgnoreCase);
            if (!portTaken || attempt == attempts)
            {
                throw Failure($"pg_ctl start (port {port}, attempt {attempt})", result);
            }
        }
    }

    private Task<ProcessResult> PgCtlStartAsync(int port) =>
        RunPgToolAsync("pg_ctl", ["-D", DataDirectory, "-l", LogFile, "-w", "-t", "60", "-o", ServerCommandLine(port), "start"], _server.Environment);

    // pg_ctl hands -o to /bin/sh, hence the quoting.
    private string ServerCommandLine(int port) => string.Join(
        ' ',
        new[] { "-c listen_addresses=127.0.0.1", $"-c port={port}", $"-c unix_socket_directories={ShellQuote(RootDirectory)}" }
            .Concat(_server.Settings.Select(kv => "-c " + ShellQuote(kv.Key + "=" + kv.Value))));

    /// <summary>
    /// A bash script (<c>script start</c> / <c>script stop</c>) that starts and stops this cluster exactly
    /// as the helper does (same port, settings, environment, user): what a node's
    /// Continuous:ServerStartCommand and ServerStopCommand would be. Written 0700.
    /// </summary>
    public string WriteControlScript(string path)
    {
        var exports = string.Concat(_server.Environment.Select(kv => $"export {kv.Key}={ShellQuote(kv.Value)}\n"));
        var run = _runAsServiceUser ? $"runuser -u {ServiceOsUser} -- " : "";
        var pgCtl = ShellQuote(Path.Combine(BinDirectory, "pg_ctl"));
        var script = "#!/bin/bash\nset -eu\n" + exports +
            "case \"$1\" in\n" +
            $"  start) exec {run}{pgCtl} -D {ShellQuote(DataDirectory)} -l {ShellQuote(LogFile)} -w -t 120 -o {ShellQuote(ServerCommandLine(Port))} start ;;\n" +
            $"  stop) exec {run}{pgCtl} -D {ShellQuote(DataDirectory)} -m fast -w -t 120 stop ;;\n" +
            "  *) echo \"usage: $0 start|stop\" >&2; exit 2 ;;\n" +
            "esac\n";
        File.WriteAllText(path, script);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    /// <summary>
    /// Simulates the node dying: SIGKILL to the postmaster and every process below it (backends,
    /// the archiver and the archive_command it is running), by pid. Returns once they are gone.
    /// The helper then counts the server as stopped.
    /// </summary>
    public async Task KillAsync()
    {
        var pidFile = Path.Combine(DataDirectory, "postmaster.pid");
        if (!File.Exists(pidFile) || !int.TryParse(File.ReadLines(pidFile).FirstOrDefault(), out var postmaster))
        {
            throw new InvalidOperationException($"{pidFile} names no postmaster to kill.");
        }

        var victims = Descendants(postmaster).Prepend(postmaster).ToList();
        foreach (var pid in victims)
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill();
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // Already gone.
            }
        }

        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (victims.Any(pid => Directory.Exists($"/proc/{pid}") && !IsZombie(pid)))
        {
            await Task.Delay(50, bound.Token).ConfigureAwait(false);
        }

        _running = false;
    }

    /// <summary>Marks the server as started by someone else (a restore's ServerStartCommand), so dispose stops it.</summary>
    public void AssumeRunning() => _running = true;

    private static IEnumerable<int> Descendants(int parent)
    {
        var children = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) == parent)
                {
                    children.Add(pid);
                }
            }
            catch (IOException)
            {
                // Exited while listing.
            }
        }

        return children.Concat(children.SelectMany(Descendants)).ToList();
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] == 'Z';
        }
        catch (IOException)
        {
            return true;
        }
    }

    private InvalidOperationException Failure(string what, ProcessResult result) =>
        new($"{what} failed with exit code {result.ExitCode} (data directory {DataDirectory}).\n"
            + $"--- tool output ---\n{result.Output}\n--- server log tail ({LogFile}) ---\n{LogTail()}");

    private async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString());
        await connection.OpenAsync().ConfigureAwait(false);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync().ConfigureAwait(false);
    }

    private Task<ProcessResult> RunPgToolAsync(string tool, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string>? environment = null)
    {
        var executable = Path.Combine(BinDirectory, tool);
        return _runAsServiceUser
            ? RunAsync("runuser", ["-u", ServiceOsUser, "--", executable, .. arguments], RootDirectory, environment)
            : RunAsync(executable, arguments, RootDirectory, environment);
    }

    private void EmergencyStop()
    {
        try
        {
            if (_running)
            {
                RunPgToolAsync("pg_ctl", ["-D", DataDirectory, "-m", "immediate", "-w", "-t", "10", "stop"])
                    .GetAwaiter().GetResult();
                _running = false;
            }

            DeleteRootDirectory();
        }
        catch (Exception)
        {
            // Best effort only: the process is exiting anyway.
        }
    }

    private void KillPostmaster()
    {
        var pidFile = Path.Combine(DataDirectory, "postmaster.pid");
        if (File.Exists(pidFile)
            && int.TryParse(File.ReadLines(pidFile).FirstOrDefault(), out var pid))
        {
            try
            {
                using var postmaster = Process.GetProcessById(pid);
                postmaster.Kill();
                postmaster.WaitForExit(10_000);
            }
            catch (ArgumentException)
            {
                // Already gone.
            }
        }
    }

    private void DeleteRootDirectory()
    {
        try
        {
            if (Directory.Exists(RootDirectory))
            {
                Directory.Delete(RootDirectory, recursive: true);
            }
        }
        catch (IOException)
        {
            // A straggling backend may still be writing; a leftover temp dir is harmless.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static void ValidateDatabaseName(string name)
    {
        if (!DatabaseNamePattern().IsMatch(name))
        {
            throw new ArgumentException($"'{name}' is not a plain lower-case database name.", nameof(name));
        }
    }

    private static string QuoteIdentifier(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";

    private static string ShellQuote(string value) => "'" + value.Replace("'", "'\\''") + "'";

    private static int FindFreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static bool IsRoot()
    {
        if (Environment.UserName == "root")
        {
            return true;
        }

        try
        {
            return geteuid() == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    private static async Task<string> LocateBinDirectoryAsync()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable(BinDirectoryEnvironmentVariable);
        if (!string.IsNullOrEmpty(fromEnvironment))
        {
            return HasServerBinaries(fromEnvironment)
                ? fromEnvironment
                : throw new InvalidOperationException(
                    $"{BinDirectoryEnvironmentVariable}={fromEnvironment} does not contain initdb and pg_ctl.");
        }

        try
        {
            var result = await RunAsync("pg_config", ["--bindir"], Path.GetTempPath()).ConfigureAwait(false);
            var directory = result.StandardOutput.Trim();
            // On Debian pg_config comes from libpq-dev and may belong to a client-only install;
            // only trust it when the server binaries are really there.
            if (result.ExitCode == 0 && HasServerBinaries(directory))
            {
                return directory;
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // pg_config not installed.
        }

        return HasServerBinaries(FallbackBinDirectory)
            ? FallbackBinDirectory
            : throw new InvalidOperationException(
                $"PostgreSQL server binaries not found (pg_config --bindir, {FallbackBinDirectory}); "
                + $"install postgresql-15 or set {BinDirectoryEnvironmentVariable}.");
    }

    private static bool HasServerBinaries(string directory) =>
        File.Exists(Path.Combine(directory, "initdb")) && File.Exists(Path.Combine(directory, "pg_ctl"));

    private static async Task<string> DetectLocaleAsync()
    {
        // C.UTF-8 gives byte-order (deterministic) collation with a UTF-8 ctype; plain C is the
        // fallback on systems without that locale (initdb would otherwise fail).
        try
        {
            var result = await RunAsync("locale", ["-a"], Path.GetTempPath()).ConfigureAwait(false);
            var available = result.StandardOutput
                .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (available.Any(l => l.Equals("C.UTF-8", StringComparison.OrdinalIgnoreCase)
                                   || l.Equals("C.utf8", StringComparison.OrdinalIgnoreCase)))
            {
                return "C.UTF-8";
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // No `locale` binary: be conservative.
        }

        return "C";
    }

    private static async Task<ProcessResult> RunAsync(string fileName, IReadOnlyList<string> arguments, string workingDirectory, IReadOnlyDictionary<string, string>? environment = null)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            // The service user must be able to enter the working directory (initdb/pg_ctl warn or
            // fail otherwise); the cluster's own temp directory always qualifies.
            WorkingDirectory = workingDirectory,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        // libpq/server environment variables of the developer's shell (PGDATA, PGPORT, PGHOST, ...)
        // must not leak into the test cluster.
        foreach (var key in startInfo.Environment.Keys.Where(k => k.StartsWith("PG", StringComparison.Ordinal)).ToList())
        {
            startInfo.Environment.Remove(key);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            startInfo.Environment[key] = value;
        }

        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        using var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (stdout)
                {
                    stdout.AppendLine(e.Data);
                }
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (stderr)
                {
                    stderr.AppendLine(e.Data);
                }
            }
        };

        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var timeout = new CancellationTokenSource(ToolTimeout);
        try
        {
            // Also waits for stdout/stderr EOF. pg_ctl points the postmaster's output at the log
            // file, so the long-lived server never holds our pipes open.
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Exited in the meantime.
            }

            throw new TimeoutException(
                $"{fileName} {string.Join(' ', arguments)} did not finish within {ToolTimeout}.\n{stdout}{stderr}");
        }

        string output, error;
        lock (stdout)
        {
            output = stdout.ToString();
        }

        lock (stderr)
        {
            error = stderr.ToString();
        }

        return new ProcessResult(process.ExitCode, output, error);
    }

    [DllImport("libc", SetLastError = false)]
    private static extern uint geteuid();

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$")]
    private static partial Regex DatabaseNamePattern();

    private sealed record ProcessResult(int ExitCode, string StandardOutput, string StandardError)
    {
        public string Output => (StandardOutput + StandardError).Trim();
    }
}
