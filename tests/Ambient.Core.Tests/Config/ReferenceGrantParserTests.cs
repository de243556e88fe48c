using Ambient.Config.Yaml;
using Ambient.Core.Config;

namespace Ambient.Core.Tests.Config;

// ReferenceGrant as the Gateway API CRD (apis/v1beta1/referencegrant_types.go, served as v1beta1 and v1) accepts and
// refuses it. The manifest is the API's own example (site-src/api-types/referencegrant.md).
public class ReferenceGrantParserTests
{
    private const string File = "/cfg/grants.yaml";

    private const string Header = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: allow-prod, namespace: bar}\n";

    [Theory]
    [InlineData("gateway.networking.k8s.io/v1beta1")]
    [InlineData("gateway.networking.k8s.io/v1")]
    public void AGrantIsParsed(string apiVersion)
    {
        var yaml = $"""
            apiVersion: {apiVersion}
            kind: ReferenceGrant
            metadata:
              name: allow-prod-routes
              namespace: bar
            spec:
              from:
              - group: gateway.networking.k8s.io
                kind: HTTPRoute
                namespace: prod
              - {"{"}group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: dev{"}"}
              to:
              - group: ""
                kind: Service
              - {"{"}group: "", kind: Service, name: one{"}"}
            """;

        var result = ManifestParser.Parse(File, yaml);

        Assert.Empty(result.Errors);
        var grant = Assert.IsType<ReferenceGrantResource>(Assert.Single(result.Resources));
        Assert.Equal("ReferenceGrant/bar/allow-prod-routes", grant.Key);
        Assert.Equal(apiVersion, grant.ApiVersion);
        Assert.Equal([new ReferenceGrantFrom("gateway.networking.k8s.io", "HTTPRoute", "prod"), new ReferenceGrantFrom("gateway.networking.k8s.io", "GRPCRoute", "dev")], grant.From);
        Assert.Equal([new ReferenceGrantTo("", "Service", null), new ReferenceGrantTo("", "Service", "one")], grant.To);
        // Records compare by value: an unchanged file yields an equal resource (no new generation).
        Assert.Equal(result.Resources, ManifestParser.Parse(File, yaml).Resources);
    }

    public static TheoryData<string, int, string, string> BadGrants => new()
    {
        { "spec: {}", 4, "spec.from", "Required value" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: prod}]", 5, "spec.to", "Required value" },
        { "spec:\n  from: []\n  to: [{group: \"\", kind: Service}]", 5, "spec.from", "Required value" },
        { "spec:\n  from: [{kind: HTTPRoute, namespace: prod}]\n  to: [{group: \"\", kind: Service}]", 5, "spec.from[0].group", "Required value" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, namespace: prod}]\n  to: [{group: \"\", kind: Service}]", 5, "spec.from[0].kind", "Required value" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute}]\n  to: [{group: \"\", kind: Service}]", 5, "spec.from[0].namespace", "Required value" },
        { "spec:\n  from: [{group: Gateway.Networking, kind: HTTPRoute, namespace: prod}]\n  to: [{group: \"\", kind: Service}]", 5, "spec.from[0].group", "Invalid value: \"Gateway.Networking\"" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, kind: \"HTTP Route\", namespace: prod}]\n  to: [{group: \"\", kind: Service}]", 5, "spec.from[0].kind", "Invalid value: \"HTTP Route\"" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: Prod}]\n  to: [{group: \"\", kind: Service}]", 5, "spec.from[0].namespace", "Invalid value: \"Prod\"" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: prod}]\n  to: [{kind: Service}]", 6, "spec.to[0].group", "Required value" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: prod}]\n  to: [{group: \"\"}]", 6, "spec.to[0].kind", "Required value" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: prod}]\n  to: [{group: \"\", kind: 5}]", 6, "spec.to[0].kind", "must be a string" },
        { "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: prod}]\n  to: [{group: \"-core\", kind: Service}]", 6, "spec.to[0].group", "Invalid value: \"-core\"" },
        { "spec:\n  from: {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: prod}\n  to: [{group: \"\", kind: Service}]", 5, "spec.from", "must be a list" },
    };

    [Theory]
    [MemberData(nameof(BadGrants))]
    public void BadGrantsAreRejectedWithLineAndField(string spec, int line, string field, string message)
    {
        var result = ManifestParser.Parse(File, Header + spec);

        Assert.Empty(result.Resources);
        ConfigAssert.HasError(result.Errors, File, line, field, message);
    }

    [Fact]
    public void MoreThanSixteenEntriesAreRejected()
    {
        var from = string.Join(", ", Enumerable.Range(0, 17).Select(i => $"{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ns{i}}}"));
        var result = ManifestParser.Parse(File, Header + $"spec:\n  from: [{from}]\n  to: [{{group: \"\", kind: Service}}]");

        Assert.Empty(result.Resources);
        ConfigAssert.HasError(result.Errors, File, 5, "spec.from", "Too many: 17: must have at most 16 items");
    }

    [Fact]
    public void AGrantOfAnotherApiVersionIsRejected()
    {
        var result = ManifestParser.Parse(File, Header.Replace("v1beta1", "v1alpha2", StringComparison.Ordinal)
            + "spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: prod}]\n  to: [{group: \"\", kind: Service}]");

        ConfigAssert.HasError(result.Errors, File, 1, "apiVersion",
            "ReferenceGrant is served by apiVersion \"gateway.networking.k8s.io/v1beta1\" or \"gateway.networking.k8s.io/v1\"");
    }
}
