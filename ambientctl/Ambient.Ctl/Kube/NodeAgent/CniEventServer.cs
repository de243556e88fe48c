using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Ambient.Cni;
using Microsoft.Extensions.Logging;

namespace Ambient.Ctl.Kube.NodeAgent;

/// <summary>
/// The agent's end of the plugin's socket (istio-cni's plugin event server): each connection carries one
/// <see cref="CniAgentRequest"/> line and gets one <see cref="CniAgentResponse"/> line once the handler is done. The
/// socket is owner-only: whoever can write to it can have a namespace captured.
/// </summary>
internal sealed partial class CniEventServer : IAsyncDisposable
{
    private const int MaxRequestBytes = 64 * 1024;
    private readonly Socket _listener;
    private readonly Func<CniAgentRequest, CancellationToken, Task<CniAgentResponse>> _handle;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    private CniEventServer(Socket listener, Func<CniAgentRequest, CancellationToken, Task<CniAgentResponse>> handle, ILogger logger)
    {
        _listener = listener;
        _handle = handle;
        _logger = logger;
        _accepting = Task.Run(AcceptLoopAsync);
    }

    public static CniEventServer Start(string path, Func<CniAgentRequest, CancellationToken, Task<CniAgentResponse>> handle, ILogger logger)
    {
        Core.Files.OwnerOnlyFiles.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.Delete(path);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(64);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        return new CniEventServer(listener, handle, logger);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested) return;
                continue;
            }
            _ = Task.Run(() => ServeAsync(connection));
        }
    }

    private async Task ServeAsync(Socket connection)
    {
        using var _ = connection;
        await using var stream = new NetworkStream(connection, ownsSocket: false);
        CniAgentResponse response;
        try
        {
            var line = await ReadLineAsync(stream, _stop.Token).ConfigureAwait(false);
            var request = line is null ? null : JsonSerializer.Deserialize(line, CniAgentJson.Default.CniAgentRequest);
            if (request is null) return;
            response = await _handle(request, _stop.Token).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            response = new CniAgentResponse("the request is not a plugin event: " + e.Message, false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            LogConnectionFailed(_logger, e.Message);
            return;
        }
        try
        {
            var bytes = JsonSerializer.SerializeToUtf8Bytes(response, CniAgentJson.Default.CniAgentResponse);
            await stream.WriteAsync(bytes, _stop.Token).ConfigureAwait(false);
            await stream.WriteAsync("\n"u8.ToArray(), _stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
        {
            // The plugin gave up (its own timeout): the runtime retries the sandbox, and the ADD is idempotent.
            LogConnectionFailed(_logger, e.Message);
        }
    }

    private static async Task<string?> ReadLineAsync(Stream stream, CancellationToken cancellationToken)
    {
        var buffer = new MemoryStream();
        var one = new byte[4096];
        while (buffer.Length <= MaxRequestBytes)
        {
            var read = await stream.ReadAsync(one, cancellationToken).ConfigureAwait(false);
            if (read == 0) break;
            var newline = Array.IndexOf(one, (byte)'\n', 0, read);
            buffer.Write(one, 0, newline >= 0 ? newline : read);
            if (newline >= 0) return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
        }
        if (buffer.Length > MaxRequestBytes) throw new IOException($"a plugin event longer than {MaxRequestBytes} bytes");
        return buffer.Length == 0 ? null : Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _accepting.ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "a CNI plugin connection failed: {Reason}")]
    private static partial void LogConnectionFailed(ILogger logger, string reason);
}
