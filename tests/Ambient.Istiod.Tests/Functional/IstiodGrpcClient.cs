using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Protos.Ca;
using Ambient.Core.Protos.Discovery;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>
/// Grpc.Net.Client against a running istiod-lite, trusting only its root. The methods are declared here because the
/// generated client stubs live in the ztunnel, which this test project does not reference.
/// </summary>
internal sealed class IstiodGrpcClient : IDisposable
{
    public static readonly Method<IstioCertificateRequest, IstioCertificateResponse> CreateCertificate =
        Declare<IstioCertificateRequest, IstioCertificateResponse>(MethodType.Unary, "istio.v1.auth.IstioCertificateService", "CreateCertificate", IstioCertificateResponse.Parser);

    public static readonly Method<DeltaDiscoveryRequest, DeltaDiscoveryResponse> DeltaAggregatedResources =
        Declare<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(MethodType.DuplexStreaming, "envoy.service.discovery.v3.AggregatedDiscoveryService", "DeltaAggregatedResources", DeltaDiscoveryResponse.Parser);

    private readonly GrpcChannel _channel;

    public IstiodGrpcClient(IstiodFixture istiod)
        : this(istiod.Root, istiod.Target)
    {
    }

    /// <param name="rootPath">The trust bundle istiod-lite hands out (PEM).</param>
    /// <param name="target">host:port of its gRPC listener.</param>
    public IstiodGrpcClient(string rootPath, string target)
    {
        var root = X509Certificate2.CreateFromPem(File.ReadAllText(rootPath));
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                TargetHost = "istiod.istio-system.svc",
                CertificateChainPolicy = new X509ChainPolicy
                {
                    TrustMode = X509ChainTrustMode.CustomRootTrust,
                    CustomTrustStore = { root },
                    RevocationMode = X509RevocationMode.NoCheck,
                },
            },
        };
        _channel = GrpcChannel.ForAddress($"https://{target}", new GrpcChannelOptions
        {
            HttpHandler = handler,
            MaxReceiveMessageSize = null,
            MaxSendMessageSize = null,
        });
        Invoker = _channel.CreateCallInvoker();
    }

    public CallInvoker Invoker { get; }

    public static Metadata BearerOf(string token) => [new("authorization", "Bearer " + token)];

    public AsyncDuplexStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse> StartDiscovery(Metadata headers, CancellationToken cancellationToken = default, DateTime? deadline = null) =>
        Invoker.AsyncDuplexStreamingCall(DeltaAggregatedResources, null, new CallOptions(headers, deadline, cancellationToken));

    public void Dispose() => _channel.Dispose();

    private static Method<TRequest, TResponse> Declare<TRequest, TResponse>(MethodType type, string service, string name, MessageParser<TResponse> parser)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse> =>
        new(type, service, name, Marshallers.Create<TRequest>(m => m.ToByteArray(), _ => throw new NotSupportedException()),
            Marshallers.Create(m => m.ToByteArray(), parser.ParseFrom));
}
