using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Ambient.Cni;

/// <summary>A CNI failure as the spec reports it: <c>{"cniVersion","code","msg","details"}</c> on stdout, non-zero exit.</summary>
internal sealed class CniException(int code, string message, string? details = null) : Exception(message)
{
    // The spec's well-known codes (CNI 1.0, "Error"): 1-99 are reserved, 100+ are the plugin's own.
    public const int IncompatibleVersion = 1;
    public const int InvalidEnvironment = 4;
    public const int DecodeFailure = 6;
    public const int InvalidConfig = 7;
    public const int TryAgainLater = 11;
    public const int EnrolmentFailed = 100;

    public int Code { get; } = code;
    public string? Details { get; } = details;
}

/// <summary>
/// The chained CNI plugin (spec 1.0) of ambient mode, istio-cni's plugin: it configures no networking itself. On ADD it
/// tells the node agent the pod's network namespace and waits until the agent has enrolled it (or decided it is not in
/// the mesh), then passes the previous plugin's result through unchanged, so the pod's containers start with their
/// capture in place. When the agent cannot be reached it asks the API server whether the pod is in the mesh and fails
/// only then (istio-cni fails closed for ambient pods: they must never run uncaptured; every other pod starts).
/// </summary>
internal static class CniPlugin
{
    public static readonly string[] SupportedVersions = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
    private const string OwnVersion = "1.0.0";
    private static readonly TimeSpan AddTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan DelTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Runs one CNI command; returns the exit code (what it prints goes to <paramref name="stdout"/>).</summary>
    public static async Task<int> RunAsync(Func<string, string?> environment, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var version = OwnVersion;
        try
        {
            var command = environment("CNI_COMMAND");
            if (command == "VERSION")
            {
                WriteVersion(stdout);
                return 0;
            }
            if (command is not ("ADD" or "DEL" or "CHECK"))
            {
                throw new CniException(CniException.InvalidEnvironment, command is null ? "CNI_COMMAND is not set" : $"unknown CNI_COMMAND '{command}'");
            }
            using var config = ParseConfig(await stdin.ReadToEndAsync().ConfigureAwait(false));
            var root = config.RootElement;
            version = StringOf(root, "cniVersion") ?? OwnVersion;
            if (Array.IndexOf(SupportedVersions, version) < 0)
            {
                throw new CniException(CniException.IncompatibleVersion, $"cniVersion '{version}' is not supported", "supported: " + string.Join(", ", SupportedVersions));
            }
            var containerId = environment("CNI_CONTAINERID");
            if (string.IsNullOrEmpty(containerId)) throw new CniException(CniException.InvalidEnvironment, "CNI_CONTAINERID is not set");
            var args = ParseArgs(environment("CNI_ARGS"));
            var pod = args.GetValueOrDefault("K8S_POD_NAME");
            var ns = args.GetValueOrDefault("K8S_POD_NAMESPACE");
            var socket = StringOf(root, "agent_socket") ?? CniNames.DefaultAgentSocket;
            switch (command)
            {
                case "ADD":
                    var netns = environment("CNI_NETNS");
                    if (string.IsNullOrEmpty(netns)) throw new CniException(CniException.InvalidEnvironment, "CNI_NETNS is not set");
                    if (!string.IsNullOrEmpty(pod) && !string.IsNullOrEmpty(ns))
                    {
                        await AddAsync(new CniAgentRequest("ADD", ns, pod, args.GetValueOrDefault("K8S_POD_UID"), netns, containerId),
                            socket, StringOf(root, "kubeconfig"), stderr).ConfigureAwait(false);
                    }
                    WriteResult(stdout, root, version);
                    return 0;
                case "DEL":
                    if (!string.IsNullOrEmpty(pod) && !string.IsNullOrEmpty(ns))
                    {
                        // DEL must succeed (the runtime retries a failed one forever): the agent's pod watch releases the pod
                        // anyway when it is deleted.
                        try
                        {
                            var request = new CniAgentRequest("DEL", ns, pod, args.GetValueOrDefault("K8S_POD_UID"), environment("CNI_NETNS"), containerId);
                            if (await AskAgentAsync(socket, request, DelTimeout).ConfigureAwait(false) is { Error: { } error })
                            {
                                await stderr.WriteLineAsync($"ambient-cni: releasing {ns}/{pod}: {error}").ConfigureAwait(false);
                            }
                        }
                        catch (Exception e) when (e is SocketException or IOException or TimeoutException or JsonException)
                        {
                            await stderr.WriteLineAsync($"ambient-cni: the node agent at {socket} was not told {ns}/{pod} left: {e.Message}").ConfigureAwait(false);
                        }
                    }
                    return 0;
                default:
                    return 0;
            }
        }
        catch (CniException e)
        {
            WriteError(stdout, version, e.Code, e.Message, e.Details);
            await stderr.WriteLineAsync("ambient-cni: " + e.Message).ConfigureAwait(false);
            return 1;
        }
    }

    private static async Task AddAsync(CniAgentRequest request, string socket, string? kubeconfig, TextWriter stderr)
    {
        var pod = request.PodNamespace + "/" + request.PodName;
        CniAgentResponse? answer;
        try
        {
            answer = await AskAgentAsync(socket, request, AddTimeout).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or IOException or JsonException)
        {
            // The agent is down (restarting, upgrading): decide alone, as istio-cni does, whether the pod may start.
            var inMesh = await PodInMesh.CheckAsync(kubeconfig, request.PodNamespace, request.PodName).ConfigureAwait(false);
            if (inMesh.Ambient)
            {
                throw new CniException(CniException.TryAgainLater,
                    $"pod {pod} is in the ambient mesh but the node agent at {socket} is unreachable ({e.Message}); it must not start uncaptured",
                    "the runtime retries the sandbox; check the ambient-node-agent pod on this node");
            }
            await stderr.WriteLineAsync($"ambient-cni: node agent unreachable ({e.Message}); {pod} starts: {inMesh.Why}").ConfigureAwait(false);
            return;
        }
        catch (TimeoutException)
        {
            throw new CniException(CniException.TryAgainLater, $"the node agent at {socket} did not answer for pod {pod} within {AddTimeout.TotalSeconds:0} s");
        }
        if (answer?.Error is { } error)
        {
            throw new CniException(CniException.EnrolmentFailed, $"the node agent could not put pod {pod} in the mesh: {error}");
        }
    }

    /// <summary>One request, one answer, over the agent's Unix stream socket; null when it closed without answering.</summary>
    internal static async Task<CniAgentResponse?> AskAgentAsync(string socketPath, CniAgentRequest request, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancel.Token).ConfigureAwait(false);
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            var line = JsonSerializer.SerializeToUtf8Bytes(request, CniAgentJson.Default.CniAgentRequest);
            await stream.WriteAsync(line, cancel.Token).ConfigureAwait(false);
            await stream.WriteAsync("\n"u8.ToArray(), cancel.Token).ConfigureAwait(false);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            var answer = await reader.ReadLineAsync(cancel.Token).ConfigureAwait(false);
            return answer is null ? null : JsonSerializer.Deserialize(answer, CniAgentJson.Default.CniAgentResponse);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            throw new TimeoutException($"no answer within {timeout.TotalSeconds:0} s");
        }
    }

    private static JsonDocument ParseConfig(string text)
    {
        try
        {
            var document = JsonDocument.Parse(text);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                document.Dispose();
                throw new CniException(CniException.InvalidConfig, "the network configuration on stdin is not a JSON object");
            }
            return document;
        }
        catch (JsonException e)
        {
            throw new CniException(CniException.DecodeFailure, "the network configuration on stdin is not JSON: " + e.Message);
        }
    }

    /// <summary>CNI_ARGS: <c>K=V;K=V</c> (containerd and CRI-O pass K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID there).</summary>
    internal static Dictionary<string, string> ParseArgs(string? args)
    {
        var parsed = new Dictionary<string, string>(StringComparer.Ordinal);
        if (string.IsNullOrEmpty(args)) return parsed;
        foreach (var pair in args.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=');
            if (equals <= 0) throw new CniException(CniException.InvalidEnvironment, $"CNI_ARGS has '{pair}', not KEY=VALUE");
            parsed[pair[..equals]] = pair[(equals + 1)..];
        }
        return parsed;
    }

    private static string? StringOf(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    /// <summary>The previous plugin's result, byte for byte; a result with no interfaces or IPs when this is first in the chain.</summary>
    private static void WriteResult(TextWriter stdout, JsonElement config, string version)
    {
        if (config.TryGetProperty("prevResult", out var previous) && previous.ValueKind == JsonValueKind.Object)
        {
            stdout.Write(previous.GetRawText());
            stdout.Flush();
            return;
        }
        Write(stdout, json =>
        {
            json.WriteString("cniVersion", version);
        });
    }

    private static void WriteVersion(TextWriter stdout) => Write(stdout, json =>
    {
        json.WriteString("cniVersion", OwnVersion);
        json.WriteStartArray("supportedVersions");
        foreach (var v in SupportedVersions) json.WriteStringValue(v);
        json.WriteEndArray();
    });

    private static void WriteError(TextWriter stdout, string version, int code, string message, string? details) => Write(stdout, json =>
    {
        json.WriteString("cniVersion", Array.IndexOf(SupportedVersions, version) < 0 ? OwnVersion : version);
        json.WriteNumber("code", code);
        json.WriteString("msg", message);
        if (details is not null) json.WriteString("details", details);
    });

    private static void Write(TextWriter stdout, Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            body(json);
            json.WriteEndObject();
        }
        stdout.Write(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
        stdout.Flush();
    }
}
