using System.Net;
using Microsoft.AspNetCore.Http;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>
/// A plain HTTP/1.1 endpoint served by the node proxy's one Kestrel beside the HBONE listeners (the admin, metrics
/// and readiness ports). Each endpoint answers with its own handler: a path is only served on the port it belongs
/// to, as Istio's ztunnel does it, without a router.
/// </summary>
/// <param name="Name">Names the endpoint in errors and in <see cref="HboneInboundServer.PlainEndpoints"/>.</param>
/// <param name="EndPoint">Where to listen; port 0 picks a free port (tests).</param>
/// <param name="Handler">Answers every request that arrives on this endpoint.</param>
internal sealed record PlainEndpoint(string Name, IPEndPoint EndPoint, RequestDelegate Handler);
