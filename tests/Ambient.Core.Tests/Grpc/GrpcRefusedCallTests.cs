using Ambient.Core.Grpc;
using Ambient.Core.Protos.Ca;

namespace Ambient.Core.Tests.Grpc;

/// <summary>
/// A call the server refuses at once: the writer, not the reader, sees the end first (the request stream is torn
/// down right after the answer). The write must fail as a gRPC error (not a raw transport exception), and the
/// server's status must still be there for the reader.
/// </summary>
public sealed class GrpcRefusedCallTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_refused_call_fails_writes_as_grpc_errors_and_keeps_the_status_for_the_reader(bool tls)
    {
        await using var host = await GrpcTestHost.StartAsync(tls);
        await using var call = host.Client.StartDuplex<IstioCertificateRequest, IstioCertificateResponse>(
            GrpcTestHost.RefusePath, IstioCertificateResponse.Parser, cancellationToken: Ct);

        // Writes may be buffered before the reset arrives; keep writing (bounded) until one fails.
        GrpcException? failure = null;
        for (var i = 0; i < 200 && failure is null; i++)
        {
            try
            {
                await call.WriteAsync(new IstioCertificateRequest { Csr = "m" + i }, Ct);
                await Task.Delay(10, Ct);
            }
            catch (GrpcException ex)
            {
                failure = ex;
            }
        }

        Assert.NotNull(failure);
        var status = await Assert.ThrowsAsync<GrpcException>(async () =>
        {
            await foreach (var unused in call.ReadAllAsync(Ct))
            {
            }
        });
        Assert.Equal(GrpcStatusCode.Unauthenticated, status.Status);
        Assert.Equal("bad token", status.Detail);
    }
}
