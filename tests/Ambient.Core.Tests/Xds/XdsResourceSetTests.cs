using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Xds;
using static Ambient.Core.Tests.Model.ConfigFixtures;

namespace Ambient.Core.Tests.Xds;

public class XdsResourceSetTests
{
    private static List<Resource> Config() =>
    [
        AmbientNamespace("shop"),
        Pod("shop", "web-0", [("app", "web")], podIP: "10.0.0.1"),
        Pod("shop", "web-1", [("app", "web")], podIP: "10.0.0.2"),
        Pod("shop", "db-0", [("app", "db")]),
        Service("shop", "web", [("app", "web")], [Port(80, 8080, "http")], clusterIP: "10.96.0.1"),
        Service("shop", "db", [("app", "db")], [Port(5432)]),
    ];

    private static XdsResourceSet Addresses(List<Resource> config, XdsResourceSet? previous = null)
        => XdsResourceSet.ForAddresses(MeshBuilder.Build(config), previous);

    [Fact]
    public void Resources_are_named_aliased_and_packed_as_istio_expects()
    {
        var set = Addresses(Config());

        Assert.Equal(XdsTypeUrls.Address, set.TypeUrl);
        Assert.Equal(5, set.Count);
        Assert.True(set.TryGet("Kubernetes//Pod/shop/web-0", out var web0));
        Assert.Equal(["/10.0.0.1"], web0.Aliases);
        Assert.Equal(XdsTypeUrls.Address, web0.Resource_.TypeUrl);
        var address = web0.Resource_.Unpack<Address>();
        Assert.Equal("web-0", address.Workload.Name);
        Assert.Equal(16, web0.Version.Length);

        Assert.True(set.TryGet("shop/web.shop.svc.cluster.local", out var web));
        Assert.Equal(["/10.96.0.1"], web.Aliases);
        Assert.Equal("web", web.Resource_.Unpack<Address>().Service.Name);
        Assert.True(set.Contains("shop/db.shop.svc.cluster.local"));
    }

    [Fact]
    public void Versions_are_stable_across_builds_from_equal_input()
    {
        var first = Addresses(Config());
        var second = Addresses(Config()); // fresh records, fresh snapshot, no shared objects

        foreach (var r in first.Resources)
        {
            Assert.Equal(r.Version, second.VersionOf(r.Name));
        }
        Assert.True(XdsResourceSet.Diff(first, second).IsEmpty);
    }

    [Fact]
    public void Changing_one_pod_label_changes_only_that_workload()
    {
        var before = Addresses(Config());
        var config = Config();
        config[2] = ((PodResource)config[2]).WithLabels(("app", "web"), ("version", "v2")); // web-1: revision latest -> v2

        var after = Addresses(config, before);
        var delta = XdsResourceSet.Diff(before, after);

        var changed = Assert.Single(delta.Resources);
        Assert.Equal("Kubernetes//Pod/shop/web-1", changed.Name);
        Assert.Equal("v2", changed.Resource_.Unpack<Address>().Workload.CanonicalRevision);
        Assert.Empty(delta.RemovedResources);
        // Unchanged entries are the very objects of the previous set: nothing re-serialized for them on a push.
        Assert.True(after.TryGet("Kubernetes//Pod/shop/web-0", out var same));
        Assert.True(before.TryGet("Kubernetes//Pod/shop/web-0", out var old));
        Assert.Same(old, same);
        // Reusing the previous set is only a shortcut: a build from scratch yields the same versions.
        var fresh = Addresses(config);
        Assert.Equal(fresh.Resources.Select(r => (r.Name, r.Version)), after.Resources.Select(r => (r.Name, r.Version)));
    }

    [Fact]
    public void A_label_that_is_not_on_the_wire_changes_nothing()
    {
        var config = Config();
        config[1] = ((PodResource)config[1]).WithLabels(("app", "web"), ("team", "blue"));
        Assert.True(XdsResourceSet.Diff(Addresses(Config()), Addresses(config)).IsEmpty);
    }

    [Fact]
    public void Deleting_a_pod_removes_its_name()
    {
        var before = Addresses(Config());
        var config = Config();
        config.RemoveAt(3); // db-0

        var delta = XdsResourceSet.Diff(before, Addresses(config));

        Assert.Empty(delta.Resources); // the db Service resource does not list endpoints, so it is unchanged
        Assert.Equal(["Kubernetes//Pod/shop/db-0"], delta.RemovedResources);
    }

    [Fact]
    public void Changing_a_service_selector_changes_the_affected_workloads_only()
    {
        var before = Addresses(Config());
        var config = Config();
        var web = (ServiceResource)config[4];
        config[4] = web with { Selector = Map(("app", "db")) }; // web now selects db-0 instead of web-0/web-1

        var delta = XdsResourceSet.Diff(before, Addresses(config));

        Assert.Equal(["Kubernetes//Pod/shop/db-0", "Kubernetes//Pod/shop/web-0", "Kubernetes//Pod/shop/web-1"],
            delta.Resources.Select(r => r.Name).Order(StringComparer.Ordinal));
        Assert.Empty(delta.RemovedResources);
        var db0 = delta.Resources.Single(r => r.Name.EndsWith("db-0", StringComparison.Ordinal)).Resource_.Unpack<Address>().Workload;
        Assert.Equal(["shop/db.shop.svc.cluster.local", "shop/web.shop.svc.cluster.local"], db0.Services.Keys);
    }

    [Fact]
    public void A_new_resource_is_sent_and_a_first_push_sends_everything()
    {
        var before = Addresses(Config());
        var config = Config();
        config.Add(Pod("shop", "web-2", [("app", "web")]));

        var delta = XdsResourceSet.Diff(before, Addresses(config));
        Assert.Equal(["Kubernetes//Pod/shop/web-2"], delta.Resources.Select(r => r.Name));

        var initial = XdsResourceSet.Diff(null, before);
        Assert.Equal(before.Count, initial.Resources.Length);
        Assert.Empty(initial.RemovedResources);
    }

    [Fact]
    public void Reconnecting_client_gets_only_what_it_lacks_or_holds_stale()
    {
        var current = Addresses(Config());
        var known = new Dictionary<string, string>
        {
            ["Kubernetes//Pod/shop/web-0"] = current.VersionOf("Kubernetes//Pod/shop/web-0")!,     // up to date
            ["shop/web.shop.svc.cluster.local"] = current.VersionOf("shop/web.shop.svc.cluster.local")!, // up to date
            ["Kubernetes//Pod/shop/web-1"] = "0000000000000000",                                     // stale
            ["Kubernetes//Pod/shop/gone"] = "1234",                                                  // deleted meanwhile
            ["shop/old.shop.svc.cluster.local"] = "5678",                                            // deleted meanwhile
        };

        var delta = XdsResourceSet.ForClient(current, known);

        Assert.Equal(["Kubernetes//Pod/shop/db-0", "Kubernetes//Pod/shop/web-1", "shop/db.shop.svc.cluster.local"],
            delta.Resources.Select(r => r.Name).Order(StringComparer.Ordinal));
        Assert.Equal(["Kubernetes//Pod/shop/gone", "shop/old.shop.svc.cluster.local"], delta.RemovedResources);

        var response = delta.ToResponse("nonce-1");
        Assert.Equal(XdsTypeUrls.Address, response.TypeUrl);
        Assert.Equal("nonce-1", response.Nonce);
        Assert.Equal(3, response.Resources.Count);
        Assert.Equal(2, response.RemovedResources.Count);
    }

    [Fact]
    public void Client_with_everything_current_gets_an_empty_delta()
    {
        var current = Addresses(Config());
        var known = current.Resources.ToDictionary(r => r.Name, r => r.Version);
        Assert.True(XdsResourceSet.ForClient(current, known).IsEmpty);
    }

    [Fact]
    public void Authorization_set_without_policies_is_empty_with_its_type_url()
    {
        var set = XdsResourceSet.ForAuthorizations([]);
        Assert.Equal(XdsTypeUrls.Authorization, set.TypeUrl);
        Assert.Equal(0, set.Count);
        Assert.Throws<ArgumentException>(() => XdsResourceSet.Diff(set, Addresses(Config())));
    }

    /// <summary>
    /// A set built from the previous one with the same names in place keeps the delta it was built with; that delta, and
    /// the set itself, must be what a build from scratch and a full diff give.
    /// </summary>
    [Fact]
    public void A_set_built_in_place_equals_a_full_build_and_its_delta_a_full_diff()
    {
        var config = Config();
        var previous = Addresses(config);
        Action<List<Resource>>[] steps =
        [
            c => c[1] = (PodResource)c[1] with { Ready = false },
            c => c[1] = ((PodResource)c[1]).WithLabels(("app", "db")),
            c => c[4] = (ServiceResource)c[4] with { Ports = [Port(81, 8080, "http")] },
            c => c[2] = (PodResource)c[2] with { Ready = false },
            c => { }, // nothing changed
        ];
        foreach (var step in steps)
        {
            step(config);
            var snapshot = MeshBuilder.Build(config);
            var inPlace = XdsResourceSet.ForAddresses(snapshot, previous);
            var full = XdsResourceSet.ForAddresses(snapshot);

            Assert.Equal(full.Resources.Select(r => (r.Name, r.Version, r.Resource_.Value, string.Join(",", r.Aliases))),
                inPlace.Resources.Select(r => (r.Name, r.Version, r.Resource_.Value, string.Join(",", r.Aliases))));
            foreach (var r in full.Resources)
            {
                Assert.Equal(r.Version, inPlace.VersionOf(r.Name));
            }
            var delta = XdsResourceSet.Diff(previous, inPlace);
            var fullDelta = XdsResourceSet.Diff(previous, full);
            Assert.Equal(step != steps[^1], !fullDelta.IsEmpty);
            Assert.Equal(fullDelta.Resources.Select(r => (r.Name, r.Version)), delta.Resources.Select(r => (r.Name, r.Version)));
            Assert.Equal(fullDelta.RemovedResources, delta.RemovedResources);
            // Against any other set the delta is computed, not the one kept.
            Assert.True(XdsResourceSet.Diff(full, inPlace).IsEmpty);
            previous = inPlace;
        }
    }

    [Fact]
    public void Duplicate_names_are_refused()
    {
        var w = new Address { Workload = new Workload { Uid = "u" } };
        var ex = Assert.Throws<ArgumentException>(() => XdsResourceSet.Create(XdsTypeUrls.Address, [("u", w, []), ("u", w, [])]));
        Assert.Contains("duplicate", ex.Message);
    }
}
