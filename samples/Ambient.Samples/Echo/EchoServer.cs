using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Ambient.Samples.Echo;

/// <summary>
/// ambient/echo, following the Gateway API conformance echo contract (the echo-basic server its suites drive), so an
/// independent conformance suite can assert on what a backend received. Every method and path answers a JSON body
/// <c>{"path" (with query, as sent), "host", "method", "proto", "headers" (canonical name -> values), "namespace",
/// "ingress", "service", "pod"}</c>, plus our own <c>serviceAccount</c>, <c>version</c>, <c>remoteAddress</c> and
/// <c>status</c>. It listens on every containerPort, each serving HTTP/1.1 and h2c (prior knowledge).
/// <list type="bullet">
/// <item><c>X-Echo-Set-Header: Name:Value,Name2:Value2</c> sets response headers.</item>
/// <item><c>?delay=DURATION</c> (Go syntax: <c>500ms</c>, <c>1.5s</c>; a bare number is milliseconds) waits first.</item>
/// <item><c>?responseCode=N[&amp;succeedAfter=K&amp;uuid=U]</c> answers N (to the first K requests carrying U, then 200),
/// with the same JSON body; <c>?status=N</c> is the older spelling of a plain <c>responseCode</c>.</item>
/// </list>
/// Every request is logged to stdout as one line: method, path, proto and headers, then the body's length and SHA-256
/// when it has one. The JSON reports the same (<c>bodyLength</c>, <c>bodySha256</c>), so a test can tell that a body
/// arrived whole (through a retry or a mirror) without it being echoed back.
/// </summary>
internal sealed class EchoServer
{
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(60);

    // succeedAfter counters are per uuid; a client that never reuses its uuids must not grow this without bound.
    private const int MaxTrackedUuids = 10_000;

    private readonly EchoSettings _settings;
    private readonly TextWriter _requestLog;
    private readonly ConcurrentDictionary<string, int> _seenByUuid = new(StringComparer.Ordinal);

    internal EchoServer(EchoSettings settings, TextWriter requestLog)
    {
        _settings = settings;
        _requestLog = requestLog;
    }

    public static async Task RunAsync(EchoSettings settings)
    {
        await using var app = Build(settings, Console.Out);
        Console.WriteLine($"ambient/echo: pod {settings.Namespace}/{settings.Pod} on {string.Join(", ", settings.Ports.Select(p => $"http://{settings.Address}:{p}"))}");
        // The host stops on SIGINT/SIGTERM, which is how ambientctl stops pods.
        await app.RunAsync().ConfigureAwait(false);
    }

    /// <summary>The server, not started: one Kestrel endpoint per port, each HTTP/1.1 and prior-knowledge h2c.</summary>
    internal static WebApplication Build(EchoSettings settings, TextWriter requestLog)
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
            foreach (var port in settings.Ports)
            {
                k.Listen(settings.Address, port, l =>
                {
                    l.Protocols = HttpProtocols.Http1AndHttp2;
                    l.Use(next => connection => H2cDetector.DetectAsync(connection, () => next(connection)));
                });
            }
        });
        var app = builder.Build();
        var server = new EchoServer(settings, requestLog);
        app.Run(server.HandleAsync);
        return app;
    }

    internal async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var response = context.Response;
        // The request target as sent (path and query, undecoded), which is what echo-basic reports as "path".
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw ? raw : request.Path.Value + request.QueryString.Value;
        var proto = Proto(request.Protocol);
        var headers = CanonicalHeaders(request.Headers);
        var (bodyLength, bodySha256) = await ReadBodyAsync(request.Body, context.RequestAborted).ConfigureAwait(false);
        LogRequest(request.Method, target, proto, headers, bodyLength, bodySha256);

        if (request.Query.TryGetValue("delay", out var delayText))
        {
            if (ParseDelay(delayText.ToString()) is not { } delay)
            {
                await WriteErrorAsync(response, $"delay '{delayText}' is not a duration (like 500ms or 1.5s; at most {MaxDelay.TotalSeconds:0}s)").ConfigureAwait(false);
                return;
            }
            await Task.Delay(delay, context.RequestAborted).ConfigureAwait(false);
        }
        var status = 200;
        var codeText = request.Query.TryGetValue("responseCode", out var rc) ? rc.ToString() : request.Query.TryGetValue("status", out var st) ? st.ToString() : null;
        if (codeText is not null)
        {
            if (!int.TryParse(codeText, NumberStyles.None, CultureInfo.InvariantCulture, out var code) || code is < 100 or > 599)
            {
                await WriteErrorAsync(response, $"responseCode '{codeText}' is not an HTTP status code (100-599)").ConfigureAwait(false);
                return;
            }
            var succeedAfter = -1;
            if (request.Query.TryGetValue("succeedAfter", out var afterText)
                && (!int.TryParse(afterText, NumberStyles.None, CultureInfo.InvariantCulture, out succeedAfter) || succeedAfter < 0))
            {
                await WriteErrorAsync(response, $"succeedAfter '{afterText}' is not a count of requests").ConfigureAwait(false);
                return;
            }
            status = succeedAfter < 0 || CountFor(request.Query["uuid"].ToString()) <= succeedAfter ? code : 200;
        }

        if (request.Headers.TryGetValue("X-Echo-Set-Header", out var setHeaders))
        {
            foreach (var value in setHeaders)
            {
                foreach (var (name, headerValue) in ParseSetHeaders(value ?? ""))
                {
                    // As echo-basic: a name set twice gets one header with the values joined by commas.
                    response.Headers[name] = response.Headers.TryGetValue(name, out var existing) && existing.Count > 0
                        ? existing.ToString() + "," + headerValue
                        : headerValue;
                }
            }
        }
        response.StatusCode = status;
        response.ContentType = "application/json";
        response.Headers.XContentTypeOptions = "nosniff";
        await using var json = new Utf8JsonWriter(response.Body, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("path", target);
        json.WriteString("host", request.Host.Value ?? "");
        json.WriteString("method", request.Method);
        json.WriteString("proto", proto);
        json.WriteStartObject("headers");
        foreach (var (name, values) in headers)
        {
            json.WriteStartArray(name);
            foreach (var v in values) json.WriteStringValue(v);
            json.WriteEndArray();
        }
        json.WriteEndObject();
        json.WriteString("namespace", _settings.Namespace);
        json.WriteString("ingress", "");
        json.WriteString("service", _settings.Service);
        json.WriteString("pod", _settings.Pod);
        json.WriteString("serviceAccount", _settings.ServiceAccount);
        if (_settings.Version is not null) json.WriteString("version", _settings.Version);
        json.WriteString("remoteAddress", context.Connection.RemoteIpAddress?.ToString() ?? "");
        json.WriteNumber("status", status);
        json.WriteNumber("bodyLength", bodyLength);
        if (bodyLength > 0) json.WriteString("bodySha256", bodySha256);
        json.WriteEndObject();
    }

    /// <summary>The request body's length and lower-case hex SHA-256, read to its end without keeping it.</summary>
    internal static async Task<(long Length, string Sha256)> ReadBodyAsync(Stream body, CancellationToken cancellationToken)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
        long length = 0;
        try
        {
            int read;
            while ((read = await body.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                hash.AppendData(buffer, 0, read);
                length += read;
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
        return (length, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    /// <summary>How many requests have carried this uuid, this one included.</summary>
    private int CountFor(string uuid)
    {
        if (_seenByUuid.Count >= MaxTrackedUuids && !_seenByUuid.ContainsKey(uuid)) _seenByUuid.Clear();
        return _seenByUuid.AddOrUpdate(uuid, 1, static (_, n) => n + 1);
    }

    private void LogRequest(string method, string target, string proto, List<(string Name, List<string> Values)> headers, long bodyLength, string bodySha256)
    {
        var line = new StringBuilder(256).Append("ambient/echo: ").Append(method).Append(' ').Append(target).Append(' ').Append(proto).Append(" headers=");
        for (var i = 0; i < headers.Count; i++)
        {
            if (i > 0) line.Append("; ");
            line.Append(headers[i].Name).Append(": ").Append(string.Join(",", headers[i].Values));
        }
        if (bodyLength > 0) line.Append(" body=").Append(bodyLength).Append(" sha256=").Append(bodySha256);
        // One WriteLine call: Console.Out is synchronized, so concurrent requests never interleave within a line.
        _requestLog.WriteLine(line.ToString());
    }

    /// <summary>The protocol as Go's net/http names it (what conformance suites compare): HTTP/1.1, HTTP/2.0.</summary>
    internal static string Proto(string protocol) => protocol switch
    {
        "HTTP/2" => "HTTP/2.0",
        "HTTP/3" => "HTTP/3.0",
        _ => protocol,
    };

    /// <summary>
    /// Request headers as Go's net/http presents them: canonical names (<c>x-foo-bar</c> -> <c>X-Foo-Bar</c>), each
    /// with its values, without Host (reported as "host") and without HTTP/2 pseudo-headers; sorted by name.
    /// </summary>
    internal static List<(string Name, List<string> Values)> CanonicalHeaders(IHeaderDictionary headers)
    {
        var byName = new SortedDictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var (name, values) in headers)
        {
            if (name.StartsWith(':') || name.Equals("Host", StringComparison.OrdinalIgnoreCase)) continue;
            var canonical = CanonicalName(name);
            if (!byName.TryGetValue(canonical, out var list)) byName[canonical] = list = [];
            foreach (var v in values) list.Add(v ?? "");
        }
        var result = new List<(string, List<string>)>(byName.Count);
        foreach (var (name, values) in byName) result.Add((name, values));
        return result;
    }

    /// <summary>Go's CanonicalMIMEHeaderKey: upper case after the start and each '-', lower case elsewhere.</summary>
    internal static string CanonicalName(string name)
    {
        foreach (var c in name)
        {
            // A name with a character outside the token set is left as it is, as Go does.
            if (c is ' ' or '\t' or '"' or '(' or ')' or ',' or '/' or ':' or ';' or '<' or '=' or '>' or '?' or '@' or '[' or '\\' or ']' or '{' or '}' || c > 0x7e) return name;
        }
        return string.Create(name.Length, name, static (span, source) =>
        {
            var upper = true;
            for (var i = 0; i < source.Length; i++)
            {
                var c = source[i];
                span[i] = upper ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c);
                upper = c == '-';
            }
        });
    }

    /// <summary>
    /// A Go duration (<c>300ms</c>, <c>1.5s</c>, <c>1m30s</c>; units ns us µs ms s m h), or a bare number of
    /// milliseconds as this sample took before; null when malformed, negative or above <see cref="MaxDelay"/>.
    /// </summary>
    internal static TimeSpan? ParseDelay(string text)
    {
        if (text.Length == 0) return null;
        if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var ms))
        {
            return ms <= MaxDelay.TotalMilliseconds ? TimeSpan.FromMilliseconds(ms) : null;
        }
        double total = 0; // milliseconds
        var i = 0;
        while (i < text.Length)
        {
            var start = i;
            while (i < text.Length && (char.IsAsciiDigit(text[i]) || text[i] == '.')) i++;
            if (i == start || !double.TryParse(text.AsSpan(start, i - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number)) return null;
            var unitStart = i;
            while (i < text.Length && !char.IsAsciiDigit(text[i]) && text[i] != '.') i++;
            double? scale = text.AsSpan(unitStart, i - unitStart) switch
            {
                "ns" => 1e-6,
                "us" or "µs" or "μs" => 1e-3,
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => null,
            };
            if (scale is null) return null;
            total += number * scale.Value;
        }
        return total <= MaxDelay.TotalMilliseconds ? TimeSpan.FromMilliseconds(total) : null;
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
