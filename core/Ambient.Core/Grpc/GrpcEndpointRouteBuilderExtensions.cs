using System.Runtime.CompilerServices;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Core.Grpc;

/// <summary>Maps gRPC methods onto ASP.NET Core endpoint routing (one POST endpoint per method path).</summary>
internal static class GrpcEndpointRouteBuilderExtensions
{
    private const string LoggerCategory = "Ambient.Core.Grpc.GrpcServer";

    // Builders that already have the UNIMPLEMENTED catch-all, so mapping many methods adds it once.
    private static readonly ConditionalWeakTable<IEndpointRouteBuilder, object> FallbackMapped = new();

    /// <summary>
    /// Maps a unary method at <paramref name="path"/> (e.g. "/istio.v1.auth.IstioCertificateService/CreateCertificate").
    /// The handler throws <see cref="GrpcException"/> to return a non-OK status.
    /// </summary>
    public static IEndpointConventionBuilder MapGrpcUnary<TRequest, TResponse>(
        this IEndpointRouteBuilder endpoints, string path, MessageParser<TRequest> parser,
        Func<TRequest, GrpcServerCallContext, Task<TResponse>> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(parser);
        ArgumentNullException.ThrowIfNull(handler);
        ValidatePath(path);
        var logger = CreateLogger(endpoints);
        EnsureFallback(endpoints, logger);

        RequestDelegate requestDelegate = async http =>
        {
            using var call = GrpcServerCall.TryStart(http, logger);
            if (call is null)
            {
                return;
            }

            Exception? failure = null;
            TResponse? response = null;
            try
            {
                var request = await call.ReadSingleMessageAsync(parser).ConfigureAwait(false);
                response = await handler(request, call.Context).ConfigureAwait(false)
                    ?? throw new InvalidOperationException($"gRPC handler for {path} returned null");
            }
            catch (Exception ex)
            {
                failure = ex;
            }

            var (status, detail) = call.MapOutcome(failure);
            if (status == GrpcStatusCode.Cancelled && http.RequestAborted.IsCancellationRequested)
            {
                return; // the stream is gone; nothing can reach the client
            }

            if (status == GrpcStatusCode.OK)
            {
                GrpcServerCall.PrepareResponse(http.Response);
                GrpcFraming.WriteMessage(http.Response.BodyWriter, response!);
            }

            GrpcServerCall.WriteStatus(http, status, detail);
        };

        return endpoints.MapPost(path, requestDelegate);
    }

    /// <summary>
    /// Maps a bidirectional streaming method. Response headers are sent when the call starts so the client sees
    /// the call accepted before the first message; the status goes in the trailers when the handler returns.
    /// </summary>
    public static IEndpointConventionBuilder MapGrpcDuplex<TRequest, TResponse>(
        this IEndpointRouteBuilder endpoints, string path, MessageParser<TRequest> parser,
        Func<IAsyncEnumerable<TRequest>, GrpcStreamWriter<TResponse>, GrpcServerCallContext, Task> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(parser);
        ArgumentNullException.ThrowIfNull(handler);
        ValidatePath(path);
        var logger = CreateLogger(endpoints);
        EnsureFallback(endpoints, logger);

        RequestDelegate requestDelegate = async http =>
        {
            using var call = GrpcServerCall.TryStart(http, logger);
            if (call is null)
            {
                return;
            }

            var writer = new GrpcStreamWriter<TResponse>(http.Response.BodyWriter, call.Context.CancellationToken);
            Exception? failure = null;
            try
            {
                GrpcServerCall.PrepareResponse(http.Response);
                await http.Response.StartAsync(call.Context.CancellationToken).ConfigureAwait(false);
                await handler(call.ReadAllMessagesAsync(parser), writer, call.Context).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                failure = ex;
            }
            finally
            {
                // Stop writes still in flight (a handler that forgot to await one), then refuse new ones,
                // so no DATA frame can follow the trailers.
                call.Cancel();
                await writer.CompleteAsync().ConfigureAwait(false);
            }

            var (status, detail) = call.MapOutcome(failure);
            if (status == GrpcStatusCode.Cancelled && http.RequestAborted.IsCancellationRequested)
            {
                return;
            }

            GrpcServerCall.WriteStatus(http, status, detail);
        };

        return endpoints.MapPost(path, requestDelegate);
    }

    /// <summary>
    /// Answers gRPC requests to paths no method is mapped at with UNIMPLEMENTED (plain HTTP requests get 404).
    /// Added automatically by the Map methods; it sits at the lowest routing priority.
    /// </summary>
    public static IEndpointConventionBuilder MapGrpcUnimplemented(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        return MapFallbackCore(endpoints, CreateLogger(endpoints));
    }

    private static void EnsureFallback(IEndpointRouteBuilder endpoints, ILogger logger)
    {
        var added = false;
        FallbackMapped.GetValue(endpoints, _ =>
        {
            added = true;
            return new object();
        });
        if (added)
        {
            MapFallbackCore(endpoints, logger);
        }
    }

    private static IEndpointConventionBuilder MapFallbackCore(IEndpointRouteBuilder endpoints, ILogger logger)
    {
        RequestDelegate requestDelegate = http =>
        {
            var path = http.Request.Path.Value ?? string.Empty;
            if (!GrpcProtocol.IsGrpcContentType(http.Request.ContentType))
            {
                http.Response.StatusCode = StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            }

            GrpcLog.Unimplemented(logger, path);
            GrpcServerCall.WriteStatus(http, GrpcStatusCode.Unimplemented, $"Method is unimplemented: {path}");
            return Task.CompletedTask;
        };

        var builder = endpoints.MapPost("/{**grpcUnknownPath}", requestDelegate);
        builder.Add(endpoint =>
        {
            if (endpoint is RouteEndpointBuilder route)
            {
                route.Order = int.MaxValue; // lose to every real route, like MapFallback
            }
        });
        return builder;
    }

    private static void ValidatePath(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        // "/" Service-Name "/" {method name}: exactly what route patterns match literally.
        if (path[0] != '/' || path.IndexOf('/', 1) <= 1 || path.EndsWith('/') || path.AsSpan().IndexOfAny('{', '}', '*') >= 0)
        {
            throw new ArgumentException($"gRPC path '{path}' must look like /package.Service/Method", nameof(path));
        }
    }

    private static ILogger CreateLogger(IEndpointRouteBuilder endpoints) =>
        endpoints.ServiceProvider.GetService<ILoggerFactory>()?.CreateLogger(LoggerCategory) ?? NullLogger.Instance;
}
