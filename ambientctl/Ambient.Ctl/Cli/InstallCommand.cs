using System.CommandLine;
using Ambient.Ctl.Install;
using Ambient.Ctl.Kube;
using k8s;
using k8s.Models;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl install`: applies manifests/ (built in, or --manifests DIR) to the cluster of the kubeconfig's current
/// context (or --kubeconfig/--context), creating the mesh CA when there is none. The Gateway API CRDs are a
/// prerequisite it names but does not install.
/// </summary>
internal static class InstallCommand
{
    public static Command Build()
    {
        var kube = new KubeOptions();
        var manifests = new Option<string?>("--manifests") { Description = "apply this manifests folder (with its kustomization.yaml) instead of the built-in copy" };
        var hub = new Option<string?>("--hub") { Description = "registry of the images, e.g. registry.example/ambient (default: the kustomization's)" };
        var tag = new Option<string?>("--tag") { Description = "tag of the images (default: the kustomization's)" };
        var trustDomain = new Option<string>("--trust-domain") { Description = "trust domain of a mesh root created here", DefaultValueFactory = _ => "cluster.local" };
        var install = new Command("install", "Deploy the mesh to the cluster: istiod-lite, ztunnels, node agents, CRDs and the mesh CA") { manifests, hub, tag, trustDomain };
        kube.AddTo(install);
        install.SetAction(async (parse, cancellationToken) =>
        {
            IReadOnlyList<IKubernetesObject<V1ObjectMeta>> objects;
            try
            {
                objects = parse.GetValue(manifests) is { } folder
                    ? MeshManifests.LoadFolder(folder, parse.GetValue(hub), parse.GetValue(tag))
                    : MeshManifests.LoadEmbedded(parse.GetValue(hub), parse.GetValue(tag));
            }
            catch (ManifestException e)
            {
                Console.Error.WriteLine($"install: {e.Message}");
                return ExitCodes.InvalidInput;
            }
            return await ClusterCommands.RunAsync(kube.Read(parse), "install", Console.Error,
                client => RunAsync(client, objects, parse.GetValue(trustDomain)!, Console.Out, Console.Error, cancellationToken)).ConfigureAwait(false);
        });
        return install;
    }

    internal static async Task<int> RunAsync(IKubernetes client, IReadOnlyList<IKubernetesObject<V1ObjectMeta>> objects, string trustDomain,
        TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            await MeshInstaller.InstallAsync(client, objects, trustDomain, output.WriteLine, cancellationToken).ConfigureAwait(false);
            var missing = (await MeshCheck.RunAsync(client, cancellationToken).ConfigureAwait(false))
                .Where(i => !i.Ok && MeshCheck.GatewayApiCrds.Any(c => i.Name.EndsWith(c, StringComparison.Ordinal)))
                .ToList();
            if (missing.Count > 0)
            {
                error.WriteLine($"install: the Gateway API CRDs are missing; istiod-lite needs them: kubectl apply -f {GatewayApi.StandardInstallUrl}");
            }
            output.WriteLine("installed; `ambientctl check` reports when every component is ready");
            return ExitCodes.Ok;
        }
        catch (Exception e) when (KubeReads.DescribeFailure(e) is { } failure)
        {
            error.WriteLine("install: " + failure);
            return ExitCodes.Failed;
        }
        catch (ManifestException e)
        {
            error.WriteLine($"install: {e.Message}");
            return ExitCodes.Failed;
        }
    }
}
