using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core.Protos.AuthorizationPolicies;

namespace Ambient.Core.Tests.Config;

// PeerAuthentication as Istio's validation (pkg/config/validation ValidatePeerAuthentication, validateWorkloadSelector)
// and the CRD's schema accept and refuse it. Every error names file:line and the field.
public class PeerAuthenticationParserTests
{
    private const string File = "/cfg/peer.yaml";

    private const string Policies = """
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: istio-system}
        spec:
          mtls: {mode: STRICT}
        ---
        apiVersion: security.istio.io/v1beta1
        kind: PeerAuthentication
        metadata: {name: ns-wide, namespace: shop}
        spec:
          mtls:
            mode: PERMISSIVE
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: echo, namespace: shop}
        spec:
          selector:
            matchLabels: {app: echo}
          mtls: {mode: UNSET}
          portLevelMtls:
            8080: {mode: DISABLE}
            "9090": {mode: STRICT}
            7070: {}
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: empty, namespace: shop}
        """;

    [Fact]
    public void Every_field_is_read()
    {
        var result = ManifestParser.Parse(File, Policies);

        Assert.Empty(result.Errors);
        Assert.Equal(4, result.Resources.Length);
        var mesh = Assert.IsType<PeerAuthenticationResource>(result.Resources[0]);
        Assert.Equal("PeerAuthentication/istio-system/default", mesh.Key);
        Assert.Equal(new SourceLocation(File, 1), mesh.Source);
        Assert.Equal(new PeerAuthenticationSpec { Namespace = "istio-system", Name = "default", Mode = MutualTlsMode.Strict }, mesh.Spec);

        var ns = Assert.IsType<PeerAuthenticationResource>(result.Resources[1]);
        Assert.Equal("security.istio.io/v1beta1", ns.ApiVersion);
        Assert.Equal(MutualTlsMode.Permissive, ns.Spec.Mode);
        Assert.False(ns.Spec.HasSelector);

        var workload = Assert.IsType<PeerAuthenticationResource>(result.Resources[2]).Spec;
        Assert.True(workload.HasSelector);
        Assert.Equal("echo", workload.MatchLabels["app"]);
        Assert.Equal(MutualTlsMode.Unset, workload.Mode);
        Assert.Equal(3, workload.PortLevelMtls.Count);
        Assert.Equal(MutualTlsMode.Disable, workload.PortLevelMtls[8080]);
        Assert.Equal(MutualTlsMode.Strict, workload.PortLevelMtls[9090]);
        Assert.Equal(MutualTlsMode.Unset, workload.PortLevelMtls[7070]);

        var empty = Assert.IsType<PeerAuthenticationResource>(result.Resources[3]).Spec;
        Assert.Equal(MutualTlsMode.Unset, empty.Mode);
        Assert.Empty(empty.PortLevelMtls);

        // Records compare by value: an unchanged file yields equal resources.
        Assert.Equal(result.Resources, ManifestParser.Parse(File, Policies).Resources);
    }

    // The spec (from line 5 of the document), the line and field of the one expected error, and its message.
    public static TheoryData<string, int, string, string> BadPolicies => new()
    {
        { "spec:\n  mtls: {mode: REQUIRED}", 6, "spec.mtls.mode", "Invalid value: \"REQUIRED\": supported values: \"UNSET\", \"DISABLE\", \"PERMISSIVE\", \"STRICT\"" },
        { "spec:\n  mtls: {mode: strict}", 6, "spec.mtls.mode", "supported values" },
        { "spec:\n  mtls:\n    mod: STRICT", 7, "spec.mtls.mod", "unknown field \"mod\"" },
        { "spec:\n  mtls: STRICT", 6, "spec.mtls", "must be a map" },
        { "spec:\n  mTLS: {mode: STRICT}", 6, "spec.mTLS", "unknown field \"mTLS\"" },
        { "spec:\n  selector: {app: a}", 6, "spec.selector.app", "unknown field \"app\"" },
        { "spec:\n  selector: [app]", 6, "spec.selector", "must be a map" },
        { "spec:\n  selector:\n    matchLabels: {app: \"a*\"}", 7, "spec.selector.matchLabels[app]", "wildcard is not supported in selector" },
        { "spec:\n  selector:\n    matchLabels: {\"bad key!\": a}", 7, "spec.selector.matchLabels[bad key!]", "Invalid value" },
        { "spec:\n  selector:\n    matchLabels: {app: a}\n  portLevelMtls:\n    http: {mode: STRICT}", 9, "spec.portLevelMtls[http]", "portLevelMtls keys are ports, and a port must be in range 1..65535" },
        { "spec:\n  selector:\n    matchLabels: {app: a}\n  portLevelMtls:\n    0: {mode: STRICT}", 9, "spec.portLevelMtls[0]", "port must be in range 1..65535" },
        { "spec:\n  selector:\n    matchLabels: {app: a}\n  portLevelMtls:\n    65536: {mode: STRICT}", 9, "spec.portLevelMtls[65536]", "port must be in range 1..65535" },
        { "spec:\n  selector:\n    matchLabels: {app: a}\n  portLevelMtls:\n    8080: {mode: MUTUAL}", 9, "spec.portLevelMtls[8080].mode", "supported values" },
        { "spec:\n  selector:\n    matchLabels: {app: a}\n  portLevelMtls:\n    8080: STRICT", 9, "spec.portLevelMtls[8080]", "must be a map" },
        { "spec:\n  selector:\n    matchLabels: {app: a}\n  portLevelMtls:\n    8080: {mode: STRICT}\n    \"08080\": {mode: DISABLE}", 10, "spec.portLevelMtls[08080]", "port 8080 is already set" },
        { "spec:\n  selector:\n    matchLabels: {app: a}\n  portLevelMtls: {}", 8, "spec.portLevelMtls", "port level mTLS, if defined, must have at least one element" },
        { "spec:\n  portLevelMtls:\n    8080: {mode: STRICT}", 6, "spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS" },
        { "spec:\n  selector: {}\n  portLevelMtls:\n    8080: {mode: STRICT}", 7, "spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS" },
        { "spec:\n  selector:\n    matchLabels: {}\n  portLevelMtls:\n    8080: {mode: STRICT}", 8, "spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS" },
    };

    [Theory]
    [MemberData(nameof(BadPolicies))]
    public void Invalid_policy_is_rejected_whole_with_file_line_and_field(string spec, int line, string field, string message)
    {
        var yaml = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: shop}\n# spec\n" + spec + "\n";
        var result = ManifestParser.Parse(File, yaml);

        Assert.Empty(result.Resources);
        var error = Assert.Single(result.Errors, e => e.Field == field);
        Assert.Equal(new SourceLocation(File, line), error.Source);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_api_version_is_refused()
    {
        var result = ManifestParser.Parse(File, "apiVersion: security.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: p}\n");
        var error = Assert.Single(result.Errors);
        Assert.Equal("/cfg/peer.yaml:1: apiVersion: Invalid value: \"security.istio.io/v1alpha1\": PeerAuthentication is served by apiVersion \"security.istio.io/v1\" or \"security.istio.io/v1beta1\"", error.ToString());
    }
}
