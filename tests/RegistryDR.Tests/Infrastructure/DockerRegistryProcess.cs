using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// A real container registry node for end-to-end tests: the Debian <c>docker-registry</c> 2.8
/// (<c>github.com/docker/distribution</c>) with its <c>s3</c> storage driver pointed at a
/// <see cref="CephS3Server"/> bucket, listening on plain HTTP on 127.0.0.1. Two processes with
/// the same bucket and root directory serve the same images, which is how a test replaces a node.
/// </summary>
/// <example>
/// <code>
/// var s3 = await TestEnvironment.S3Async();
/// await s3.CreateBucketAsync(bucket);
/// var port = DockerRegistryProcess.FreePort();
/// var config = DockerRegistryProcess.WriteConfig(Path.Combine(dir, "config.yml"), port, s3, bucket);
/// await using var registry = await DockerRegistryProcess.StartAsync(config, port);
/// var digest = await Skopeo.PushAsync(layout, "v1", registry.HostPort, "team/app");
/// </code>
/// </example>
/// <remarks>
/// The registry's environment loses every <c>AWS_*</c> variable (2.8.2 panics at start-up when
/// <c>AWS_CA_BUNDLE</c> is set, and the others could point the S3 client elsewhere) and every
/// <c>REGISTRY_*</c> variable (distribution reads those as overrides of the configuration file).
/// </remarks>
internal sealed class DockerRegistryProcess : IAsyncDisposable
{
    public const string RegistryPath = "/usr/bin/docker-registry";

    /// <summary>File name of the log written next to the configuration.</summary>
    public const string LogFileName = "registry.log";

    /// <summary>File name of the script <see cref="WriteControlScript"/> writes.</summary>
    public const string ControlScriptName = "registry-ctl";

    private static readonly TimeSpan DefaultStartTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StopGracePeriod = TimeSpan.FromSeconds(10);

    // A short timeout: the registry answers /v2/ in a few milliseconds or not at all.
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    // Registries still running when the test host exits (crashed test, forgotten dispose) would
    // keep a port and a process alive; this is the last-chance cleanup.
    private static readonly ConcurrentDictionary<DockerRegistryProcess, byte> Live = new();

    private readonly Process _process;
    private int _stopped;

    static DockerRegistryProcess()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var registry in Live.Keys)
            {
                try
                {
                    registry._process.Kill();
                }
                catch (InvalidOperationException)
                {
                    // Already exited.
                }
            }
        };
    }

    private DockerRegistryProcess(Process process, string configPath, int port, string logPath)
    {
        _process = process;
        ConfigPath = configPath;
        Port = port;
        LogPath = logPath;
        Pid = process.Id;
    }

    public int Port { get; }

    /// <summary><c>127.0.0.1:PORT</c>, as skopeo wants it.</summary>
    public string HostPort => $"127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)}";

    /// <summary><c>http://127.0.0.1:PORT</c>.</summary>
    public string BaseUrl => $"http://{HostPort}";

    public string ConfigPath { get; }

    /// <summary>The registry's stdout and stderr (<see cref="LogFileName"/> next to the configuration).</summary>
    public string LogPath { get; }

    /// <summary>The docker-registry process id; null once stopped.</summary>
    public int? Pid { get; private set; }

    public bool HasExited => _process.HasExited;

    /// <summary>A TCP port on 127.0.0.1 that was free a moment ago.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>
    /// Writes a docker-registry configuration: storage in <paramref name="bucket"/> of
    /// <paramref name="s3"/> under <paramref name="rootDirectory"/>, no redirects to S3 (clients
    /// talk to the registry only), deletes enabled, HTTP on 127.0.0.1:<paramref name="port"/>.
    /// The file holds the S3 secret key, so it is created mode 0600. Returns <paramref name="path"/>.
    /// </summary>
    /// <remarks>
    /// <c>http.secret</c> is derived from the bucket and root directory: every node writing the same
    /// storage gets the same one, as distribution requires for nodes sharing storage (upload
    /// state tokens are signed with it), and no warning about a generated secret is logged.
    /// </remarks>
    public static string WriteConfig(string path, int port, CephS3Server s3, string bucket, string rootDirectory = "/registry")
    {
        ArgumentNullException.ThrowIfNull(s3);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentException.ThrowIfNullOrEmpty(bucket);
        ArgumentException.ThrowIfNullOrEmpty(rootDirectory);

        var secret = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            Encoding.UTF8.GetBytes($"registrydr-test-http-secret|{bucket}|{rootDirectory}")));
        var yaml = $"""
            # docker-registry (distribution 2.8) configuration written by RegistryDR's tests.
            version: 0.1
            log:
              level: info
              formatter: text
              fields:
                service: registry
            storage:
              s3:
                accesskey: {Quote(s3.AccessKey)}
                secretkey: {Quote(s3.SecretKey)}
                region: {Quote(s3.Region)}
                regionendpoint: {Quote(s3.Endpoint)}
                bucket: {Quote(bucket)}
                rootdirectory: {Quote(rootDirectory)}
                secure: false
                v4auth: true
                chunksize: 5242880
              redirect:
                disable: true
              delete:
                enabled: true
              cache:
                blobdescriptor: inmemory
              maintenance:
                uploadpurging:
                  enabled: false
            http:
              addr: 127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}
              secret: {secret}
              headers:
                X-Content-Type-Options: [nosniff]
            health:
              storagedriver:
                enabled: true
                interval: 10s
                threshold: 3

            """;

        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        // Created 0600 from the start: the file holds the S3 secret key.
        using (var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        using (var writer = new StreamWriter(stream, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false)))
        {
            writer.Write(yaml.ReplaceLineEndings("\n"));
        }

        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return path;
    }

    /// <summary>
    /// Starts <c>docker-registry serve CONFIG</c> and waits until <c>GET /v2/</c> answers 200.
    /// </summary>
    /// <param name="port">The port in the configuration's <c>http.addr</c>.</param>
    /// <exception cref="TimeoutException">Not serving within 30 s; the message has the log tail.</exception>
    /// <exception cref="InvalidOperationException">The registry exited; the message has the log tail.</exception>
    public static async Task<DockerRegistryProcess> StartAsync(string configPath, int port, CancellationToken cancellationToken = default)
    {
        var registry = Start(configPath, port);
        try
        {
            await registry.WaitUntilServingAsync(DefaultStartTimeout, cancellationToken).ConfigureAwait(false);
            return registry;
        }
        catch
        {
            await registry.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Starts <c>docker-registry serve CONFIG</c> and returns at once, without waiting for it to
    /// serve (see <see cref="WaitUntilServingAsync"/>). The log goes to <see cref="LogFileName"/>
    /// next to the configuration (appended to).
    /// </summary>
    public static DockerRegistryProcess Start(string configPath, int port) => StartWith(RegistryPath, configPath, port);

    /// <summary>
    /// As <see cref="Start"/>, running <paramref name="program"/> <c>serve CONFIG</c> instead of the
    /// registry itself: a wrapper that sets the registry's <c>REGISTRY_*</c> overrides (a systemd
    /// unit's EnvironmentFile=, say) and execs it, so <see cref="Pid"/> is still the registry's.
    /// </summary>
    public static DockerRegistryProcess StartWith(string program, string configPath, int port)
    {
        var config = Path.GetFullPath(configPath);
        if (!File.Exists(config))
        {
            throw new FileNotFoundException("docker-registry configuration not found.", config);
        }

        var log = Path.Combine(Path.GetDirectoryName(config)!, LogFileName);

        // sh opens the log and then becomes docker-registry (exec), so Pid is the registry's own
        // pid and its output goes straight to the file, with no pipe for the test host to drain.
        var startInfo = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            WorkingDirectory = Path.GetDirectoryName(config)!,
        };
        startInfo.ArgumentList.Add("-c");
        startInfo.ArgumentList.Add("""exec "$0" serve "$1" >>"$2" 2>&1 </dev/null""");
        startInfo.ArgumentList.Add(program);
        startInfo.ArgumentList.Add(config);
        startInfo.ArgumentList.Add(log);
        CleanEnvironment(startInfo.Environment);

        var process = new Process { StartInfo = startInfo };
        try
        {
            process.Start();
            process.StandardInput.Close();
        }
        catch
        {
            process.Dispose();
            throw;
        }

        var registry = new DockerRegistryProcess(process, config, port, log);
        Live.TryAdd(registry, 0);
        return registry;
    }

    /// <summary>
    /// Polls <c>GET /v2/</c> until it answers 200. Throws with the log tail when the process
    /// exits or <paramref name="timeout"/> (default 30 s) passes.
    /// </summary>
    public async Task WaitUntilServingAsync(TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var limit = timeout ?? DefaultStartTimeout;
        var stopwatch = Stopwatch.StartNew();
        while (true)
        {
            if (await IsServingAsync(Port, cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            if (_process.HasExited)
            {
                throw new InvalidOperationException(
                    $"docker-registry ({ConfigPath}) exited with code {_process.ExitCode} before serving on port {Port}.{Environment.NewLine}{LogTail()}");
            }

            if (stopwatch.Elapsed > limit)
            {
                throw new TimeoutException(
                    $"docker-registry ({ConfigPath}, pid {Pid}) did not answer {BaseUrl}/v2/ with 200 within {limit}.{Environment.NewLine}{LogTail()}");
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// True when <c>GET http://127.0.0.1:PORT/v2/</c> answers 200 (the registry's API version
    /// check, which the storage health check turns into 503 once S3 keeps failing).
    /// </summary>
    public static async Task<bool> IsServingAsync(int port, CancellationToken cancellationToken = default)
    {
        try
        {
            using var response = await Http.GetAsync(
                new Uri($"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}/v2/"),
                HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            return response.StatusCode == HttpStatusCode.OK;
        }
        catch (HttpRequestException)
        {
            return false;
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // HttpClient's own timeout.
            return false;
        }
    }

    /// <summary>
    /// Stops the registry: SIGTERM (it drains and exits at once), then SIGKILL after 10 s.
    /// Idempotent.
    /// </summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        try
        {
            if (!_process.HasExited)
            {
                _ = kill(_process.Id, Sigterm);
                using var grace = new CancellationTokenSource(StopGracePeriod);
                try
                {
                    await _process.WaitForExitAsync(grace.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    try
                    {
                        _process.Kill();
                    }
                    catch (InvalidOperationException)
                    {
                        // Exited in between.
                    }

                    await _process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            Pid = null;
            Live.TryRemove(this, out _);
            _process.Dispose();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    /// <summary>The last <paramref name="lines"/> lines of the registry's log.</summary>
    public string LogTail(int lines = 20) => ReadLogTail(LogPath, lines);

    public override string ToString() => $"docker-registry {BaseUrl} (pid {Pid?.ToString(CultureInfo.InvariantCulture) ?? "none"}, {ConfigPath})";

    /// <summary>
    /// Writes an executable bash script <see cref="ControlScriptName"/> into
    /// <paramref name="directory"/> that starts, stops and reports on a docker-registry serving
    /// <paramref name="configPath"/>; this is what <c>Registry:StartCommand</c> and
    /// <c>Registry:StopCommand</c> run (<c>["DIR/registry-ctl", "start"]</c>). Returns its path.
    /// </summary>
    /// <remarks>
    /// <list type="bullet">
    /// <item><c>start</c>: starts the registry in the background (nohup, new session, no
    /// <c>AWS_*</c>/<c>REGISTRY_*</c> variables, output appended to <c>registry.log</c>, stdin from
    /// /dev/null so the caller's pipes are not held open), writes <c>registry.pid</c> next to the
    /// script and returns after a 0.3 s check that it did not exit at once; exit 0 if already running.</item>
    /// <item><c>stop</c>: SIGTERM to the pid in <c>registry.pid</c>, up to 10 s, then SIGKILL;
    /// removes the pid file; exit 0 if not running.</item>
    /// <item><c>status</c>: exit 0 and "running (pid N)", or exit 3 and "stopped".</item>
    /// </list>
    /// A pid file whose process is gone, is a zombie or runs something other than this
    /// configuration counts as "not running". Commands are serialised with flock on <c>registry.lock</c>.
    /// </remarks>
    public static string WriteControlScript(string directory, string configPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var dir = Directory.CreateDirectory(directory).FullName;
        var config = Path.GetFullPath(configPath);
        var script = Path.Combine(dir, ControlScriptName);
        var text = $$"""
            #!/usr/bin/env bash
            # registry-ctl - start, stop or query one docker-registry node.
            # Written by RegistryDR's tests (DockerRegistryProcess.WriteControlScript).
            #
            # Usage: registry-ctl start|stop|status
            #   start   start docker-registry in the background and return (exit 0 if already running)
            #   stop    SIGTERM, up to 10 s, then SIGKILL (exit 0 if not running)
            #   status  exit 0 if running, 3 if not
            set -euo pipefail

            readonly REGISTRY_BIN={{ShellQuote(RegistryPath)}}
            readonly CONFIG={{ShellQuote(config)}}
            readonly PID_FILE={{ShellQuote(Path.Combine(dir, "registry.pid"))}}
            readonly LOG_FILE={{ShellQuote(Path.Combine(dir, LogFileName))}}
            readonly LOCK_FILE={{ShellQuote(Path.Combine(dir, "registry.lock"))}}
            readonly STOP_TIMEOUT_TENTHS=100

            # alive PID: the process exists and is not a zombie (PID 1 in a container may never reap it).
            alive() {
              local state
              [[ -r /proc/$1/stat ]] || return 1
              state=$(sed -e 's/^.*) //' -e 's/ .*$//' "/proc/$1/stat" 2>/dev/null) || return 1
              [[ -n $state && $state != Z && $state != X ]]
            }

            # running: sets pid and succeeds when the pid file names a live process serving CONFIG.
            pid=
            running() {
              pid=
              [[ -s $PID_FILE ]] || return 1
              pid=$(<"$PID_FILE")
              [[ $pid =~ ^[0-9]+$ ]] || return 1
              alive "$pid" || return 1
              # Guard against a recycled pid: the command line must name our configuration.
              tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$CONFIG"
            }

            start() {
              if running; then
                echo "docker-registry already running (pid $pid)"
                return 0
              fi
              rm -f -- "$PID_FILE"
              [[ -r $CONFIG ]] || { echo "registry-ctl: cannot read $CONFIG" >&2; return 1; }
              (
                # docker-registry 2.8 panics when AWS_CA_BUNDLE is set; other AWS_* could redirect
                # its S3 client, and REGISTRY_* override the configuration file.
                while IFS= read -r name; do
                  case $name in AWS_* | REGISTRY_*) unset "$name" ;; esac
                done < <(compgen -e)
                cd /
                exec nohup setsid "$REGISTRY_BIN" serve "$CONFIG" </dev/null >>"$LOG_FILE" 2>&1 9>&-
              ) &
              pid=$!
              echo "$pid" >"$PID_FILE"
              sleep 0.3
              if ! alive "$pid"; then
                rm -f -- "$PID_FILE"
                echo "registry-ctl: docker-registry exited at once; last lines of $LOG_FILE:" >&2
                tail -n 20 -- "$LOG_FILE" >&2 || true
                return 1
              fi
              echo "docker-registry started (pid $pid, log $LOG_FILE)"
            }

            stop() {
              if ! running; then
                rm -f -- "$PID_FILE"
                echo "docker-registry not running"
                return 0
              fi
              kill -TERM "$pid" 2>/dev/null || true
              local i
              for ((i = 0; i < STOP_TIMEOUT_TENTHS; i++)); do
                alive "$pid" || break
                sleep 0.1
              done
              if alive "$pid"; then
                echo "registry-ctl: pid $pid ignored SIGTERM for 10 s; sending SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
                for ((i = 0; i < 50; i++)); do
                  alive "$pid" || break
                  sleep 0.1
                done
              fi
              rm -f -- "$PID_FILE"
              echo "docker-registry stopped (pid $pid)"
            }

            status() {
              if running; then
                echo "running (pid $pid)"
                return 0
              fi
              echo "stopped"
              return 3
            }

            main() {
              if (($# != 1)); then
                echo "usage: $0 start|stop|status" >&2
                return 2
              fi
              exec 9>"$LOCK_FILE"
              flock -w 30 9 || { echo "registry-ctl: another registry-ctl holds $LOCK_FILE" >&2; return 1; }
              case $1 in
                start) start ;;
                stop) stop ;;
                status) status ;;
                *)
                  echo "usage: $0 start|stop|status" >&2
                  return 2
                  ;;
              esac
            }

            main "$@"

            """;
        File.WriteAllText(script, text.ReplaceLineEndings("\n"));
        File.SetUnixFileMode(script,
            UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
            UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        return script;
    }

    /// <summary>Removes the variables docker-registry must not see (see the class remarks).</summary>
    private static void CleanEnvironment(IDictionary<string, string?> environment)
    {
        foreach (var name in environment.Keys.ToList())
        {
            if (name.StartsWith("AWS_", StringComparison.Ordinal) || name.StartsWith("REGISTRY_", StringComparison.Ordinal))
            {
                environment.Remove(name);
            }
        }
    }

    private static string ReadLogTail(string path, int lines)
    {
        try
        {
            var all = File.ReadAllLines(path);
            return $"Last {Math.Min(lines, all.Length)} lines of {path}:{Environment.NewLine}" +
                string.Join(Environment.NewLine, all.TakeLast(lines));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"({path} unreadable: {e.Message})";
        }
    }

    /// <summary>A YAML double-quoted scalar.</summary>
    private static string Quote(string value) =>
        "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";

    private static string ShellQuote(string value) => "'" + value.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private const int Sigterm = 15;

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
}
