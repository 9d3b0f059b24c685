using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of an S3 server, for proving that
/// transfers survive throttling, server errors and broken connections.
/// </summary>
/// <remarks>
/// It forwards bytes unchanged (so the SigV4 signature over the Host header, which names the
/// proxy, still verifies) except for one header: it asks both sides for <c>Connection: close</c>,
/// so every request has a connection of its own, a response ends where the upstream closes, and
/// neither .NET nor the SDK can quietly replay a request on a pooled connection.
/// Each request is classified (<see cref="ProxiedRequest.Kind"/>: UploadPart, GetObject, …),
/// logged, and checked against the rules added with <see cref="Inject"/>.
/// </remarks>
/// <example>
/// <code>
/// await using var proxy = FaultProxy.Start(s3.Endpoint);
/// var rule = proxy.Inject(r => r.Kind == "UploadPart", Fault.SlowDown, skip: 1, times: 2); // the 2nd and 3rd part requests
/// proxy.Inject(r => r.Kind == "GetObject" &amp;&amp; r.Key == "x/dump", Fault.CutBody(8 &lt;&lt; 20));   // the next GET of x/dump
/// </code>
/// </example>
internal sealed class FaultProxy : IAsyncDisposable
{
    private static readonly byte[] HeadEnd = "\r\n\r\n"u8.ToArray();
    private readonly TcpListener _listener;
    private readonly string _upstreamHost;
    private readonly int _upstreamPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<Socket, byte> _sockets = new();
    private readonly ConcurrentDictionary<Task, byte> _handlers = new();
    private readonly List<FaultRule> _rules = [];
    private readonly List<ProxiedRequest> _requests = [];
    private readonly Task _acceptLoop;

    private FaultProxy(string upstream)
    {
        var uri = new Uri(upstream);
        _upstreamHost = uri.Host;
        _upstreamPort = uri.Port;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Endpoint = $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        _acceptLoop = AcceptLoopAsync();
    }

    /// <summary>Starts a proxy forwarding to <paramref name="upstreamEndpoint"/> (e.g. <c>http://127.0.0.1:40123</c>).</summary>
    public static FaultProxy Start(string upstreamEndpoint) => new(upstreamEndpoint);

    /// <summary>The proxy's own endpoint, for <c>Store:ServiceUrl</c>.</summary>
    public string Endpoint { get; }

    /// <summary>
    /// Applies <paramref name="fault"/> to the matching requests number <paramref name="skip"/>+1
    /// to <paramref name="skip"/>+<paramref name="times"/> (counted from now, retries included).
    /// Rules are checked in the order added and the first one that fires wins; every matching
    /// request counts for every rule.
    /// </summary>
    public FaultRule Inject(Func<ProxiedRequest, bool> match, Fault fault, int skip = 0, int times = 1)
    {
        var rule = new FaultRule(match, fault, skip, times);
        lock (_rules) _rules.Add(rule);
        return rule;
    }

    /// <summary>Removes every rule: from now on everything is forwarded untouched.</summary>
    public void ClearFaults()
    {
        lock (_rules) _rules.Clear();
    }

    /// <summary>Every request so far, in arrival order.</summary>
    public IReadOnlyList<ProxiedRequest> Requests
    {
        get { lock (_requests) return _requests.ToList(); }
    }

    /// <summary>How many requests of a kind (<c>UploadPart</c>, <c>GetObject</c>, …) arrived, faulted or not.</summary>
    public int Count(string kind) => Requests.Count(r => r.Kind == kind);

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            var handler = Task.Run(() => HandleAsync(client));
            _handlers.TryAdd(handler, 0);
            _ = handler.ContinueWith(t => _handlers.TryRemove(t, out _), TaskScheduler.Default);
        }
    }

    private async Task HandleAsync(Socket client)
    {
        _sockets.TryAdd(client, 0);
        Socket? upstream = null;
        try
        {
            client.NoDelay = true;
            var fromClient = new NetworkStream(client, ownsSocket: false);
            var (head, leftover) = await ReadHeadAsync(fromClient, _stop.Token);
            if (head is null) return;
            var request = ProxiedRequest.Parse(head);
            lock (_requests) _requests.Add(request);
            var fault = Decide(request);
            request.Fault = fault;

            switch (fault?.Kind)
            {
                case FaultKind.Respond:
                    await RespondAsync(client, fromClient, request, leftover, fault);
                    return;
                case FaultKind.Reset:
                    Reset(client);
                    return;
            }

            upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            _sockets.TryAdd(upstream, 0);
            await upstream.ConnectAsync(_upstreamHost, _upstreamPort, _stop.Token);
            var toUpstream = new NetworkStream(upstream, ownsSocket: false);
            await toUpstream.WriteAsync(WithConnectionClose(head), _stop.Token);
            if (leftover.Length > 0) await toUpstream.WriteAsync(leftover, _stop.Token);
            // The rest of the request body (after a 100 Continue, perhaps) flows on its own.
            var requestPump = PumpAsync(fromClient, toUpstream);

            // Interim responses (100 Continue) go straight through; the final one is the one faults apply to.
            byte[]? responseHead;
            byte[] bodyStart;
            while (true)
            {
                (responseHead, bodyStart) = await ReadHeadAsync(toUpstream, _stop.Token);
                if (responseHead is null) return; // upstream closed without answering: so does the proxy
                var status = StatusOf(responseHead);
                if (status is >= 100 and < 200)
                {
                    await fromClient.WriteAsync(responseHead, _stop.Token);
                    if (bodyStart.Length > 0) throw new InvalidDataException("unexpected bytes after an interim response");
                    continue;
                }
                request.Status = status;
                break;
            }
            var bodyLength = request.Method == "HEAD" || request.Status is 204 or 304 ? 0 : ContentLength(responseHead);

            if (fault?.Kind == FaultKind.ResetAfterForwarding)
            {
                // The server did the work; the client never hears of it.
                await CopyBodyAsync(new MemoryStream(bodyStart), toUpstream, Stream.Null, bodyLength, long.MaxValue, _ => { });
                Reset(client);
                return;
            }

            await fromClient.WriteAsync(WithConnectionClose(responseHead), _stop.Token);
            var limit = fault?.Kind is FaultKind.CutBody or FaultKind.Stall ? fault.AfterBytes : long.MaxValue;
            await CopyBodyAsync(new MemoryStream(bodyStart), toUpstream, fromClient, bodyLength, limit, n => request.AddResponseBytes(n));
            switch (fault?.Kind)
            {
                case FaultKind.CutBody when fault.ResetOnCut:
                    Reset(client);
                    return;
                case FaultKind.CutBody:
                    client.Shutdown(SocketShutdown.Send); // a clean end, short of Content-Length
                    break;
                case FaultKind.Stall:
                    // Silence, with the connection open, until the client gives up on it.
                    await requestPump.WaitAsync(_stop.Token);
                    return;
                default:
                    client.Shutdown(SocketShutdown.Send);
                    break;
            }
            // The pump is the one reading from the client: wait for it to see the client close,
            // so our close is not a reset that eats the end of the answer.
            try { await requestPump.WaitAsync(TimeSpan.FromSeconds(5), _stop.Token); } catch (TimeoutException) { }
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidDataException or OperationCanceledException)
        {
            // The client or the server went away mid-way: the connection just ends.
        }
        finally
        {
            Close(client);
            if (upstream is not null) Close(upstream);
        }
    }

    private FaultRule? DecideRule(ProxiedRequest request)
    {
        lock (_rules)
        {
            FaultRule? fired = null;
            foreach (var rule in _rules)
            {
                if (!rule.Match(request)) continue;
                rule.Seen++;
                if (fired is null && rule.Seen > rule.Skip && rule.Fired < rule.Times)
                {
                    rule.Fired++;
                    fired = rule;
                }
            }
            return fired;
        }
    }

    private Fault? Decide(ProxiedRequest request) => DecideRule(request)?.Fault;

    private async Task RespondAsync(Socket client, NetworkStream fromClient, ProxiedRequest request, byte[] leftover, Fault fault)
    {
        // Without Expect: 100-continue the client sends its body regardless; take it all first,
        // or closing with unread bytes would reset the connection and lose the answer.
        if (!request.Headers.TryGetValue("Expect", out var expect) || !expect.Contains("100-continue", StringComparison.OrdinalIgnoreCase))
        {
            var remaining = (request.Headers.TryGetValue("Content-Length", out var cl) && long.TryParse(cl, out var n) ? n : 0) - leftover.Length;
            await CopyBodyAsync(new MemoryStream(), fromClient, Stream.Null, Math.Max(remaining, 0), long.MaxValue, _ => { });
        }
        var body = Encoding.UTF8.GetBytes(
            $"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{fault.Code}</Code><Message>{fault.Message}</Message>" +
            $"<Resource>{request.Path}</Resource><RequestId>fault-proxy-{request.Sequence}</RequestId><HostId>fault-proxy</HostId></Error>");
        var head = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 {fault.Status} {(fault.Status == 503 ? "Service Unavailable" : fault.Status == 500 ? "Internal Server Error" : "Error")}\r\n" +
            $"Content-Type: application/xml\r\nContent-Length: {body.Length}\r\nx-amz-request-id: fault-proxy-{request.Sequence}\r\nConnection: close\r\n\r\n");
        request.Status = fault.Status;
        await fromClient.WriteAsync(head, _stop.Token);
        await fromClient.WriteAsync(body, _stop.Token);
        client.Shutdown(SocketShutdown.Send);
        await DrainAsync(fromClient);
    }

    /// <summary>Copies a body: what was read with the head first, then the stream, up to its length (or its end) or the cut.</summary>
    private async Task CopyBodyAsync(Stream start, Stream source, Stream destination, long length, long cutAfter, Action<long> counted)
    {
        var buffer = new byte[81920];
        long copied = 0;
        var limit = Math.Min(length, cutAfter);
        while (copied < limit)
        {
            var want = (int)Math.Min(buffer.Length, limit - copied);
            var n = await start.ReadAsync(buffer.AsMemory(0, want), _stop.Token);
            if (n == 0) n = await source.ReadAsync(buffer.AsMemory(0, want), _stop.Token);
            if (n == 0) break;
            await destination.WriteAsync(buffer.AsMemory(0, n), _stop.Token);
            copied += n;
            counted(n);
        }
    }

    private async Task PumpAsync(Stream from, Stream to)
    {
        try
        {
            await from.CopyToAsync(to, _stop.Token);
        }
        catch (Exception)
        {
            // Either side closing ends the pump; the response side decides what happens next.
        }
    }

    /// <summary>Reads until the client closes (at most a few seconds), so our close is not a reset that eats the answer.</summary>
    private async Task DrainAsync(Stream stream)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        var buffer = new byte[8192];
        try
        {
            while (await stream.ReadAsync(buffer, timeout.Token) > 0) { }
        }
        catch (Exception)
        {
            // Gone or slow: either way we are done with it.
        }
    }

    private static async Task<(byte[]? Head, byte[] Leftover)> ReadHeadAsync(Stream stream, CancellationToken cancellationToken)
    {
        var data = new MemoryStream();
        var buffer = new byte[8192];
        while (true)
        {
            var n = await stream.ReadAsync(buffer, cancellationToken);
            if (n == 0) return (null, []);
            data.Write(buffer, 0, n);
            var bytes = data.GetBuffer().AsSpan(0, (int)data.Length);
            var end = bytes.IndexOf(HeadEnd);
            if (end >= 0)
            {
                end += HeadEnd.Length;
                return (bytes[..end].ToArray(), bytes[end..].ToArray());
            }
            if (data.Length > 1 << 20) throw new InvalidDataException("HTTP head larger than 1 MiB");
        }
    }

    private static byte[] WithConnectionClose(byte[] head)
    {
        var lines = Encoding.Latin1.GetString(head, 0, head.Length - 4).Split("\r\n");
        var kept = lines.Where((l, i) => i == 0 || !(l.StartsWith("Connection:", StringComparison.OrdinalIgnoreCase) || l.StartsWith("Keep-Alive:", StringComparison.OrdinalIgnoreCase)));
        return Encoding.Latin1.GetBytes(string.Join("\r\n", kept) + "\r\nConnection: close\r\n\r\n");
    }

    private static int StatusOf(byte[] head)
    {
        var line = Encoding.Latin1.GetString(head).Split("\r\n")[0].Split(' ');
        return line.Length > 1 && int.TryParse(line[1], out var status) ? status : throw new InvalidDataException("bad status line");
    }

    /// <summary>Content-Length, or "until the connection closes" for chunked or unsized bodies (the upstream closes after one response).</summary>
    private static long ContentLength(byte[] head)
    {
        foreach (var line in Encoding.Latin1.GetString(head).Split("\r\n"))
            if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase) && long.TryParse(line["Content-Length:".Length..].Trim(), out var n))
                return n;
        return long.MaxValue;
    }

    private static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0); // close with RST, not FIN
            socket.Close();
        }
        catch (Exception)
        {
            // Already gone.
        }
    }

    private void Close(Socket socket)
    {
        _sockets.TryRemove(socket, out _);
        try { socket.Dispose(); } catch (Exception) { }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        _listener.Stop();
        foreach (var socket in _sockets.Keys) Close(socket);
        try { await _acceptLoop; } catch (Exception) { }
        try { await Task.WhenAll(_handlers.Keys).WaitAsync(TimeSpan.FromSeconds(10)); } catch (Exception) { }
        _stop.Dispose();
    }
}

/// <summary>One request the proxy saw, with what it did to it.</summary>
internal sealed class ProxiedRequest
{
    private static int s_sequence;
    private long _responseBytes;

    private ProxiedRequest(string method, string path, string query, IReadOnlyDictionary<string, string> headers)
    {
        Sequence = Interlocked.Increment(ref s_sequence);
        Method = method;
        Path = path;
        Query = query;
        Headers = headers;
        var segments = path.TrimStart('/').Split('/', 2);
        Bucket = Uri.UnescapeDataString(segments[0]);
        Key = segments.Length > 1 && segments[1].Length > 0 ? Uri.UnescapeDataString(segments[1]) : null;
        Kind = Classify(method, Key, QueryNames(query));
    }

    public int Sequence { get; }
    public string Method { get; }
    /// <summary>The raw path, <c>/bucket/key</c> (path-style addressing).</summary>
    public string Path { get; }
    /// <summary>The raw query, without '?'.</summary>
    public string Query { get; }
    public IReadOnlyDictionary<string, string> Headers { get; }
    public string Bucket { get; }
    /// <summary>The object key, unescaped; null for a request on the bucket.</summary>
    public string? Key { get; }
    /// <summary>The S3 operation: PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, GetObject, HeadObject, DeleteObject, ListObjects, ListMultipartUploads, ListParts, …</summary>
    public string Kind { get; }
    /// <summary>The fault applied, or null when it was forwarded untouched.</summary>
    public Fault? Fault { get; internal set; }
    /// <summary>The status the client was sent (or would have been: the upstream's, for ResetAfterForwarding); 0 when none.</summary>
    public int Status { get; internal set; }
    /// <summary>Bytes of the final response's body relayed to the client.</summary>
    public long ResponseBytes => Interlocked.Read(ref _responseBytes);

    internal void AddResponseBytes(long n) => Interlocked.Add(ref _responseBytes, n);

    /// <summary>A query parameter's value ("" when present without one), or null.</summary>
    public string? QueryValue(string name)
    {
        foreach (var pair in Query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=');
            var key = Uri.UnescapeDataString(eq < 0 ? pair : pair[..eq]);
            if (key == name) return eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..]);
        }
        return null;
    }

    public override string ToString() => $"#{Sequence} {Method} {Path}{(Query.Length > 0 ? "?" + Query : "")} [{Kind}] → {Status}{(Fault is null ? "" : " (" + Fault + ")")}, {ResponseBytes} body bytes";

    internal static ProxiedRequest Parse(byte[] head)
    {
        var lines = Encoding.Latin1.GetString(head).Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        var parts = lines[0].Split(' ');
        if (parts.Length != 3) throw new InvalidDataException("bad request line: " + lines[0]);
        var target = parts[1];
        var q = target.IndexOf('?');
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':');
            if (colon > 0) headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
        }
        return new ProxiedRequest(parts[0], q < 0 ? target : target[..q], q < 0 ? "" : target[(q + 1)..], headers);
    }

    private static HashSet<string> QueryNames(string query) =>
        query.Split('&', StringSplitOptions.RemoveEmptyEntries).Select(p => Uri.UnescapeDataString(p.Split('=')[0])).ToHashSet();

    private static string Classify(string method, string? key, HashSet<string> query) => (method, key is null) switch
    {
        ("PUT", true) => "CreateBucket",
        ("PUT", false) => query.Contains("uploadId") ? "UploadPart" : "PutObject",
        ("POST", false) when query.Contains("uploads") => "CreateMultipartUpload",
        ("POST", false) when query.Contains("uploadId") => "CompleteMultipartUpload",
        ("POST", true) when query.Contains("delete") => "DeleteObjects",
        ("DELETE", false) => query.Contains("uploadId") ? "AbortMultipartUpload" : "DeleteObject",
        ("DELETE", true) => "DeleteBucket",
        ("GET", true) => query.Contains("uploads") ? "ListMultipartUploads" : "ListObjects",
        ("GET", false) => query.Contains("uploadId") ? "ListParts" : "GetObject",
        ("HEAD", false) => "HeadObject",
        ("HEAD", true) => "HeadBucket",
        _ => method,
    };
}

internal enum FaultKind { Respond, Reset, ResetAfterForwarding, CutBody, Stall }

/// <summary>What the proxy does to a request instead of forwarding it faithfully.</summary>
internal sealed record Fault(FaultKind Kind, int Status = 0, string? Code = null, string? Message = null, long AfterBytes = 0, bool ResetOnCut = false)
{
    /// <summary>Answers 503 SlowDown with S3's XML error body; the request never reaches the server.</summary>
    public static Fault SlowDown { get; } = Error(503, "SlowDown", "Please reduce your request rate.");

    /// <summary>Answers 500 InternalError; the request never reaches the server.</summary>
    public static Fault InternalError { get; } = Error(500, "InternalError", "We encountered an internal error. Please try again.");

    /// <summary>Resets the connection once the request's head has arrived; the server never sees it.</summary>
    public static Fault Reset { get; } = new(FaultKind.Reset);

    /// <summary>Forwards the request, lets the server answer, then resets the client's connection: the work is done but its answer is lost.</summary>
    public static Fault ResetAfterForwarding { get; } = new(FaultKind.ResetAfterForwarding);

    /// <summary>Any S3-style error answer.</summary>
    public static Fault Error(int status, string code, string message) => new(FaultKind.Respond, status, code, message);

    /// <summary>Forwards the request, relays the response's head and <paramref name="afterBytes"/> bytes of its body, then closes (FIN: a body shorter than its Content-Length) or, with <paramref name="reset"/>, resets.</summary>
    public static Fault CutBody(long afterBytes, bool reset = false) => new(FaultKind.CutBody, AfterBytes: afterBytes, ResetOnCut: reset);

    /// <summary>Relays <paramref name="afterBytes"/> bytes of the body, then goes silent with the connection open.</summary>
    public static Fault Stall(long afterBytes) => new(FaultKind.Stall, AfterBytes: afterBytes);

    public override string ToString() => Kind switch
    {
        FaultKind.Respond => $"{Status} {Code}",
        FaultKind.CutBody => $"cut after {AfterBytes} bytes{(ResetOnCut ? " with RST" : "")}",
        FaultKind.Stall => $"stall after {AfterBytes} bytes",
        _ => Kind.ToString(),
    };
}

/// <summary>One injection: which requests, what fault, how many times; <see cref="Fired"/> says how often it did.</summary>
internal sealed class FaultRule(Func<ProxiedRequest, bool> match, Fault fault, int skip, int times)
{
    public Func<ProxiedRequest, bool> Match { get; } = match;
    public Fault Fault { get; } = fault;
    public int Skip { get; } = skip;
    public int Times { get; } = times;
    /// <summary>Matching requests seen so far.</summary>
    public int Seen { get; internal set; }
    /// <summary>How many of them got the fault.</summary>
    public int Fired { get; internal set; }
}
