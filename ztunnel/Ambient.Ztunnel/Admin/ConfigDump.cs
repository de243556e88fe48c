using System.Net;
using System.Text.Json;
using Ambient.Hbone;
using Ambient.Core.Authz;
using Ambient.Core.Model;
using Ambient.Dataplane.Identity;

namespace Ambient.Ztunnel.Admin;

/// <summary>
/// Writes :15000/config_dump: the snapshot's workloads and services (with what was kept from xDS), the authorization
/// policies of the latest push (as pushed: AuthorizationPolicies and converted PeerAuthentications alike), the
/// certificates, the pooled HBONE connections and the per-pod listeners. Read-only views of the node's parts; no state of its own.
/// </summary>
internal static class ConfigDump
{
    private static readonly Google.Protobuf.JsonFormatter PolicyFormatter = new(Google.Protobuf.JsonFormatter.Settings.Default);

    public static void Write(Utf8JsonWriter json, string node, MeshSnapshot snapshot, L4Authorizer authorizer, CertificateManager certificates,
        HboneConnectionPool pool, IReadOnlyDictionary<IPAddress, IPEndPoint> hbone, IReadOnlyDictionary<IPAddress, IPEndPoint> socks)
    {
        json.WriteStartObject();
        json.WriteString("node", node);
        MeshSnapshotJson.WriteWorkloads(json, snapshot);
        MeshSnapshotJson.WriteServices(json, snapshot);
        WritePolicies(json, authorizer);
        WriteCertificates(json, certificates);
        WritePool(json, pool);
        json.WriteStartObject("listeners");
        WriteEndpoints(json, "hbone", hbone);
        WriteEndpoints(json, "socks5", socks);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void WritePolicies(Utf8JsonWriter json, L4Authorizer authorizer)
    {
        json.WriteStartArray("policies");
        foreach (var p in authorizer.Policies)
        {
            json.WriteRawValue(PolicyFormatter.Format(p.Source));
        }
        json.WriteEndArray();
    }

    private static void WriteCertificates(Utf8JsonWriter json, CertificateManager certificates)
    {
        var trustRoots = certificates.Trust.RootPems();
        json.WriteStartArray("certificates");
        foreach (var c in certificates.Snapshot())
        {
            json.WriteStartObject();
            json.WriteString("identity", c.Identity);
            json.WriteString("state", c.State.ToString());
            json.WriteString("serial", c.SerialNumber);
            if (c.NotBefore is { } nb) { json.WriteString("notBefore", nb); }
            if (c.NotAfter is { } na) { json.WriteString("expiry", na); }
            if (c.NextAttempt is { } next) { json.WriteString("nextRefresh", next); }
            json.WriteNumber("failures", c.Failures);
            if (c.LastError is { } err) { json.WriteString("lastError", err); }
            // Istio's shape: the chain served (leaf first) and the roots peers are checked against.
            json.WriteStartArray("certChain");
            if (certificates.TryGetWorkloadCertificate(c.Identity, out var held))
            {
                json.WriteStringValue(held.CertificateWithKey.ExportCertificatePem());
                foreach (var cert in held.Chain)
                {
                    json.WriteStringValue(cert.ExportCertificatePem());
                }
            }
            json.WriteEndArray();
            WriteStrings(json, "rootCerts", trustRoots);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        WriteStrings(json, "trustBundle", trustRoots);
    }

    private static void WriteStrings(Utf8JsonWriter json, string name, IEnumerable<string> values)
    {
        json.WriteStartArray(name);
        foreach (var value in values)
        {
            json.WriteStringValue(value);
        }
        json.WriteEndArray();
    }

    private static void WritePool(Utf8JsonWriter json, HboneConnectionPool pool)
    {
        json.WriteStartArray("pooledConnections");
        foreach (var entry in pool.Snapshot())
        {
            json.WriteStartObject();
            json.WriteString("source", entry.Key.SourceIdentity);
            json.WriteString("destination", entry.Key.DestinationIdentity);
            json.WriteString("address", entry.Key.Destination.ToString());
            json.WriteStartArray("connections");
            foreach (var c in entry.Connections)
            {
                json.WriteStartObject();
                json.WriteString("peer", c.Peer);
                json.WriteNumber("activeStreams", c.ActiveStreams);
                json.WriteNumber("maxConcurrentStreams", c.MaxConcurrentStreams);
                json.WriteNumber("ageSeconds", Math.Round(c.Age.TotalSeconds, 1));
                json.WriteBoolean("goingAway", c.IsGoingAway);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }

    private static void WriteEndpoints(Utf8JsonWriter json, string name, IReadOnlyDictionary<IPAddress, IPEndPoint> listeners)
    {
        json.WriteStartArray(name);
        foreach (var ep in listeners.Values)
        {
            json.WriteStringValue(ep.ToString());
        }
        json.WriteEndArray();
    }
}
