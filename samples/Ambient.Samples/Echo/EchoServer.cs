using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Ambient.Samples.Echo;

/// <summary>
/// ambient/echo: answers every request with JSON describing who answered (pod, namespace, service account) and what
/// arrived (method, path, host, headers), over HTTP/1.1 and h2c (prior knowledge) on one port.
/// Query <c>?delay=MS</c> waits before answering, <c>?status=CODE</c> picks the status code; request header
/// <c>X-Echo-Set-Header: Name:Value,Name2:Value2</c> sets response headers.
/// </summary>
internal static class EchoServer
{
    public const int MaxDelayMilliseconds = 60_000;

    public static async Task RunAsync(EchoSettings settings)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        // The "HTTP/2 needs TLS" startup warning is wrong here: H2cDetector handles prior-knowledge h2c.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel", LogLevel.Error);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            // h2c connections look like TLS to Kestrel (see H2cDetector); take the :scheme the client sends.
            k.AllowAlternateSchemes = true;
            k.Listen(settings.Address, settings.Port, l =>
            {
                l.Protocols = HttpProtocols.Http1AndHttp2;
                l.Use(next => connection => H2cDetector.DetectAsync(connection, () => next(connection)));
            });
        });
        var app = builder.Build();
        app.Run(context => HandleAsync(context, settings));
        Console.WriteLine($"ambient/echo: pod {settings.Namespace}/{settings.Pod} on http://{settings.Address}:{settings.Port}");
        // The host stops on SIGINT/SIGTERM, which is how ambientctl stops pods.
        await app.RunAsync().ConfigureAwait(false);
    }

    internal static async Task HandleAsync(HttpContext context, EchoSettings settings)
    {
        var request = context.Request;
        var response = context.Response;
        var status = 200;
        if (request.Query.TryGetValue("status", out var statusText))
        {
            if (!int.TryParse(statusText, NumberStyles.None, CultureInfo.InvariantCulture, out status) || status is < 100 or > 599)
            {
                await WriteErrorAsync(response, $"status '{statusText}' is not an HTTP status code (100-599)").ConfigureAwait(false);
                return;
            }
        }
        if (request.Query.TryGetValue("delay", out var delayText))
        {
            if (!int.TryParse(delayText, NumberStyles.None, CultureInfo.InvariantCulture, out var delay) || delay > MaxDelayMilliseconds)
            {
                await WriteErrorAsync(response, $"delay '{delayText}' is not a number of milliseconds (0-{MaxDelayMilliseconds})").ConfigureAwait(false);
                return;
            }
            await Task.Delay(delay, context.RequestAborted).ConfigureAwait(false);
        }
        if (request.Headers.TryGetValue("X-Echo-Set-Header", out var setHeaders))
        {
            foreach (var (name, value) in ParseSetHeaders(setHeaders.ToString()))
            {
                response.Headers.Append(name, value);
            }
        }
        response.StatusCode = status;
        response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(response.Body, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("pod", settings.Pod);
        json.WriteString("namespace", settings.Namespace);
        json.WriteString("serviceAccount", settings.ServiceAccount);
        if (settings.Version is not null) json.WriteString("version", settings.Version);
        json.WriteString("protocol", request.Protocol);
        json.WriteString("method", request.Method);
        json.WriteString("path", request.Path.Value ?? "/");
        json.WriteString("query", request.QueryString.Value ?? "");
        json.WriteString("host", request.Host.Value ?? "");
        json.WriteString("remoteAddress", context.Connection.RemoteIpAddress?.ToString() ?? "");
        json.WriteNumber("status", status);
        json.WriteStartObject("headers");
        foreach (var (name, values) in request.Headers)
        {
            json.WriteString(name, values.ToString());
        }
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary><c>Name:Value,Name2:Value2</c>; entries without a colon or with an empty name are skipped.</summary>
    internal static List<(string Name, string Value)> ParseSetHeaders(string text)
    {
        var result = new List<(string, string)>();
        foreach (var entry in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var colon = entry.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) continue;
            var name = entry[..colon].Trim();
            if (name.Length == 0 || name.AsSpan().IndexOfAny(" \t\r\n") >= 0) continue;
            result.Add((name, entry[(colon + 1)..].Trim()));
        }
        return result;
    }

    private static async Task WriteErrorAsync(HttpResponse response, string message)
    {
        response.StatusCode = 400;
        response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(response.Body);
        json.WriteStartObject();
        json.WriteString("error", message);
        json.WriteEndObject();
    }
}
