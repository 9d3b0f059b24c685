using System.Net;
using System.Net.Sockets;
using System.Text;

namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>
/// An <see cref="HttpListener"/> on 127.0.0.1 and a free port, handing each request to a
/// handler. Exceptions in the handler become a 500 so a broken stand-in fails the test loudly
/// rather than hanging it.
/// </summary>
internal sealed class LoopbackHttpServer : IAsyncDisposable
{
    private readonly HttpListener _listener;
    private readonly Task _loop;

    private LoopbackHttpServer(HttpListener listener, int port, Func<HttpListenerContext, Task> handler)
    {
        _listener = listener;
        Port = port;
        _loop = Task.Run(() => AcceptLoopAsync(handler));
    }

    public int Port { get; }

    /// <summary>e.g. <c>http://127.0.0.1:40123</c>, no trailing slash.</summary>
    public string Endpoint => $"http://127.0.0.1:{Port}";

    public static LoopbackHttpServer Start(Func<HttpListenerContext, Task> handler)
    {
        // HttpListener cannot bind port 0, so borrow a free port from the OS and bind it at
        // once; another process may take it in between, hence the few tries.
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort();
            var listener = new HttpListener();
            listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            try
            {
                listener.Start();
                return new LoopbackHttpServer(listener, port, handler);
            }
            catch (HttpListenerException) when (attempt < 5)
            {
                listener.Close();
            }
        }
    }

    /// <summary>A port on 127.0.0.1 that nothing listens on right now (connections are refused).</summary>
    public static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    public static async Task WriteAsync(HttpListenerResponse response, int status, string contentType, string body)
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        response.StatusCode = status;
        response.ContentType = contentType;
        response.ContentLength64 = bytes.Length;
        await response.OutputStream.WriteAsync(bytes);
        response.Close();
    }

    private async Task AcceptLoopAsync(Func<HttpListenerContext, Task> handler)
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return; // Stopped.
            }

            _ = Task.Run(async () =>
            {
                try
                {
                    await handler(context);
                }
                catch (Exception ex)
                {
                    try
                    {
                        await WriteAsync(context.Response, 500, "text/plain", "stand-in failed: " + ex);
                    }
                    catch (Exception)
                    {
                        // The client went away; nothing to tell it.
                    }
                }
            });
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Close alone (it stops first). Stop then Close made the managed HttpListener look its
        // endpoint up again after it was released, binding the port anew: when another process had
        // taken the port meanwhile, disposal threw "Address already in use" and failed a passing test.
        try
        {
            _listener.Close();
        }
        catch (HttpListenerException)
        {
            // The listener is closed either way; nothing of the test depends on it any more.
        }
        await _loop;
    }
}
