using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Grpc;
using Ambient.Core.Protos.Ca;
using Ambient.TestCommon;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Ambient.Core.Tests.Grpc;

/// <summary>
/// A real Kestrel server (h2c or TLS) serving the test methods below, plus a GrpcClient pointed at it.
/// The request's csr field is a small command language so one method can exercise many outcomes.
/// </summary>
internal sealed class GrpcTestHost : IAsyncDisposable
{
    public const string UnaryPath = "/test.Ca/Create";
    public const string EchoPath = "/test.Ca/Echo";
    public const string FanoutPath = "/test.Ca/Fanout";
    public const string RefusePath = "/test.Ca/Refuse";
    public const string Http503Path = "/plain.Service/Unavailable";

    private readonly SocketsHttpHandler _handler;

    private readonly X509Certificate2? _clientCertificate;

    private GrpcTestHost(LoopbackKestrel server, SocketsHttpHandler handler, X509Certificate2? serverCertificate, X509Certificate2? clientCertificate)
    {
        _clientCertificate = clientCertificate;
        Server = server;
        _handler = handler;
        Invoker = new HttpMessageInvoker(handler, disposeHandler: false);
        Client = new GrpcClient(Invoker, server.BaseAddress);
        ServerCertificate = serverCertificate;
    }

    public LoopbackKestrel Server { get; }

    public HttpMessageInvoker Invoker { get; }

    public GrpcClient Client { get; }

    public X509Certificate2? ServerCertificate { get; }

    /// <summary>Completed by the unary handler with how its "delay" ended ("cancelled" or "elapsed").</summary>
    public TaskCompletionSource<string> DelayOutcome { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completed when a "delay" handler starts waiting.</summary>
    public TaskCompletionSource DelayStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="plainKestrelLimits">Skip <see cref="GrpcServerDefaults.ConfigureKestrel"/> (Kestrel's small default HTTP/2 windows).</param>
    public static async Task<GrpcTestHost> StartAsync(bool tls, bool requireClientCertificate = false, bool plainKestrelLimits = false)
    {
        X509Certificate2? serverCert = tls ? TestCertificates.CreateSelfSigned() : null;
        X509Certificate2? clientCert = requireClientCertificate ? TestCertificates.CreateSelfSigned("test-client") : null;
        GrpcTestHost? host = null;
        var server = await LoopbackKestrel.StartAsync(
            endpoints => Map(endpoints, () => host!),
            new LoopbackKestrelOptions
            {
                ServerCertificate = serverCert,
                ClientCertificateMode = requireClientCertificate ? ClientCertificateMode.RequireCertificate : ClientCertificateMode.NoCertificate,
                ConfigureKestrel = plainKestrelLimits ? null : GrpcServerDefaults.ConfigureKestrel,
            });

        var handler = new SocketsHttpHandler { UseProxy = false };
        if (serverCert is not null)
        {
            handler.SslOptions.RemoteCertificateValidationCallback = TestCertificates.TrustOnly(serverCert);
            if (clientCert is not null)
            {
                handler.SslOptions.ClientCertificates = new X509CertificateCollection { clientCert };
            }
        }

        host = new GrpcTestHost(server, handler, serverCert, clientCert);
        return host;
    }

    private static void Map(IEndpointRouteBuilder endpoints, Func<GrpcTestHost> host)
    {
        endpoints.MapGrpcUnary(UnaryPath, IstioCertificateRequest.Parser,
            (IstioCertificateRequest request, GrpcServerCallContext context) => UnaryAsync(host(), request, context));

        endpoints.MapGrpcDuplex<IstioCertificateRequest, IstioCertificateResponse>(EchoPath, IstioCertificateRequest.Parser,
            async (requests, writer, context) =>
            {
                await foreach (var request in requests.WithCancellation(context.CancellationToken))
                {
                    if (request.Csr.StartsWith("fail:", StringComparison.Ordinal))
                    {
                        throw ParseFailure(request.Csr);
                    }

                    var response = new IstioCertificateResponse();
                    response.CertChain.Add(request.Csr);
                    await writer.WriteAsync(response, context.CancellationToken);
                }
            });

        // Refuses before reading anything, as istiod does a bad token: a Trailers-Only answer, then RST_STREAM.
        endpoints.MapGrpcDuplex<IstioCertificateRequest, IstioCertificateResponse>(RefusePath, IstioCertificateRequest.Parser,
            (requests, writer, context) => throw new GrpcException(GrpcStatusCode.Unauthenticated, "bad token"));

        // Several producers write to one stream at once: frames must never interleave.
        endpoints.MapGrpcDuplex<IstioCertificateRequest, IstioCertificateResponse>(FanoutPath, IstioCertificateRequest.Parser,
            async (requests, writer, context) =>
            {
                await foreach (var request in requests)
                {
                    var producers = new Task[4];
                    for (var p = 0; p < producers.Length; p++)
                    {
                        var producer = p;
                        producers[p] = Task.Run(async () =>
                        {
                            for (var i = 0; i < 50; i++)
                            {
                                var response = new IstioCertificateResponse();
                                response.CertChain.Add($"{request.Csr}/{producer}/{i}");
                                response.CertChain.Add(new string('x', 1000 + i));
                                await writer.WriteAsync(response);
                            }
                        });
                    }

                    await Task.WhenAll(producers);
                }
            });

        endpoints.MapPost(Http503Path, (HttpContext http) =>
        {
            http.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            return Task.CompletedTask;
        });
    }

    private static async Task<IstioCertificateResponse> UnaryAsync(GrpcTestHost host, IstioCertificateRequest request, GrpcServerCallContext context)
    {
        var csr = request.Csr;
        if (csr.StartsWith("fail:", StringComparison.Ordinal))
        {
            throw ParseFailure(csr);
        }

        if (csr == "throw")
        {
            throw new InvalidOperationException("secret internal detail");
        }

        if (csr.StartsWith("delay:", StringComparison.Ordinal))
        {
            host.DelayStarted.TrySetResult();
            try
            {
                await Task.Delay(int.Parse(csr.AsSpan(6), CultureInfo.InvariantCulture), context.CancellationToken);
                host.DelayOutcome.TrySetResult("elapsed");
            }
            catch (OperationCanceledException)
            {
                host.DelayOutcome.TrySetResult("cancelled");
                throw;
            }
        }

        var response = new IstioCertificateResponse();
        if (csr.StartsWith("big:", StringComparison.Ordinal))
        {
            response.CertChain.Add(new string('b', int.Parse(csr.AsSpan(4), CultureInfo.InvariantCulture)));
            return response;
        }

        response.CertChain.Add(csr);
        response.CertChain.Add("authorization=" + context.GetMetadata("authorization"));
        response.CertChain.Add("clusterid=" + context.GetMetadata("clusterid"));
        response.CertChain.Add("deadline=" + (context.Deadline.HasValue ? "set" : "none"));
        response.CertChain.Add("client=" + context.ClientCertificate?.Subject);
        response.CertChain.Add("peer=" + context.Peer);
        response.CertChain.Add("validity=" + request.ValidityDuration.ToString(CultureInfo.InvariantCulture));
        return response;
    }

    // "fail:<code>:<message>"
    private static GrpcException ParseFailure(string csr)
    {
        var rest = csr.AsSpan(5);
        var colon = rest.IndexOf(':');
        var code = (GrpcStatusCode)int.Parse(rest[..colon], CultureInfo.InvariantCulture);
        return new GrpcException(code, rest[(colon + 1)..].ToString());
    }

    public async ValueTask DisposeAsync()
    {
        Invoker.Dispose();
        _handler.Dispose();
        await Server.DisposeAsync();
        ServerCertificate?.Dispose();
        _clientCertificate?.Dispose();
    }
}
