using System.CommandLine;
using System.Text.Json.Nodes;
using Ambient.Core.Config;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Kube;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl get KIND [NAME] [-n NS|-A] [-o yaml|json|wide]`: the resources of the mesh config as kubectl lists
/// them, read with the parser istiod-lite uses (so what is listed is what the mesh acts on), with the pods' state from
/// the running local mesh. In Kubernetes mode (<see cref="MeshTarget"/>) the same tables list the cluster's objects,
/// with their status; -o yaml|json prints the objects as the API returns them.
/// </summary>
internal static class GetCommand
{
    public static Command Build()
    {
        var kind = new Argument<string>("kind") { Description = "namespaces (ns), pods (po), services (svc), serviceaccounts (sa), gateways (gtw), httproutes, deployments (deploy), authorizationpolicies (ap), peerauthentications (pa)" };
        var name = new Argument<string?>("name") { Description = "one resource by name", Arity = ArgumentArity.ZeroOrOne };
        var ns = new Option<string?>("--namespace", "-n") { Description = "the namespace (default: default)" };
        var all = new Option<bool>("--all-namespaces", "-A") { Description = "every namespace" };
        var output = new Option<string?>("--output", "-o") { Description = "yaml, json or wide (default: a table)" };
        var file = new Option<string?>("--file", "-f") { Description = "the mesh config, a YAML file or a folder of them (default: the running local mesh's)" };
        var get = new Command("get", "List resources of the mesh config or cluster, as kubectl get does") { kind, name, ns, all, output, file };
        var kube = new KubeOptions();
        kube.AddTo(get);
        get.SetAction(async (parse, ct) =>
        {
            var request = new GetRequest(parse.GetValue(kind)!, parse.GetValue(name), parse.GetValue(all) ? null : parse.GetValue(ns) ?? "default", parse.GetValue(output));
            var connection = kube.Read(parse);
            if (MeshTarget.UseCluster(parse.GetValue(file), connection))
            {
                return await ClusterCommands.RunAsync(connection, "get", Console.Error,
                    client => ClusterCommands.GetAsync(client, request, Console.Out, Console.Error, OutputStyle.Stdout, ct)).ConfigureAwait(false);
            }
            if (MeshConfig.Load(parse.GetValue(file), "get", Console.Error) is not { } config) return ExitCodes.InvalidInput;
            return Run(request, config.AllResources, config.Runtime(), Console.Out, Console.Error, OutputStyle.Stdout);
        });
        return get;
    }

    /// <param name="Namespace">null for every namespace (-A).</param>
    internal sealed record GetRequest(string Kind, string? Name, string? Namespace, string? Output);

    internal static int Run(GetRequest request, IReadOnlyList<Resource> resources, MeshRuntime mesh, TextWriter output, TextWriter error, OutputStyle style)
    {
        var kind = ResourceKinds.Find(request.Kind);
        if (kind is null)
        {
            error.WriteLine($"error: the server doesn't have a resource type \"{request.Kind}\" (known: {string.Join(", ", ResourceKinds.All.Select(k => k.Plural))})");
            return ExitCodes.InvalidInput;
        }
        if (request.Output is not (null or "yaml" or "json" or "wide"))
        {
            error.WriteLine($"error: unable to match a printer suitable for the output format \"{request.Output}\", allowed formats are: json, wide, yaml");
            return ExitCodes.InvalidInput;
        }
        var matches = new List<Resource>();
        foreach (var r in resources)
        {
            if (r.Kind != kind.Kind) continue;
            if (kind.Namespaced && request.Namespace is not null && r.Metadata.Namespace != request.Namespace) continue;
            if (request.Name is not null && r.Metadata.Name != request.Name) continue;
            matches.Add(r);
        }
        matches.Sort(static (a, b) =>
        {
            var byNs = string.CompareOrdinal(a.Metadata.Namespace, b.Metadata.Namespace);
            return byNs != 0 ? byNs : string.CompareOrdinal(a.Metadata.Name, b.Metadata.Name);
        });
        if (request.Name is not null && matches.Count == 0)
        {
            error.WriteLine($"Error from server (NotFound): {kind.Plural} \"{request.Name}\" not found");
            return ExitCodes.Failed;
        }
        if (request.Output is "json" or "yaml")
        {
            var docs = matches.ConvertAll(r => ResourceDocument.Build(r, mesh));
            JsonNode root = ResourceDocument.Wrap(docs, single: request.Name is not null);
            output.Write(request.Output == "json" ? ResourceDocument.ToJson(root) : ResourceDocument.ToYaml(root));
            return ExitCodes.Ok;
        }
        if (matches.Count == 0)
        {
            error.WriteLine(kind.Namespaced && request.Namespace is not null ? $"No resources found in {request.Namespace} namespace." : "No resources found");
            return ExitCodes.Ok;
        }
        var wide = request.Output == "wide";
        var showNamespace = kind.Namespaced && request.Namespace is null;
        var headers = new List<string>();
        if (showNamespace) headers.Add("namespace");
        headers.Add("name");
        headers.AddRange(kind.Columns);
        if (wide) headers.AddRange(kind.WideColumns);
        var table = new TextTable([.. headers]);
        foreach (var r in matches)
        {
            var cells = new List<Cell>();
            if (showNamespace) cells.Add(r.Metadata.Namespace);
            cells.Add(r.Metadata.Name);
            // A kind the parser does not type yet is listed by name, its other columns unknown.
            var row = r is UnknownResource ? Array.ConvertAll(new string[kind.Columns.Length + kind.WideColumns.Length], _ => new Cell("-")) : kind.Row(r, mesh);
            cells.AddRange(wide ? row : row.AsSpan(0, kind.Columns.Length).ToArray());
            table.AddRow([.. cells]);
        }
        output.Write(table.Render(style));
        return ExitCodes.Ok;
    }
}
