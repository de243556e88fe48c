using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using Ambient.Core.Grpc;
using Ambient.Core.Protos.Ca;
using Google.Protobuf;

namespace Ambient.Core.Tests.Grpc;

/// <summary>
/// Our server seen through a raw HttpClient request: exact frames on the wire (messages split across DATA frames,
/// several in one frame), headers, trailers-only responses and percent-encoding as bytes.
/// </summary>
public sealed class GrpcWireTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Messages_split_across_frames_and_packed_into_one_frame_are_all_echoed(bool tls)
    {
        await using var host = await GrpcTestHost.StartAsync(tls);
        var messages = new List<byte[]>();
        for (var i = 0; i < 6; i++)
        {
            messages.Add(Frame(new IstioCertificateRequest { Csr = "msg" + i + new string('p', i * 3000) }));
        }

        // Writes (each flushed = its own DATA frame): msg0 cut into 1-byte, 3-byte and rest pieces (header split
        // too); msg1+msg2+msg3 in one write; msg4 and the first half of msg5 together; then the rest of msg5.
        var all = Concat(messages[1], messages[2], messages[3]);
        var tail = Concat(messages[4], messages[5][..(messages[5].Length / 2)]);
        var pieces = new List<byte[]>
        {
            messages[0][..1], messages[0][1..4], messages[0][4..], all, tail, messages[5][(messages[5].Length / 2)..],
        };

        using var request = RawRequest(host, GrpcTestHost.EchoPath, new PiecewiseContent(pieces));
        using var response = await host.Invoker.SendAsync(request, Ct);
        var body = await response.Content.ReadAsByteArrayAsync(Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/grpc", response.Content.Headers.ContentType?.MediaType);
        var echoed = ParseFrames(body);
        Assert.Equal(6, echoed.Count);
        for (var i = 0; i < 6; i++)
        {
            Assert.Equal("msg" + i + new string('p', i * 3000), echoed[i].CertChain[0]);
        }

        Assert.Equal("0", Trailer(response, "grpc-status"));
    }

    [Fact]
    public async Task Wrong_content_type_is_http_415()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        using var request = RawRequest(host, GrpcTestHost.UnaryPath, new ByteArrayContent(Frame(new IstioCertificateRequest())));
        request.Content!.Headers.ContentType = new MediaTypeHeaderValue("application/json");

        using var response = await host.Invoker.SendAsync(request, Ct);

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
    }

    [Fact]
    public async Task Server_enforces_grpc_timeout_header_with_deadline_exceeded()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        using var request = RawRequest(host, GrpcTestHost.UnaryPath, new ByteArrayContent(Frame(new IstioCertificateRequest { Csr = "delay:20000" })));
        request.Headers.TryAddWithoutValidation("grpc-timeout", "200m");

        using var response = await host.Invoker.SendAsync(request, Ct);
        var body = await response.Content.ReadAsByteArrayAsync(Ct);

        // Trailers-Only: status in the headers, empty body.
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Empty(body);
        Assert.Equal("4", Header(response, "grpc-status"));
        Assert.Equal("cancelled", await host.DelayOutcome.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct));
    }

    [Fact]
    public async Task Error_message_is_percent_encoded_on_the_wire()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        using var request = RawRequest(host, GrpcTestHost.UnaryPath, new ByteArrayContent(Frame(new IstioCertificateRequest { Csr = "fail:5:é 100%" })));

        using var response = await host.Invoker.SendAsync(request, Ct);

        Assert.Equal("5", Header(response, "grpc-status"));
        Assert.Equal("%C3%A9 100%25", Header(response, "grpc-message"));
    }

    [Fact]
    public async Task Unary_ok_response_has_message_then_status_trailers()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        using var request = RawRequest(host, GrpcTestHost.UnaryPath, new ByteArrayContent(Frame(new IstioCertificateRequest { Csr = "raw" })));

        using var response = await host.Invoker.SendAsync(request, Ct);
        var body = await response.Content.ReadAsByteArrayAsync(Ct);

        Assert.Equal("raw", Assert.Single(ParseFrames(body)).CertChain[0]);
        Assert.Equal("0", Trailer(response, "grpc-status"));
        Assert.Null(Header(response, "grpc-status"));
    }

    [Theory]
    [InlineData(null, "13")]     // compressed flag without grpc-encoding: INTERNAL
    [InlineData("gzip", "12")]   // compression we do not implement: UNIMPLEMENTED
    public async Task Compressed_message_is_rejected_per_spec(string? encoding, string expectedStatus)
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        var frame = Frame(new IstioCertificateRequest { Csr = "x" });
        frame[0] = 1;
        using var request = RawRequest(host, GrpcTestHost.UnaryPath, new ByteArrayContent(frame));
        if (encoding is not null)
        {
            request.Headers.TryAddWithoutValidation("grpc-encoding", encoding);
        }

        using var response = await host.Invoker.SendAsync(request, Ct);

        Assert.Equal(expectedStatus, Header(response, "grpc-status"));
    }

    [Fact]
    public async Task Truncated_and_empty_unary_requests_are_internal()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        var frame = Frame(new IstioCertificateRequest { Csr = "truncated" });

        using var truncated = RawRequest(host, GrpcTestHost.UnaryPath, new ByteArrayContent(frame[..^2]));
        using var truncatedResponse = await host.Invoker.SendAsync(truncated, Ct);
        using var empty = RawRequest(host, GrpcTestHost.UnaryPath, new ByteArrayContent([]));
        using var emptyResponse = await host.Invoker.SendAsync(empty, Ct);

        Assert.Equal("13", Header(truncatedResponse, "grpc-status"));
        Assert.Contains("incomplete message", Uri.UnescapeDataString(Header(truncatedResponse, "grpc-message")!));
        Assert.Equal("13", Header(emptyResponse, "grpc-status"));
    }

    private static HttpRequestMessage RawRequest(GrpcTestHost host, string path, HttpContent content)
    {
        content.Headers.ContentType ??= new MediaTypeHeaderValue("application/grpc");
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(host.Server.BaseAddress, path))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = content,
        };
        request.Headers.TE.Add(new TransferCodingWithQualityHeaderValue("trailers"));
        return request;
    }

    private static byte[] Frame(IMessage message)
    {
        var payload = message.ToByteArray();
        var frame = new byte[5 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)payload.Length);
        payload.CopyTo(frame, 5);
        return frame;
    }

    private static byte[] Concat(params byte[][] parts)
    {
        var result = new List<byte>();
        foreach (var part in parts)
        {
            result.AddRange(part);
        }

        return result.ToArray();
    }

    private static List<IstioCertificateResponse> ParseFrames(byte[] body)
    {
        var result = new List<IstioCertificateResponse>();
        var buffer = new ReadOnlySequence<byte>(body);
        while (GrpcFraming.TryReadMessage(ref buffer, GrpcServerDefaults.MaxMessageSize, null, "Received", out var payload))
        {
            result.Add(IstioCertificateResponse.Parser.ParseFrom(payload));
        }

        Assert.Equal(0, buffer.Length);
        return result;
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : null;

    private static string? Trailer(HttpResponseMessage response, string name) =>
        response.TrailingHeaders.TryGetValues(name, out var values) ? string.Join(",", values) : null;

    /// <summary>Writes each piece separately and flushes, so each becomes its own HTTP/2 DATA frame.</summary>
    private sealed class PiecewiseContent(List<byte[]> pieces) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            foreach (var piece in pieces)
            {
                await stream.WriteAsync(piece, cancellationToken);
                await stream.FlushAsync(cancellationToken);
                await Task.Delay(30, cancellationToken); // let the server see this frame before the next one
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
