using System.Globalization;
using System.Net;
using Ambient.Core;
using Ambient.Core.Identity;

namespace Ambient.Dataplane.Control;

/// <summary>
/// The command-line flags every proxy takes to reach istiod as its node's workload (<c>--node</c>, <c>--root</c>,
/// <c>--token-file</c> or <c>--ca-token-file</c>, <c>--istiod</c>, <c>--cluster-id</c>, <c>--trust-domain</c>), parsed one
/// way for all.
/// </summary>
internal sealed class ControlPlaneArguments
{
    public string? Node { get; private set; }
    public string? Root { get; private set; }
    public string? TokenFile { get; private set; }

    /// <summary>Kubernetes mode: the proxy's projected service-account token (<c>--ca-token-file</c>).</summary>
    public string? CaTokenFile { get; private set; }

    /// <summary>Where Istio's ztunnel DaemonSet and waypoint Deployments mount the projected token (audience istio-ca).</summary>
    public const string DefaultCaTokenFile = "/var/run/secrets/tokens/istio-token";
    public string ClusterId { get; private set; } = "Kubernetes";
    public Uri Istiod { get; private set; } = new($"https://127.0.0.1:{MeshPorts.IstiodGrpc}");
    public string TrustDomain { get; private set; } = SpiffeId.DefaultTrustDomain;

    /// <summary>Takes <paramref name="flag"/> if it is one of these: true when taken; <paramref name="error"/> when its value is bad.</summary>
    public bool TryTake(string flag, string value, out string? error)
    {
        error = null;
        switch (flag)
        {
            case "--node": Node = value; return true;
            case "--root": Root = value; return true;
            case "--token-file": TokenFile = value; return true;
            case "--ca-token-file": CaTokenFile = value; return true;
            case "--cluster-id": ClusterId = value; return true;
            case "--trust-domain":
                if (SpiffeId.ValidateTrustDomain(value) is { } tdError) { error = $"--trust-domain: {tdError}"; }
                else { TrustDomain = value; }
                return true;
            case "--istiod":
                if (!Uri.TryCreate(value, UriKind.Absolute, out var u) || u.Scheme != "https") { error = $"--istiod: '{value}' is not an https URL"; }
                else { Istiod = u; }
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// The credential to present: a local-mode node token (<c>--token-file</c>), else the projected service-account
    /// token (<c>--ca-token-file</c>, else <see cref="DefaultCaTokenFile"/>), which must exist. False with
    /// <paramref name="error"/> (ending in <paramref name="usage"/> when nothing was named) when neither can be used.
    /// </summary>
    public bool TryResolveToken(string usage, out string path, out bool serviceAccountToken, out string? error)
    {
        serviceAccountToken = TokenFile is null;
        path = TokenFile ?? CaTokenFile ?? DefaultCaTokenFile;
        if (TokenFile is not null && CaTokenFile is not null)
        {
            error = "--token-file (local mode) and --ca-token-file (Kubernetes mode) exclude each other";
            return false;
        }
        if (serviceAccountToken && !File.Exists(path))
        {
            error = CaTokenFile is null
                ? $"--token-file FILE (local mode) is required, or a projected service-account token at {DefaultCaTokenFile} (Kubernetes mode; or --ca-token-file FILE)\n{usage}"
                : $"--ca-token-file: file '{path}' does not exist";
            return false;
        }
        error = null;
        return true;
    }

    /// <summary>Null when the root and the token file (when one was given) exist; otherwise which one does not.</summary>
    public string? CheckFiles()
    {
        foreach (var (flag, path) in new[] { ("--root", Root), ("--token-file", TokenFile) })
        {
            if (flag == "--token-file" && path is null)
            {
                continue; // the caller decides whether a node token is required (the ztunnel may use --ca-token-file)
            }
            if (path is null || !File.Exists(path))
            {
                return $"{flag}: file '{path}' does not exist";
            }
        }
        return null;
    }

    public static bool TryParseAddress(string flag, string value, out IPAddress address, out string? error)
    {
        if (IPAddress.TryParse(value, out var parsed))
        {
            (address, error) = (parsed, null);
            return true;
        }
        (address, error) = (IPAddress.None, $"{flag}: '{value}' is not an IP address");
        return false;
    }

    public static bool TryParsePort(string value, out int port) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 0 and <= 65535;
}
