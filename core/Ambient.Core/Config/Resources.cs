using System.Collections.Immutable;

namespace Ambient.Core.Config;

// Typed forms of the Kubernetes-style resources users write. The folder source and (later) the
// Kubernetes API source both produce these; the model builder turns them into a MeshSnapshot.
// Records are immutable and compared by value, so an unchanged file yields equal resources.

/// <summary>Where a resource (or an error) came from: file path and 1-based line of its document.</summary>
public sealed record SourceLocation(string File, int Line)
{
    public override string ToString() => $"{File}:{Line}";
}

public sealed record ObjectMeta(
    string Name,
    string Namespace,
    ImmutableSortedDictionary<string, string> Labels,
    ImmutableSortedDictionary<string, string> Annotations)
{
    public string? Label(string key) => Labels.TryGetValue(key, out var v) ? v : null;
}

public abstract record Resource(string ApiVersion, string Kind, ObjectMeta Metadata, SourceLocation Source)
{
    /// <summary>Identity of the resource within a config set: kind/namespace/name.</summary>
    public string Key => Kind + "/" + Metadata.Namespace + "/" + Metadata.Name;
}

public sealed record NamespaceResource(string ApiVersion, ObjectMeta Metadata, SourceLocation Source)
    : Resource(ApiVersion, "Namespace", Metadata, Source);

public sealed record ServiceAccountResource(string ApiVersion, ObjectMeta Metadata, SourceLocation Source)
    : Resource(ApiVersion, "ServiceAccount", Metadata, Source);

public sealed record ContainerPort(string? Name, int Port, string Protocol);

public sealed record ContainerSpec(
    string Name,
    string? Image,
    ImmutableArray<string> Command,
    ImmutableArray<string> Args,
    ImmutableArray<ContainerPort> Ports,
    ImmutableSortedDictionary<string, string> Env);

public sealed record PodResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    string ServiceAccountName,
    string? NodeName,
    ImmutableArray<ContainerSpec> Containers,
    string? PodIP)
    : Resource(ApiVersion, "Pod", Metadata, Source);

/// <summary>A Service targetPort: either a number or the name of a container port.</summary>
public readonly record struct TargetPort(int Number, string? Name)
{
    public static TargetPort FromNumber(int n) => new(n, null);
    public static TargetPort FromName(string name) => new(0, name);
    public bool IsNamed => Name is not null;
    public override string ToString() => Name ?? Number.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

public sealed record ServicePortSpec(string? Name, int Port, TargetPort TargetPort, string? AppProtocol, string Protocol);

public sealed record ServiceResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    string Type,
    string? ClusterIP,
    ImmutableSortedDictionary<string, string> Selector,
    ImmutableArray<ServicePortSpec> Ports)
    : Resource(ApiVersion, "Service", Metadata, Source);

/// <summary>A kind we do not understand yet: kept so nothing is silently lost, reported once as ignored.</summary>
public sealed record UnknownResource(string ApiVersion, string Kind, ObjectMeta Metadata, SourceLocation Source)
    : Resource(ApiVersion, Kind, Metadata, Source);

/// <summary>A rejected document or field, named precisely enough to fix: file:line, field path, what is wrong.</summary>
public sealed record ConfigError(SourceLocation Source, string Field, string Message)
{
    public override string ToString() => $"{Source}: {Field}: {Message}";
}
