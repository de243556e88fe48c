using Ambient.Hbone.Telemetry;
using System.Collections.Immutable;
using Ambient.Core.Telemetry;
using Ambient.Core.Config;

namespace Ambient.Config.Yaml;

// Pod and Service specs: the fields the mesh uses, validated as the Kubernetes API server validates them.
// Fields we do not use are ignored (not rejected), so real-world manifests load unchanged.
internal static partial class ManifestParser
{
    private static PodResource? ReadPod(
        DocumentContext ctx, YamlMapping root, string prefix, string apiVersion, ObjectMeta metadata, SourceLocation source)
    {
        var specPath = DocumentContext.Field(prefix, "spec");
        var spec = ctx.Map(root.Get("spec"), specPath, root.Line, required: true);
        if (spec is null) return null;
        var podSpec = ReadPodSpec(ctx, spec, specPath);

        string? podIP = null;
        var statusPath = DocumentContext.Field(prefix, "status");
        var status = ctx.Map(root.Get("status"), statusPath, root.Line);
        if (status is not null) podIP = ctx.Str(status, "podIP", statusPath, check: Validation.IpAddress);

        var metadataMap = ctx.Map(root.Get("metadata"), DocumentContext.Field(prefix, "metadata"), root.Line);
        var uid = metadataMap is null ? null : ctx.Str(metadataMap, "uid", DocumentContext.Field(prefix, "metadata"));

        return new PodResource(apiVersion, metadata, source, podSpec.ServiceAccountName, podSpec.NodeName, podSpec.Containers, podIP)
        {
            Uid = uid,
        };
    }

    /// <summary>The fields of a pod spec the mesh uses: a Pod's <c>spec</c> or a Deployment's <c>spec.template.spec</c>.</summary>
    private readonly record struct PodSpecFields(string ServiceAccountName, string? NodeName, ImmutableArray<ContainerSpec> Containers);

    private static PodSpecFields ReadPodSpec(DocumentContext ctx, YamlMapping spec, string specPath)
    {
        // serviceAccount is the deprecated spelling; serviceAccountName wins when both are present.
        var serviceAccount = ctx.Str(spec, "serviceAccountName", specPath, check: Validation.Dns1123Subdomain)
            ?? ctx.Str(spec, "serviceAccount", specPath, check: Validation.Dns1123Subdomain)
            ?? "default";
        var nodeName = ctx.Str(spec, "nodeName", specPath, check: Validation.Dns1123Subdomain);

        var containersPath = DocumentContext.Field(specPath, "containers");
        var containers = ctx.Seq(spec.Get("containers"), containersPath, spec.Line, required: true);
        var specs = ImmutableArray.CreateBuilder<ContainerSpec>();
        var containerNames = new HashSet<string>(StringComparer.Ordinal);
        var portNames = new HashSet<string>(StringComparer.Ordinal);
        if (containers is not null)
        {
            for (int i = 0; i < containers.Items.Count; i++)
            {
                var path = DocumentContext.Index(containersPath, i);
                var c = ctx.Map(containers.Items[i], path, containers.Line, required: true);
                if (c is null) continue;
                var container = ReadContainer(ctx, c, path, portNames);
                if (container is null) continue;
                if (!containerNames.Add(container.Name))
                {
                    ctx.Error(c.Get("name")!.Line, DocumentContext.Field(path, "name"), $"Duplicate value: \"{LogText.Clip(container.Name)}\"");
                    continue;
                }
                specs.Add(container);
            }
        }

        return new PodSpecFields(serviceAccount, nodeName, specs.ToImmutable());
    }

    private static ContainerSpec? ReadContainer(DocumentContext ctx, YamlMapping c, string path, HashSet<string> podPortNames)
    {
        var name = ctx.Str(c, "name", path, required: true, check: Validation.Dns1123Label);
        var image = ctx.Str(c, "image", path);
        var command = ctx.StringList(c, "command", path);
        var args = ctx.StringList(c, "args", path);

        var portsPath = DocumentContext.Field(path, "ports");
        var ports = ImmutableArray.CreateBuilder<ContainerPort>();
        var portSeq = ctx.Seq(c.Get("ports"), portsPath, c.Line);
        if (portSeq is not null)
        {
            for (int i = 0; i < portSeq.Items.Count; i++)
            {
                var pPath = DocumentContext.Index(portsPath, i);
                var p = ctx.Map(portSeq.Items[i], pPath, portSeq.Line, required: true);
                if (p is null) continue;
                var portName = ctx.Str(p, "name", pPath, check: Validation.PortName);
                var number = ctx.Int(p, "containerPort", pPath, required: true);
                var protocol = ctx.Str(p, "protocol", pPath, check: Validation.Protocol) ?? "TCP";
                if (number is { } n && Validation.Port(n) is { } problem)
                {
                    ctx.Error(p.Get("containerPort")!.Line, DocumentContext.Field(pPath, "containerPort"), $"Invalid value: {n}: {problem}");
                    continue;
                }
                if (portName is not null && !podPortNames.Add(portName))
                {
                    ctx.Error(p.Get("name")!.Line, DocumentContext.Field(pPath, "name"), $"Duplicate value: \"{LogText.Clip(portName)}\"");
                    continue;
                }
                if (number is { } ok) ports.Add(new ContainerPort(portName, (int)ok, protocol));
            }
        }

        var envPath = DocumentContext.Field(path, "env");
        var env = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        var envSeq = ctx.Seq(c.Get("env"), envPath, c.Line);
        if (envSeq is not null)
        {
            for (int i = 0; i < envSeq.Items.Count; i++)
            {
                var ePath = DocumentContext.Index(envPath, i);
                var e = ctx.Map(envSeq.Items[i], ePath, envSeq.Line, required: true);
                if (e is null) continue;
                var envName = ctx.Str(e, "name", ePath, required: true, check: Validation.EnvVarName);
                var value = ctx.Str(e, "value", ePath) ?? "";
                if (e.Get("valueFrom") is { } from && from is not YamlScalar { Kind: ScalarKind.Null })
                {
                    // Secrets, field refs and config maps need an API server; silently using "" would hide that.
                    ctx.Error(from.Line, DocumentContext.Field(ePath, "valueFrom"), "not supported in a config folder; use value");
                    continue;
                }
                // Kubernetes lets a later duplicate override an earlier one; keep that.
                if (envName is not null) env[envName] = value;
            }
        }

        return name is null
            ? null
            : new ContainerSpec(name, image, command, args, ports.ToImmutable(), env.ToImmutable());
    }

    private static ServiceResource? ReadService(
        DocumentContext ctx, YamlMapping root, string prefix, string apiVersion, ObjectMeta metadata, SourceLocation source)
    {
        var specPath = DocumentContext.Field(prefix, "spec");
        var spec = ctx.Map(root.Get("spec"), specPath, root.Line, required: true);
        if (spec is null) return null;

        var type = ctx.Str(spec, "type", specPath, check: static t => t is "ClusterIP" or "NodePort" or "LoadBalancer" or "ExternalName"
            ? null
            : "supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"") ?? "ClusterIP";
        var clusterIP = ctx.Str(spec, "clusterIP", specPath, check: static ip => ip == "None" ? null : Validation.IpAddress(ip));
        var selector = ctx.StringMap(spec, "selector", specPath, Validation.QualifiedName, Validation.LabelValue);

        var portsPath = DocumentContext.Field(specPath, "ports");
        var headlessOrExternal = clusterIP == "None" || type == "ExternalName";
        var portSeq = ctx.Seq(spec.Get("ports"), portsPath, spec.Line, required: !headlessOrExternal);
        var ports = ImmutableArray.CreateBuilder<ServicePortSpec>();
        if (portSeq is not null)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            var numbers = new HashSet<(long, string)>();
            var multi = portSeq.Items.Count > 1;
            for (int i = 0; i < portSeq.Items.Count; i++)
            {
                var pPath = DocumentContext.Index(portsPath, i);
                var p = ctx.Map(portSeq.Items[i], pPath, portSeq.Line, required: true);
                if (p is null) continue;
                var port = ReadServicePort(ctx, p, pPath, multi);
                if (port is null) continue;
                if (port.Name is not null && !names.Add(port.Name))
                {
                    ctx.Error(p.Get("name")!.Line, DocumentContext.Field(pPath, "name"), $"Duplicate value: \"{LogText.Clip(port.Name)}\"");
                    continue;
                }
                if (!numbers.Add((port.Port, port.Protocol)))
                {
                    ctx.Error(p.Get("port")!.Line, DocumentContext.Field(pPath, "port"),
                        $"Duplicate value: {port.Port}/{port.Protocol}");
                    continue;
                }
                ports.Add(port);
            }
        }

        return new ServiceResource(apiVersion, metadata, source, type, clusterIP, selector, ports.ToImmutable());
    }

    private static ServicePortSpec? ReadServicePort(DocumentContext ctx, YamlMapping p, string pPath, bool nameRequired)
    {
        var name = ctx.Str(p, "name", pPath, check: Validation.Dns1123Label);
        var nameNode = p.Get("name");
        var nameMissing = nameNode is null or YamlScalar { Kind: ScalarKind.Null } or YamlScalar { Kind: ScalarKind.String, Value: "" };
        if (nameRequired && nameMissing)
        {
            ctx.Error(p.Line, DocumentContext.Field(pPath, "name"), "Required value: a name is required on every port of a Service with more than one port");
        }
        var number = ctx.Int(p, "port", pPath, required: true);
        var protocol = ctx.Str(p, "protocol", pPath, check: Validation.Protocol) ?? "TCP";
        var appProtocol = ctx.Str(p, "appProtocol", pPath);
        if (number is null) return null;
        if (Validation.Port(number.Value) is { } problem)
        {
            ctx.Error(p.Get("port")!.Line, DocumentContext.Field(pPath, "port"), $"Invalid value: {number.Value}: {problem}");
            return null;
        }

        var targetPath = DocumentContext.Field(pPath, "targetPort");
        TargetPort target;
        switch (p.Get("targetPort"))
        {
            case null or YamlScalar { Kind: ScalarKind.Null }:
                target = TargetPort.FromNumber((int)number.Value);
                break;
            case YamlScalar { Kind: ScalarKind.Int } s when YamlDocumentReader.TryParseInt(s.Value, out var n):
                if (Validation.Port(n) is { } tProblem)
                {
                    ctx.Error(s.Line, targetPath, $"Invalid value: {n}: {tProblem}");
                    return null;
                }
                target = TargetPort.FromNumber((int)n);
                break;
            case YamlScalar { Kind: ScalarKind.String } s:
                if (Validation.PortName(s.Value) is { } nProblem)
                {
                    ctx.Error(s.Line, targetPath, $"Invalid value: \"{LogText.Clip(s.Value)}\": {nProblem}");
                    return null;
                }
                target = TargetPort.FromName(s.Value);
                break;
            case var other:
                ctx.Error(other.Line, targetPath, $"must be a port number or a container port name, not {other.Describe()}");
                return null;
        }
        return new ServicePortSpec(name, (int)number.Value, target, appProtocol, protocol);
    }
}
