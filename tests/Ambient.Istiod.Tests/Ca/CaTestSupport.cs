using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using Ambient.Core.Protos.Ca;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>A clock the test moves by hand.</summary>
internal sealed class ManualTime(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;

    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>Pods by node, as the mesh snapshot would answer, and pods by name, as the config source knows them.</summary>
internal sealed class PodPlacement : IWorkloadDirectory
{
    private readonly HashSet<(string Node, SpiffeId Identity)> _pods = [];
    private readonly Dictionary<(string Namespace, string Name), KnownPod> _byName = [];

    public PodPlacement Add(string node, string spiffeId)
    {
        _pods.Add((node, SpiffeId.Parse(spiffeId)));
        return this;
    }

    /// <summary>A named pod (with its uid) on <paramref name="node"/>, running as <paramref name="serviceAccount"/>.</summary>
    public PodPlacement AddPod(string @namespace, string name, string? uid, string serviceAccount, string? node)
    {
        _byName[(@namespace, name)] = new KnownPod(uid, serviceAccount, node);
        if (node is not null)
        {
            _pods.Add((node, new SpiffeId("cluster.local", @namespace, serviceAccount)));
        }
        return this;
    }

    public bool HasPodOnNode(string node, SpiffeId identity) => _pods.Contains((node, identity));

    public bool TryGetPod(string @namespace, string name, out KnownPod pod) => _byName.TryGetValue((@namespace, name), out pod);
}

internal static class CertificateServiceTestExtensions
{
    /// <summary>Node-token requests complete synchronously (no TokenReview): the tests of local mode call them so.</summary>
    public static IstioCertificateResponse CreateCertificate(this CertificateService service, IstioCertificateRequest request, string? authorization)
    {
        var pending = service.CreateCertificateAsync(request, authorization, CancellationToken.None);
        return pending.IsCompleted ? pending.Result : throw new InvalidOperationException("a node-token request did not complete synchronously");
    }
}
