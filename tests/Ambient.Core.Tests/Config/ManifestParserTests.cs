using System.Collections.Immutable;
using Ambient.Config.Yaml;
using Ambient.Core.Config;

namespace Ambient.Core.Tests.Config;

public class ManifestParserTests
{
    private const string File = "/cfg/app.yaml";

    private const string AllKinds = """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: demo
          namespace: ignored-for-cluster-scoped
          labels:
            istio.io/dataplane-mode: ambient
        ---
        apiVersion: v1
        kind: ServiceAccount
        metadata:
          name: echo
          namespace: demo
          annotations:
            note: "42"
        ---
        apiVersion: v1
        kind: Pod
        metadata:
          name: echo-v1
          namespace: demo
          labels:
            app: echo
            version: v1
        spec:
          serviceAccountName: echo
          nodeName: node-2
          containers:
            - name: echo
              image: ambient/echo:1.0
              command: ["/bin/echo-server"]
              args: ["--port", "8080", ""]
              ports:
                - name: http
                  containerPort: 8080
                - containerPort: 9090
                  protocol: UDP
              env:
                - name: VERSION
                  value: v1
                - name: EMPTY
            - name: sidecar
        status:
          podIP: 10.0.0.7
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: echo
          namespace: demo
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.10
          selector:
            app: echo
          ports:
            - name: http
              port: 80
              targetPort: http
              appProtocol: http
            - name: grpc
              port: 9000
              targetPort: 9090
              protocol: UDP
            - name: same
              port: 7000
        """;

    [Fact]
    public void ParsesEveryFieldOfAllFourKinds()
    {
        var result = ManifestParser.Parse(File, AllKinds);

        Assert.Empty(result.Errors);
        Assert.Equal(4, result.Resources.Length);

        var ns = Assert.IsType<NamespaceResource>(result.Resources[0]);
        Assert.Equal("v1", ns.ApiVersion);
        Assert.Equal("Namespace", ns.Kind);
        Assert.Equal("demo", ns.Metadata.Name);
        Assert.Equal("", ns.Metadata.Namespace);
        Assert.Equal("ambient", ns.Metadata.Label("istio.io/dataplane-mode"));
        Assert.Equal(new SourceLocation(File, 1), ns.Source);
        Assert.Equal("Namespace//demo", ns.Key);

        var sa = Assert.IsType<ServiceAccountResource>(result.Resources[1]);
        Assert.Equal("echo", sa.Metadata.Name);
        Assert.Equal("demo", sa.Metadata.Namespace);
        Assert.Equal("42", sa.Metadata.Annotations["note"]);
        Assert.Equal(9, sa.Source.Line);

        var pod = Assert.IsType<PodResource>(result.Resources[2]);
        Assert.Equal(17, pod.Source.Line);
        Assert.Equal("Pod/demo/echo-v1", pod.Key);
        Assert.Equal(new[] { "app", "version" }, pod.Metadata.Labels.Keys);
        Assert.Equal("v1", pod.Metadata.Label("version"));
        Assert.Equal("echo", pod.ServiceAccountName);
        Assert.Equal("node-2", pod.NodeName);
        Assert.Equal("10.0.0.7", pod.PodIP);
        Assert.Equal(2, pod.Containers.Length);
        var c = pod.Containers[0];
        Assert.Equal("echo", c.Name);
        Assert.Equal("ambient/echo:1.0", c.Image);
        Assert.Equal(new[] { "/bin/echo-server" }, c.Command);
        Assert.Equal(new[] { "--port", "8080", "" }, c.Args);
        Assert.Equal(new[] { new ContainerPort("http", 8080, "TCP"), new ContainerPort(null, 9090, "UDP") }, c.Ports);
        Assert.Equal("v1", c.Env["VERSION"]);
        Assert.Equal("", c.Env["EMPTY"]);
        var sidecar = pod.Containers[1];
        Assert.Equal("sidecar", sidecar.Name);
        Assert.Null(sidecar.Image);
        Assert.Empty(sidecar.Command);
        Assert.Empty(sidecar.Ports);
        Assert.Empty(sidecar.Env);

        var svc = Assert.IsType<ServiceResource>(result.Resources[3]);
        Assert.Equal(46, svc.Source.Line);
        Assert.Equal("ClusterIP", svc.Type);
        Assert.Equal("10.96.0.10", svc.ClusterIP);
        Assert.Equal("echo", svc.Selector["app"]);
        Assert.Equal(
            new[]
            {
                new ServicePortSpec("http", 80, TargetPort.FromName("http"), "http", "TCP"),
                new ServicePortSpec("grpc", 9000, TargetPort.FromNumber(9090), null, "UDP"),
                new ServicePortSpec("same", 7000, TargetPort.FromNumber(7000), null, "TCP"),
            },
            svc.Ports);
    }

    [Fact]
    public void AppliesKubernetesDefaults()
    {
        var result = ManifestParser.Parse(File, """
            apiVersion: v1
            kind: Pod
            metadata: {name: p}
            spec:
              serviceAccount: legacy-sa
              containers: [{name: c}]
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: q}
            spec: {containers: [{name: c}]}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: s}
            spec:
              clusterIP: None
            """);

        Assert.Empty(result.Errors);
        var p = Assert.IsType<PodResource>(result.Resources[0]);
        Assert.Equal("default", p.Metadata.Namespace);
        Assert.Equal("legacy-sa", p.ServiceAccountName);
        Assert.Null(p.NodeName);
        Assert.Null(p.PodIP);
        Assert.Empty(p.Metadata.Labels);
        Assert.Equal("default", Assert.IsType<PodResource>(result.Resources[1]).ServiceAccountName);
        var s = Assert.IsType<ServiceResource>(result.Resources[2]);
        Assert.Equal("ClusterIP", s.Type);
        Assert.Equal("None", s.ClusterIP);
        Assert.Empty(s.Ports);
    }

    public static TheoryData<string, int, string, string> BrokenDocuments => new()
    {
        // yaml, expected line, expected field, expected message fragment
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  - containers\n", 5, "spec", "must be a map, not a list" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    name: c\n", 6, "spec.containers", "must be a list, not a map" },
        { "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: demo\nspec: {containers: [{name: c}]}\n", 4, "metadata.name", "Required value" },
        { "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Echo_1\nspec: {containers: [{name: c}]}\n", 4, "metadata.name", "RFC 1123 subdomain" },
        { "apiVersion: v1\nkind: Service\nmetadata:\n  name: 1echo\nspec: {ports: [{port: 80}]}\n", 4, "metadata.name", "DNS-1035 label" },
        { "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n", 1, "apiVersion", "Required value" },
        { "apiVersion: v1\nmetadata: {name: p}\n", 1, "kind", "Required value" },
        { "apiVersion: apps/v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n", 1, "apiVersion", "served by apiVersion \"v1\"" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: c\n      ports:\n        - containerPort: 80\n        - containerPort: 70000\n", 9, "spec.containers[0].ports[1].containerPort", "between 1 and 65535" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: c\n      ports:\n        - containerPort: \"8080\"\n", 8, "spec.containers[0].ports[0].containerPort", "must be an integer, not a string" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: c\n      ports:\n        - name: http\n", 8, "spec.containers[0].ports[0].containerPort", "Required value" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: c\n      ports:\n        - {containerPort: 80, protocol: tcp}\n", 8, "spec.containers[0].ports[0].protocol", "supported values" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: []\n", 5, "spec.containers", "at least one" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - image: x\n", 6, "spec.containers[0].name", "Required value" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c}, {name: c}]\n", 5, "spec.containers[1].name", "Duplicate value" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c}]\nstatus:\n  podIP: 10.0.0\n", 7, "status.podIP", "valid IP address" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c}]\nstatus:\n  podIP: 10.0.0.300\n", 7, "status.podIP", "valid IP address" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: not-an-ip\n  ports: [{port: 80}]\n", 5, "spec.clusterIP", "valid IP address" },
        { "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    app: echo\n    version: 1\nspec: {containers: [{name: c}]}\n", 7, "metadata.labels[version]", "must be a string, not a number (1)" },
        { "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    enabled: yes\nspec: {containers: [{name: c}]}\n", 6, "metadata.labels[enabled]", "must be a string, not a boolean (yes)" },
        { "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    app: \"has space\"\nspec: {containers: [{name: c}]}\n", 6, "metadata.labels[app]", "a valid label" },
        { "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    replicas: 3\nspec: {containers: [{name: c}]}\n", 6, "metadata.annotations[replicas]", "must be a string, not a number (3)" },
        { "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: [app]\nspec: {containers: [{name: c}]}\n", 5, "metadata.labels", "must be a map, not a list" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - name: http\n      port: 80\n    - port: 81\n", 8, "spec.ports[1].name", "more than one port" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - port: 0\n", 6, "spec.ports[0].port", "between 1 and 65535" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - port: 80\n      targetPort: Not_A_Name\n", 7, "spec.ports[0].targetPort", "Invalid value" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - port: 80\n      targetPort: [1]\n", 7, "spec.ports[0].targetPort", "port number or a container port name" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: echo}\n", 5, "spec.ports", "Required value" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: Magic\n  ports: [{port: 80}]\n", 5, "spec.type", "supported values" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: c\n      env:\n        - name: A\n          valueFrom: {secretKeyRef: {name: s, key: k}}\n", 9, "spec.containers[0].env[0].valueFrom", "not supported" },
        { "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nmetadata: {name: q}\nspec: {containers: [{name: c}]}\n", 4, "metadata", "duplicate key" },
        { "- apiVersion: v1\n- kind: Pod\n", 1, "", "must be a map" },
        { "just text\n", 1, "", "must be a map" },
    };

    [Theory]
    [MemberData(nameof(BrokenDocuments))]
    public void BrokenDocumentNamesFileLineAndField(string yaml, int line, string field, string message)
    {
        var result = ManifestParser.Parse(File, yaml);

        Assert.Empty(result.Resources);
        var error = Assert.Single(result.Errors, e => e.Field == field);
        Assert.Equal(new SourceLocation(File, line), error.Source);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.StartsWith(field.Length == 0 ? $"{File}:{line}: " : $"{File}:{line}: {field}: ", error.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(": :", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void BadDocumentDoesNotTakeItsNeighboursDown()
    {
        var result = ManifestParser.Parse(File, """
            apiVersion: v1
            kind: ServiceAccount
            metadata: {name: a}
            ---
            apiVersion: v1
            kind: ServiceAccount
            metadata: {name: "B!"}
            ---
            apiVersion: v1
            kind: ServiceAccount
            metadata: {name: c}
            """);

        Assert.Equal(new[] { "a", "c" }, result.Resources.Select(r => r.Metadata.Name));
        var error = Assert.Single(result.Errors);
        Assert.Equal(7, error.Source.Line);
        Assert.Equal("metadata.name", error.Field);
    }

    [Fact]
    public void SyntaxErrorKeepsDocumentsBeforeItAndRejectsTheRest()
    {
        var result = ManifestParser.Parse(File, """
            apiVersion: v1
            kind: ServiceAccount
            metadata: {name: a}
            ---
            apiVersion: v1
            kind: ServiceAccount
            metadata: {name: b}
            ---
            apiVersion: v1
            kind: ServiceAccount
            metadata: {name: [c
            ---
            apiVersion: v1
            kind: ServiceAccount
            metadata: {name: d}
            """);

        Assert.Equal(new[] { "a", "b" }, result.Resources.Select(r => r.Metadata.Name));
        var error = Assert.Single(result.Errors);
        Assert.Equal(File, error.Source.File);
        Assert.InRange(error.Source.Line, 11, 12);
        Assert.StartsWith("YAML syntax error: ", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("(Line:", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownKindIsKeptAsUnknownResource()
    {
        var result = ManifestParser.Parse(File, """
            apiVersion: gateway.networking.k8s.io/v1alpha2
            kind: TLSRoute
            metadata:
              name: echo-route
              labels: {app: echo}
            spec:
              anything: [goes, here]
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: ClusterRole
            metadata:
              name: reader
            """);

        Assert.Empty(result.Errors);
        var route = Assert.IsType<UnknownResource>(result.Resources[0]);
        Assert.Equal("TLSRoute", route.Kind);
        Assert.Equal("gateway.networking.k8s.io/v1alpha2", route.ApiVersion);
        Assert.Equal("TLSRoute/default/echo-route", route.Key);
        Assert.Equal("echo", route.Metadata.Label("app"));
        Assert.Equal("ClusterRole//reader", result.Resources[1].Key);
    }

    [Fact]
    public void EmptyDocumentsAndCommentsAreSkipped()
    {
        var result = ManifestParser.Parse(File, "# header\n---\n---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: nsx}\n---\n");

        Assert.Empty(result.Errors);
        var ns = Assert.Single(result.Resources);
        Assert.Equal(6, ns.Source.Line);
        Assert.Empty(ManifestParser.Parse(File, "").Resources);
        Assert.Empty(ManifestParser.Parse(File, "").Errors);
    }

    [Fact]
    public void KindListItemsAreResourcesOfTheirOwn()
    {
        var result = ManifestParser.Parse(File, """
            apiVersion: v1
            kind: List
            items:
              - apiVersion: v1
                kind: ServiceAccount
                metadata: {name: good, namespace: demo}
              - apiVersion: v1
                kind: ServiceAccount
                metadata: {namespace: demo}
            """);

        Assert.Equal("ServiceAccount/demo/good", Assert.Single(result.Resources).Key);
        var error = Assert.Single(result.Errors);
        Assert.Equal("items[1].metadata.name", error.Field);
        Assert.Equal(9, error.Source.Line);
    }

    [Fact]
    public void AnchorsAliasesAndMergeKeysResolve()
    {
        var result = ManifestParser.Parse(File, """
            apiVersion: v1
            kind: Pod
            metadata:
              name: p
              labels: &common {app: echo, tier: web}
              annotations:
                <<: *common
                tier: overridden
            spec:
              containers: [{name: c}]
            """);

        Assert.Empty(result.Errors);
        var pod = Assert.IsType<PodResource>(Assert.Single(result.Resources));
        Assert.Equal("web", pod.Metadata.Label("tier"));
        Assert.Equal("echo", pod.Metadata.Annotations["app"]);
        Assert.Equal("overridden", pod.Metadata.Annotations["tier"]);
    }

    [Fact]
    public void AliasBombIsAnErrorNotAHang()
    {
        var lines = new List<string> { "a0: &a0 [x, x, x, x, x, x, x, x, x, x]" };
        for (int i = 1; i < 12; i++)
        {
            lines.Add($"a{i}: &a{i} [{string.Join(", ", Enumerable.Repeat($"*a{i - 1}", 10))}]");
        }
        var result = ManifestParser.Parse(File, string.Join('\n', lines));

        Assert.Empty(result.Resources);
        Assert.Contains("alias bomb", Assert.Single(result.Errors).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReparsingTheSameTextYieldsEqualResources()
    {
        var a = ManifestParser.Parse(File, AllKinds).Resources;
        var b = ManifestParser.Parse(File, AllKinds).Resources;

        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++)
        {
            Assert.Equal(a[i], b[i]);
            Assert.Equal(a[i].GetHashCode(), b[i].GetHashCode());
        }
        var changed = ManifestParser.Parse(File, AllKinds.Replace("containerPort: 9090", "containerPort: 9091", StringComparison.Ordinal)).Resources;
        Assert.NotEqual(a[2], changed[2]);
        Assert.Equal(a[3], changed[3]);
    }

    [Fact]
    public void NoInputMakesTheParserThrow()
    {
        // Every truncation of a valid file, plus assorted garbage: errors are fine, exceptions are not.
        var inputs = new List<string> { "\t- :", "{", "]", "? [a]: b", "&a [*a]", "*nope", "%YAML 9.9\n---\na: b", "a: !!binary zz", "\0\u0001\u0002", "key: 'unterminated" };
        for (int i = 0; i < AllKinds.Length; i += 3) inputs.Add(AllKinds[..i]);

        foreach (var input in inputs)
        {
            var result = ManifestParser.Parse(File, input);
            Assert.All(result.Errors, e => Assert.True(e.Source.Line >= 1, input));
        }
    }

    [Fact]
    public void DuplicatesAcrossFilesAreResolvedByPathOrder()
    {
        const string pod = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: dup}\n";
        var a = ManifestParser.Parse("/cfg/a.yaml", pod);
        var b = ManifestParser.Parse("/cfg/b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n" + pod);

        // Handed over in the "wrong" order on purpose: the merge sorts by path.
        var snapshot = ConfigMerge.Merge(7, [new("/cfg/b.yaml", b.Resources, b.Errors), new("/cfg/a.yaml", a.Resources, a.Errors)]);

        Assert.Equal(7, snapshot.Generation);
        Assert.Equal(new[] { "Namespace//x", "ServiceAccount/default/dup" }, snapshot.Resources.Select(r => r.Key));
        Assert.Equal("/cfg/a.yaml", snapshot.Resources[1].Source.File);
        var error = Assert.Single(snapshot.Errors);
        Assert.Equal(new SourceLocation("/cfg/b.yaml", 5), error.Source);
        Assert.Contains("already defined at /cfg/a.yaml:1", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("80", "Int")]
    [InlineData("0x50", "Int")]
    [InlineData("-1_000", "Int")]
    [InlineData("1.5", "Float")]
    [InlineData("1e3", "Float")]
    [InlineData(".inf", "Float")]
    [InlineData("on", "Bool")]
    [InlineData("False", "Bool")]
    [InlineData("~", "Null")]
    [InlineData("v1", "String")]
    [InlineData("1.2.3", "String")]
    [InlineData("08x", "String")]
    [InlineData("e3", "String")]
    public void PlainScalarsResolveLikeKubernetes(string text, string expected) =>
        Assert.Equal(expected, YamlDocumentReader.ResolvePlain(text).ToString());

    [Fact]
    public void ValueEqualityCoversCollections()
    {
        var labels = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, new Dictionary<string, string> { ["a"] = "1" });
        var m1 = new ObjectMeta("n", "ns", labels, ImmutableSortedDictionary<string, string>.Empty);
        var m2 = new ObjectMeta("n", "ns", labels.SetItem("a", "1"), ImmutableSortedDictionary<string, string>.Empty);
        var m3 = new ObjectMeta("n", "ns", labels.SetItem("a", "2"), ImmutableSortedDictionary<string, string>.Empty);

        Assert.Equal(m1, m2);
        Assert.NotEqual(m1, m3);
    }
}
