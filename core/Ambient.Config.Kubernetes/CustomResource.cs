using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace Ambient.Config.Kubernetes;

/// <summary>
/// An object of a custom resource kind (Gateway API, Istio security) as the API server sends it: typed metadata, the
/// rest kept as JSON. KubernetesClient has no models for these kinds; the manifest parser validates them as it does a
/// file's, so both sources accept and reject the same specs.
/// </summary>
internal sealed class CustomResource : IKubernetesObject<V1ObjectMeta>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = "";

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public JsonElement? Spec { get; set; }

    [JsonPropertyName("status")]
    public JsonElement? Status { get; set; }
}

/// <summary>A list of <see cref="CustomResource"/>s (what <c>GET /apis/group/version/plural</c> answers).</summary>
internal sealed class CustomResourceList : IKubernetesObject<V1ListMeta>, IItems<CustomResource>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = "";

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "";

    [JsonPropertyName("metadata")]
    public V1ListMeta Metadata { get; set; } = new();

    [JsonPropertyName("items")]
    public IList<CustomResource> Items { get; set; } = [];
}
