using System.Text;
using Ambient.Istiod.Ca;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>
/// Answers TokenReviews as the API server does for the tokens it was told about: a token whose audiences do not
/// include the one asked for is not authenticated, with the API server's error text.
/// </summary>
internal sealed class FakeTokenReviewer : ITokenReviewer
{
    private readonly Dictionary<string, Issued> _tokens = new(StringComparer.Ordinal);

    private sealed record Issued(string Namespace, string ServiceAccount, string[] Audiences, string? PodName, string? PodUid);

    public int Reviews { get; private set; }

    public bool Unreachable { get; set; }

    /// <summary>An API server that is not audience-aware: it authenticates any audience and answers no <c>status.audiences</c>.</summary>
    public bool IgnoresAudiences { get; set; }

    /// <summary>
    /// A JWT-shaped token for <paramref name="serviceAccount"/> with <paramref name="expires"/> as its <c>exp</c> (none
    /// when null), bound to a pod when <paramref name="podName"/> is given.
    /// </summary>
    public string Issue(string @namespace, string serviceAccount, string? podName = null, string? podUid = null,
        DateTimeOffset? expires = null, params string[] audiences)
    {
        var claims = new StringBuilder("{\"sub\":\"system:serviceaccount:").Append(@namespace).Append(':').Append(serviceAccount).Append('"');
        if (expires is { } exp)
        {
            claims.Append(",\"exp\":").Append(exp.ToUnixTimeSeconds());
        }
        claims.Append(",\"n\":").Append(_tokens.Count).Append('}');
        var token = Base64Url("{\"alg\":\"RS256\"}") + "." + Base64Url(claims.ToString()) + ".c2ln";
        _tokens[token] = new Issued(@namespace, serviceAccount, audiences.Length == 0 ? [ServiceAccountTokenPolicy.Audience] : audiences, podName, podUid);
        return token;
    }

    public Task<TokenReviewVerdict> ReviewAsync(string token, string audience, CancellationToken cancellationToken)
    {
        Reviews++;
        if (Unreachable)
        {
            throw new TokenReviewUnavailableException("the Kubernetes API could not be reached for a TokenReview: connection refused");
        }
        var none = new Dictionary<string, IReadOnlyList<string>>();
        if (!_tokens.TryGetValue(token, out var issued))
        {
            return Task.FromResult(new TokenReviewVerdict(false, "invalid bearer token", null, [], [], none));
        }
        if (!IgnoresAudiences && Array.IndexOf(issued.Audiences, audience) < 0)
        {
            return Task.FromResult(new TokenReviewVerdict(false,
                $"[invalid bearer token, token audiences [\"{string.Join("\",\"", issued.Audiences)}\"] is invalid for the target audiences [\"{audience}\"]]",
                null, [], [], none));
        }
        var extra = new Dictionary<string, IReadOnlyList<string>>();
        if (issued.PodName is not null)
        {
            extra[TokenReviewVerdict.PodNameExtra] = [issued.PodName];
        }
        if (issued.PodUid is not null)
        {
            extra[TokenReviewVerdict.PodUidExtra] = [issued.PodUid];
        }
        return Task.FromResult(new TokenReviewVerdict(true, null, $"system:serviceaccount:{issued.Namespace}:{issued.ServiceAccount}",
            ["system:serviceaccounts", "system:serviceaccounts:" + issued.Namespace, "system:authenticated"], IgnoresAudiences ? [] : [audience], extra));
    }

    private static string Base64Url(string json) => System.Buffers.Text.Base64Url.EncodeToString(Encoding.UTF8.GetBytes(json));
}
