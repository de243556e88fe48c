using System.Text;
using Ambient.TestCommon.Kube;

namespace Ambient.E2E.Tests;

/// <summary>Projected service-account tokens as the kubelet mounts them, registered with the fake API server.</summary>
internal static class ProjectedTokens
{
    /// <summary>
    /// A pod-bound token with audience istio-ca, JWT-shaped and expiring in an hour (istiod-lite caches its review
    /// until then at most), that the fake's TokenReview answers for.
    /// </summary>
    public static string Add(FakeKubeApiServer api, string ns, string serviceAccount, string pod, string podUid, string node)
    {
        static string B64(string s) => System.Buffers.Text.Base64Url.EncodeToString(Encoding.UTF8.GetBytes(s));
        var exp = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
        var token = $"{B64("{\"alg\":\"RS256\"}")}.{B64($"{{\"aud\":[\"istio-ca\"],\"exp\":{exp},\"uid\":\"{podUid}\"}}")}.c2ln";
        return api.AddServiceAccountToken(ns, serviceAccount, ["istio-ca"], pod, podUid, node, token);
    }
}
