namespace Ambient.Hbone.Telemetry;

/// <summary>
/// Response flags as Istio's metrics and access logs spell them: the one place they are spelled, for inbound and
/// outbound alike (the <c>response_flags</c> metric label and the access log's <c>flags=</c>).
/// </summary>
internal static class ResponseFlags
{
    /// <summary>Connected and closed without a failure.</summary>
    public const string None = "-";

    /// <summary>Refused by authorization (an inbound 401, or a 401 answer to our CONNECT).</summary>
    public const string Deny = "DENY";

    /// <summary>The upstream could not be connected (TCP connect failed, or the HBONE CONNECT failed).</summary>
    public const string Connect = "CONNECT";

    /// <summary>No route: the destination could not be resolved.</summary>
    public const string NoRoute = "NR";

    /// <summary>The upstream side broke while bytes were relayed.</summary>
    public const string UpstreamReset = "UPSTREAM_RESET";

    /// <summary>The downstream (client) side broke while bytes were relayed.</summary>
    public const string DownstreamReset = "DOWNSTREAM_RESET";

    /// <summary>An inbound TLS handshake failed.</summary>
    public const string TlsFailure = "TLS_FAILURE";
}
