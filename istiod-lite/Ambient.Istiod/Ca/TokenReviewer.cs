using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Ambient.Istiod.Ca;

/// <summary>
/// Asks the Kubernetes API whether a bearer token is valid for an audience (<c>authentication.k8s.io/v1</c>
/// TokenReview). A seam so the CA's rules can be tested without an API server.
/// </summary>
internal interface ITokenReviewer
{
    /// <summary>The API's verdict; throws <see cref="TokenReviewUnavailableException"/> when no verdict could be had.</summary>
    Task<TokenReviewVerdict> ReviewAsync(string token, string audience, CancellationToken cancellationToken);
}

/// <summary>TokenReview <c>status</c>: only what the CA reads.</summary>
internal sealed record TokenReviewVerdict(
    bool Authenticated,
    string? Error,
    string? Username,
    IReadOnlyList<string> Groups,
    IReadOnlyList<string> Audiences,
    IReadOnlyDictionary<string, IReadOnlyList<string>> Extra)
{
    public const string PodNameExtra = "authentication.kubernetes.io/pod-name";
    public const string PodUidExtra = "authentication.kubernetes.io/pod-uid";

    /// <summary>The single value of an <c>extra</c> entry; null when absent, empty, or not exactly one value.</summary>
    public string? SingleExtra(string key) =>
        Extra.TryGetValue(key, out var values) && values.Count == 1 && !string.IsNullOrEmpty(values[0]) ? values[0] : null;
}

/// <summary>The Kubernetes API could not be asked (connection, TLS, HTTP error): the caller should retry.</summary>
internal sealed class TokenReviewUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary><see cref="ITokenReviewer"/> over KubernetesClient: <c>POST /apis/authentication.k8s.io/v1/tokenreviews</c>.</summary>
internal sealed class KubernetesTokenReviewer(IKubernetes client) : ITokenReviewer
{
    public async Task<TokenReviewVerdict> ReviewAsync(string token, string audience, CancellationToken cancellationToken)
    {
        var review = new V1TokenReview
        {
            ApiVersion = "authentication.k8s.io/v1",
            Kind = "TokenReview",
            Spec = new V1TokenReviewSpec { Token = token, Audiences = [audience] },
        };
        V1TokenReview answer;
        try
        {
            answer = await client.AuthenticationV1.CreateTokenReviewAsync(review, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (HttpOperationException e)
        {
            // 401/403 here is istiod-lite's own credential or RBAC (it needs `create tokenreviews`), not the caller's.
            throw new TokenReviewUnavailableException(
                $"the Kubernetes API refused the TokenReview: HTTP {(int)e.Response.StatusCode} {e.Response.ReasonPhrase}" +
                ((int)e.Response.StatusCode is 401 or 403 ? " (istiod-lite's service account needs RBAC 'create' on tokenreviews.authentication.k8s.io)" : ""), e);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw new TokenReviewUnavailableException("the Kubernetes API could not be reached for a TokenReview: " + e.Message, e);
        }
        var status = answer?.Status;
        if (status is null)
        {
            return new TokenReviewVerdict(false, "the TokenReview came back without a status", null, [], [], new Dictionary<string, IReadOnlyList<string>>());
        }
        var extra = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        if (status.User?.Extra is { } extras)
        {
            foreach (var (key, values) in extras)
            {
                extra[key] = values is null ? [] : [.. values];
            }
        }
        return new TokenReviewVerdict(
            status.Authenticated == true,
            string.IsNullOrEmpty(status.Error) ? null : status.Error,
            status.User?.Username,
            status.User?.Groups is { } groups ? [.. groups] : [],
            status.Audiences is { } audiences ? [.. audiences] : [],
            extra);
    }
}
