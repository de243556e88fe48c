using System.Collections.Immutable;
using System.Text;
using Ambient.Core.Config;

namespace Ambient.Config.Yaml;

/// <summary>
/// What a Deployment controller and its ReplicaSet would create, without either: <c>replicas</c> pods named
/// <c>&lt;deployment&gt;-&lt;template hash&gt;-&lt;suffix&gt;</c>, labelled with the template's labels plus
/// <c>pod-template-hash</c>. Names are a pure function of the Deployment, so a reload yields the same pods (a running
/// pod is not restarted), a template change renames every pod (a rollout), and a replica count change adds or removes
/// only the pods of the highest indexes.
/// </summary>
internal static class DeploymentPods
{
    public const string TemplateHashLabel = "pod-template-hash";

    // Kubernetes' name alphabet (k8s.io/apimachinery/pkg/util/rand): no vowels, no look-alike characters, so a
    // generated name never spells a word.
    private const string Alphabet = "bcdfghjklmnpqrstvwxz2456789";
    private const int HashLength = 10;
    private const int SuffixLength = 5;

    /// <summary>The longest Deployment name whose pod names stay within a DNS subdomain's 253 characters.</summary>
    public const int MaxDeploymentNameLength = 253 - 1 - HashLength - 1 - SuffixLength;

    /// <summary>The pods of <paramref name="deployment"/>, index 0 first.</summary>
    public static ImmutableArray<PodResource> Expand(DeploymentResource deployment)
    {
        ArgumentNullException.ThrowIfNull(deployment);
        var hash = TemplateHash(deployment);
        var labels = deployment.TemplateLabels.SetItem(TemplateHashLabel, hash);
        var pods = ImmutableArray.CreateBuilder<PodResource>(deployment.Replicas);
        var suffixes = new HashSet<string>(StringComparer.Ordinal);
        for (var index = 0; index < deployment.Replicas; index++)
        {
            var suffix = Suffix(deployment, index, suffixes);
            var meta = new ObjectMeta($"{deployment.Metadata.Name}-{hash}-{suffix}", deployment.Metadata.Namespace, labels, deployment.TemplateAnnotations);
            pods.Add(new PodResource("v1", meta, deployment.Source, deployment.ServiceAccountName, deployment.NodeName, deployment.Containers, PodIP: null));
        }
        return pods.MoveToImmutable();
    }

    /// <summary>10 characters from a stable hash of the pod template (the role of Kubernetes' pod-template-hash).</summary>
    public static string TemplateHash(DeploymentResource d)
    {
        var h = new StableHash();
        h.Add(d.TemplateLabels);
        h.Add(d.TemplateAnnotations);
        h.Add(d.ServiceAccountName);
        h.Add(d.NodeName);
        h.Add(d.Containers.Length);
        foreach (var c in d.Containers)
        {
            h.Add(c.Name);
            h.Add(c.Image);
            h.Add(c.Command);
            h.Add(c.Args);
            h.Add(c.Ports.Length);
            foreach (var p in c.Ports)
            {
                h.Add(p.Name);
                h.Add(p.Port);
                h.Add(p.Protocol);
            }
            h.Add(c.Env);
        }
        return Encode(h.Value, HashLength);
    }

    // Stable per replica index: derived from the Deployment's identity and the index only, so scaling from 3 to 4
    // adds one pod and keeps the other three. A collision with a lower index (1 in 14 million) is salted away.
    private static string Suffix(DeploymentResource d, int index, HashSet<string> taken)
    {
        for (var salt = 0; ; salt++)
        {
            var h = new StableHash();
            h.Add(d.Metadata.Namespace);
            h.Add(d.Metadata.Name);
            h.Add(index);
            h.Add(salt);
            var suffix = Encode(h.Value, SuffixLength);
            if (taken.Add(suffix)) return suffix;
        }
    }

    private static string Encode(ulong value, int length)
    {
        Span<char> chars = stackalloc char[length];
        for (var i = 0; i < length; i++)
        {
            chars[i] = Alphabet[(int)(value % (ulong)Alphabet.Length)];
            value /= (ulong)Alphabet.Length;
        }
        return new string(chars);
    }

    /// <summary>
    /// FNV-1a (64-bit) over length-prefixed fields: the same on every run and machine (string.GetHashCode is
    /// randomised per process), and unambiguous ("ab"+"c" differs from "a"+"bc").
    /// </summary>
    private struct StableHash()
    {
        private const ulong Prime = 1099511628211;

        public ulong Value { get; private set; } = 14695981039346656037;

        public void Add(int v)
        {
            for (var i = 0; i < 4; i++) AddByte((byte)(v >> (8 * i)));
        }

        public void Add(string? s)
        {
            if (s is null)
            {
                Add(-1);
                return;
            }
            var bytes = Encoding.UTF8.GetBytes(s);
            Add(bytes.Length);
            foreach (var b in bytes) AddByte(b);
        }

        public void Add(ImmutableArray<string> items)
        {
            var list = items.IsDefault ? [] : items;
            Add(list.Length);
            foreach (var s in list) Add(s);
        }

        public void Add(ImmutableSortedDictionary<string, string> map)
        {
            Add(map.Count);
            foreach (var (k, v) in map)
            {
                Add(k);
                Add(v);
            }
        }

        private void AddByte(byte b) => Value = (Value ^ b) * Prime;
    }
}
