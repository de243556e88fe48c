using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Hbone.Telemetry;
using k8s.Models;

namespace Ambient.Config.Kubernetes;

/// <summary>
/// What one API object contributes to the config: the resource the folder source would have produced from the same
/// manifest (null when the object is not part of the mesh, such as a finished pod, or when it is rejected) and the
/// errors found in it, each naming the object (<see cref="SourceLocation.ForObject"/>).
/// </summary>
internal sealed record ObjectConversion(Resource? Resource, ImmutableArray<ConfigError> Errors)
{
    public static ObjectConversion None { get; } = new(null, []);

    public bool Equals(ObjectConversion? other) =>
        ReferenceEquals(this, other)
        || (other is not null && Equals(Resource, other.Resource) && ValueEquality.Equal(Errors, other.Errors));

    public override int GetHashCode() => HashCode.Combine(Resource, ValueEquality.Hash(Errors));
}

/// <summary>
/// KubernetesClient objects to config records. Core kinds (already validated by the API server) are mapped field by
/// field; custom resources go through <see cref="ManifestParser"/>, the folder source's validation, so a spec the
/// folder rejects is rejected here with the same message. One code path after this: the same records, the same
/// model builder.
/// </summary>
internal static class KubernetesObjects
{
    // What kubectl apply keeps on every object it touches: a copy of the whole manifest, never read by the mesh.
    private const string LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration";

    public static ObjectConversion Namespace(V1Namespace ns)
    {
        var meta = Meta(ns.Metadata, clusterScoped: true);
        return new ObjectConversion(new NamespaceResource(ns.ApiVersion ?? "v1", meta, Location("Namespace", meta)), []);
    }

    public static ObjectConversion ServiceAccount(V1ServiceAccount sa)
    {
        var meta = Meta(sa.Metadata, clusterScoped: false);
        return new ObjectConversion(new ServiceAccountResource(sa.ApiVersion ?? "v1", meta, Location("ServiceAccount", meta)), []);
    }

    /// <summary>
    /// A pod is a workload while it can run: Istio's ambient index leaves out finished pods (phase Succeeded or Failed),
    /// and a pod without an address yet (not started) has nothing to publish. Host-network pods share their node's
    /// address and are not captured, so they are left out as well. Not-ready pods stay, marked not ready.
    /// </summary>
    public static ObjectConversion Pod(V1Pod pod)
    {
        var meta = Meta(pod.Metadata, clusterScoped: false);
        var phase = pod.Status?.Phase;
        if (phase is "Succeeded" or "Failed" || pod.Spec?.HostNetwork == true)
        {
            return ObjectConversion.None;
        }
        var ip = FirstPodIp(pod.Status);
        if (ip is null)
        {
            return ObjectConversion.None;
        }
        var source = Location("Pod", meta);
        if (!IsIp(ip))
        {
            return new ObjectConversion(null, [new ConfigError(source, "status.podIPs[0].ip", $"'{LogText.Clip(ip)}' is not an IP address; the pod is left out")]);
        }
        // Dual-stack: status.podIPs holds one address per family, the first equal to status.podIP; Istio publishes all.
        var secondary = ImmutableArray<string>.Empty;
        if (pod.Status?.PodIPs is { Count: > 1 } podIps)
        {
            var others = ImmutableArray.CreateBuilder<string>(podIps.Count - 1);
            for (var i = 1; i < podIps.Count; i++)
            {
                var other = podIps[i].Ip;
                if (string.IsNullOrEmpty(other) || !IsIp(other))
                {
                    return new ObjectConversion(null, [new ConfigError(source, $"status.podIPs[{i}].ip", $"'{LogText.Clip(other ?? "")}' is not an IP address; the pod is left out")]);
                }
                others.Add(other);
            }
            secondary = others.MoveToImmutable();
        }
        var spec = pod.Spec;
        var containers = ImmutableArray.CreateBuilder<ContainerSpec>(spec?.Containers?.Count ?? 0);
        if (spec?.Containers is { } list)
        {
            foreach (var c in list)
            {
                containers.Add(Container(c));
            }
        }
        return new ObjectConversion(new PodResource(pod.ApiVersion ?? "v1", meta, source, ServiceAccountOf(spec),
            string.IsNullOrEmpty(spec?.NodeName) ? null : spec.NodeName, containers.MoveToImmutable(), ip)
        {
            Ready = IsReady(pod.Status),
            // The CA matches it against the pod a service-account token is bound to.
            Uid = pod.Metadata?.Uid,
            SecondaryPodIPs = secondary,
        }, []);
    }

    /// <summary>The pod's service account: spec.serviceAccountName, else the deprecated spec.serviceAccount, else "default".</summary>
    public static string ServiceAccountOf(V1PodSpec? spec) =>
        spec?.ServiceAccountName is { Length: > 0 } named ? named
        : spec?.ServiceAccount is { Length: > 0 } legacy ? legacy
        : ServiceAccountReferences.DefaultServiceAccount;

    public static ObjectConversion Service(V1Service svc)
    {
        var meta = Meta(svc.Metadata, clusterScoped: false);
        var source = Location("Service", meta);
        var spec = svc.Spec;
        var ports = ImmutableArray.CreateBuilder<ServicePortSpec>(spec?.Ports?.Count ?? 0);
        var errors = ImmutableArray.CreateBuilder<ConfigError>();
        if (spec?.Ports is { } list)
        {
            for (var i = 0; i < list.Count; i++)
            {
                var p = list[i];
                TargetPort target;
                var text = p.TargetPort?.Value;
                if (string.IsNullOrEmpty(text))
                {
                    target = TargetPort.FromNumber(p.Port);
                }
                else if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number))
                {
                    target = TargetPort.FromNumber(number);
                }
                else
                {
                    target = TargetPort.FromName(text);
                }
                ports.Add(new ServicePortSpec(NullIfEmpty(p.Name), p.Port, target, NullIfEmpty(p.AppProtocol), p.Protocol is { Length: > 0 } protocol ? protocol : "TCP"));
            }
        }
        var clusterIp = spec?.ClusterIP;
        if (clusterIp is { Length: > 0 } && clusterIp != "None" && !IsIp(clusterIp))
        {
            errors.Add(new ConfigError(source, "spec.clusterIP", $"'{LogText.Clip(clusterIp)}' is not an IP address; the service is left out"));
            return new ObjectConversion(null, errors.ToImmutable());
        }
        // Dual-stack: spec.clusterIPs holds one VIP per spec.ipFamilies entry, the first equal to spec.clusterIP.
        var secondary = ImmutableArray<string>.Empty;
        if (spec?.ClusterIPs is { Count: > 1 } clusterIps && clusterIp is { Length: > 0 } && clusterIp != "None")
        {
            var others = ImmutableArray.CreateBuilder<string>(clusterIps.Count - 1);
            for (var i = 1; i < clusterIps.Count; i++)
            {
                if (!IsIp(clusterIps[i] ?? ""))
                {
                    errors.Add(new ConfigError(source, $"spec.clusterIPs[{i}]", $"'{LogText.Clip(clusterIps[i] ?? "")}' is not an IP address; the service is left out"));
                    return new ObjectConversion(null, errors.ToImmutable());
                }
                others.Add(clusterIps[i]);
            }
            secondary = others.MoveToImmutable();
        }
        return new ObjectConversion(new ServiceResource(svc.ApiVersion ?? "v1", meta, source, spec?.Type is { Length: > 0 } type ? type : "ClusterIP",
            NullIfEmpty(clusterIp), Map(spec?.Selector), ports.MoveToImmutable()) { SecondaryClusterIPs = secondary }, errors.ToImmutable());
    }

    /// <summary>
    /// An EndpointSlice, field by field. Addresses are kept as text and checked by the model builder, which skips an
    /// endpoint with an address that is not an IP (Istio: "if any invalid, skip"); the API server validates them anyway.
    /// </summary>
    public static ObjectConversion EndpointSlice(V1EndpointSlice slice)
    {
        var meta = Meta(slice.Metadata, clusterScoped: false);
        var endpoints = ImmutableArray.CreateBuilder<EndpointSliceEndpoint>(slice.Endpoints?.Count ?? 0);
        if (slice.Endpoints is { } list)
        {
            foreach (var e in list)
            {
                ObjectKeyRef? pod = null;
                if (e.TargetRef is { Kind: "Pod", Name: { Length: > 0 } podName } target)
                {
                    pod = new ObjectKeyRef(string.IsNullOrEmpty(target.NamespaceProperty) ? meta.Namespace : target.NamespaceProperty, podName);
                }
                endpoints.Add(new EndpointSliceEndpoint(Strings(e.Addresses), e.Conditions?.Ready ?? true, pod));
            }
        }
        var ports = ImmutableArray.CreateBuilder<EndpointSlicePort>(slice.Ports?.Count ?? 0);
        if (slice.Ports is { } portList)
        {
            foreach (var p in portList)
            {
                if (p.Port is { } number)
                {
                    ports.Add(new EndpointSlicePort(NullIfEmpty(p.Name), number, p.Protocol is { Length: > 0 } protocol ? protocol : "TCP"));
                }
            }
        }
        return new ObjectConversion(new EndpointSliceResource(slice.ApiVersion ?? "discovery.k8s.io/v1", meta, Location("EndpointSlice", meta),
            slice.AddressType ?? "IPv4", endpoints.MoveToImmutable(), ports.DrainToImmutable()), []);
    }

    /// <summary>
    /// A custom resource, validated by the folder source's parser: the object is written back as the manifest a user
    /// would keep in a file (apiVersion, kind, metadata, spec), so the two sources cannot drift apart. Errors are
    /// re-addressed from "line 1 of a file" to the object.
    /// </summary>
    public static ObjectConversion Custom(CustomResource cr, string kind)
    {
        var meta = Meta(cr.Metadata, clusterScoped: false);
        var source = Location(kind, meta);
        var manifest = ManifestJson(cr, kind);
        var parsed = ManifestParser.Parse(source.File, manifest);
        var errors = ImmutableArray.CreateBuilder<ConfigError>(parsed.Errors.Length);
        foreach (var e in parsed.Errors)
        {
            errors.Add(e with { Source = source });
        }
        Resource? resource = null;
        if (parsed.Errors.IsEmpty && parsed.Resources.Length == 1)
        {
            resource = parsed.Resources[0] with { Source = source };
        }
        return new ObjectConversion(resource, errors.MoveToImmutable());
    }

    private static string ManifestJson(CustomResource cr, string kind)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("apiVersion", cr.ApiVersion);
            json.WriteString("kind", kind);
            json.WriteStartObject("metadata");
            json.WriteString("name", cr.Metadata?.Name ?? "");
            json.WriteString("namespace", cr.Metadata?.NamespaceProperty ?? "");
            WriteMap(json, "labels", cr.Metadata?.Labels);
            WriteMap(json, "annotations", cr.Metadata?.Annotations);
            json.WriteEndObject();
            if (cr.Spec is { } spec)
            {
                json.WritePropertyName("spec");
                spec.WriteTo(json);
            }
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.GetBuffer(), 0, (int)stream.Length);

        static void WriteMap(Utf8JsonWriter json, string name, IDictionary<string, string>? map)
        {
            if (map is null)
            {
                return;
            }
            json.WriteStartObject(name);
            foreach (var (k, v) in map)
            {
                if (k != LastAppliedAnnotation)
                {
                    json.WriteString(k, v);
                }
            }
            json.WriteEndObject();
        }
    }

    private static ContainerSpec Container(V1Container c)
    {
        var ports = ImmutableArray.CreateBuilder<ContainerPort>(c.Ports?.Count ?? 0);
        if (c.Ports is { } list)
        {
            foreach (var p in list)
            {
                ports.Add(new ContainerPort(NullIfEmpty(p.Name), p.ContainerPort, p.Protocol is { Length: > 0 } protocol ? protocol : "TCP"));
            }
        }
        // Only literal values: a valueFrom needs the kubelet, and the mesh reads no environment of a real pod anyway.
        var env = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        if (c.Env is { } vars)
        {
            foreach (var e in vars)
            {
                if (e.Name is { Length: > 0 } && e.ValueFrom is null)
                {
                    env[e.Name] = e.Value ?? "";
                }
            }
        }
        return new ContainerSpec(c.Name ?? "", c.Image, Strings(c.Command), Strings(c.Args), ports.MoveToImmutable(), env.ToImmutable());
    }

    private static string? FirstPodIp(V1PodStatus? status)
    {
        if (status?.PodIPs is { Count: > 0 } ips && !string.IsNullOrEmpty(ips[0].Ip))
        {
            return ips[0].Ip;
        }
        return string.IsNullOrEmpty(status?.PodIP) ? null : status.PodIP;
    }

    private static bool IsReady(V1PodStatus? status)
    {
        if (status?.Conditions is not { } conditions)
        {
            return false;
        }
        foreach (var c in conditions)
        {
            if (c.Type == "Ready")
            {
                return c.Status == "True";
            }
        }
        return false;
    }

    private static bool IsIp(string text) =>
        IPAddress.TryParse(text, out var ip) && (ip.AddressFamily != AddressFamily.InterNetwork || ip.ToString() == text);

    internal static ObjectMeta Meta(V1ObjectMeta? meta, bool clusterScoped)
    {
        var annotations = meta?.Annotations;
        ImmutableSortedDictionary<string, string> kept;
        if (annotations is not null && annotations.ContainsKey(LastAppliedAnnotation))
        {
            var builder = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
            foreach (var (k, v) in annotations)
            {
                if (k != LastAppliedAnnotation)
                {
                    builder[k] = v;
                }
            }
            kept = builder.ToImmutable();
        }
        else
        {
            kept = Map(annotations);
        }
        return new ObjectMeta(meta?.Name ?? "", clusterScoped ? "" : meta?.NamespaceProperty ?? "default", Map(meta?.Labels), kept);
    }

    private static SourceLocation Location(string kind, ObjectMeta meta) => SourceLocation.ForObject(kind, meta.Namespace, meta.Name);

    private static ImmutableSortedDictionary<string, string> Map(IDictionary<string, string>? map) =>
        map is null || map.Count == 0
            ? ImmutableSortedDictionary<string, string>.Empty
            : ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, map);

    private static ImmutableArray<string> Strings(IList<string>? list) => list is null || list.Count == 0 ? [] : [.. list];

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;
}
