using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Ambient.TestCommon;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Ztunnel.Proxy.Socks5;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.Socks5;

/// <summary>curl is an independent SOCKS5 client: if it can fetch a page through the listener, we speak RFC 1928.</summary>
public sealed class CurlInteropTests
{
    private const string Curl = "/usr/bin/curl";

    [Fact]
    public async Task Curl_Socks5Hostname_FetchesAPageThroughTheListener()
    {
        Assert.True(File.Exists(Curl), $"{Curl} is missing: install the Debian curl package (CI setup does) to run this interop test");

        const string body = "hello through socks5\n";
        using var http = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        http.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        http.Listen(4);
        int httpPort = ((IPEndPoint)http.LocalEndPoint!).Port;
        var requestSeen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = ServeOneAsync(http, body, requestSeen);

        var logger = new ListLogger();
        var handler = new TestOutboundProxy(d => d.Host == "name.example" ? new IPEndPoint(IPAddress.Loopback, d.Port) : null);
        await using var listener = Socks5Listener.Start(new IPEndPoint(IPAddress.Loopback, 0), handler, logger);

        var start = new ProcessStartInfo(Curl)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "-sS", "--max-time", "20", "--socks5-hostname", $"127.0.0.1:{listener.LocalEndPoint.Port}", $"http://name.example:{httpPort}/hello" })
        {
            start.ArgumentList.Add(arg);
        }

        // A proxy from the environment must not take over from the SOCKS proxy under test.
        foreach (var name in new[] { "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY" })
        {
            start.Environment.Remove(name);
        }

        using var curl = Process.Start(start)!;
        try
        {
            var stdout = curl.StandardOutput.ReadToEndAsync();
            var stderr = curl.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await curl.WaitForExitAsync(timeout.Token);
            Assert.True(curl.ExitCode == 0, $"curl exited {curl.ExitCode}: {await stderr}");
            Assert.Equal(body, await stdout);
        }
        finally
        {
            if (!curl.HasExited)
            {
                curl.Kill();
            }
        }

        var request = await requestSeen.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.StartsWith("GET /hello HTTP/1.1\r\n", request);
        Assert.Contains($"Host: name.example:{httpPort}\r\n", request);
        Assert.Equal(new OriginalDestination(null, "name.example", httpPort), Assert.Single(handler.Calls).Destination);
        await server;
        Assert.Empty(logger.AtLeast(LogLevel.Error));
    }

    /// <summary>A minimal HTTP/1.1 server: one request, one response, close.</summary>
    private static async Task ServeOneAsync(Socket listener, string body, TaskCompletionSource<string> requestSeen)
    {
        using var socket = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var received = new StringBuilder();
        var buffer = new byte[4096];
        while (!received.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            int read = await socket.ReceiveAsync(buffer);
            if (read == 0)
            {
                break;
            }

            received.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        requestSeen.TrySetResult(received.ToString());
        var response = $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {Encoding.ASCII.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}";
        await socket.SendAsync(Encoding.ASCII.GetBytes(response));
        socket.Shutdown(SocketShutdown.Send);
    }
}
