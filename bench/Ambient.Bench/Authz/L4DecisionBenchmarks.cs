using System.Net;
using Ambient.Core.Authz;
using Ambient.Core.Model;
using Ambient.Core.Protos.Security;
using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Action = Ambient.Core.Protos.Security.Action;
using Authorization = Ambient.Core.Protos.Security.Authorization;

namespace Ambient.Bench.Authz;

/// <summary>
/// ztunnel's L4 authorization decision for one inbound connection with 100 policies on the destination workload
/// (50 DENY, 50 ALLOW, each a principal + source CIDR clause and a ports clause). Every policy is evaluated: no DENY
/// matches, and the ALLOW that matches is the last one (or none does). Goal: under 1 µs and 0 B allocated.
/// Exact principals let the evaluator skip the policies naming other peers; the "prefix principals" case has the same
/// policies with <c>principals: ["…/sa/other-NNN*"]</c>, which no index can skip, so it shows a scan of all 100.
/// Run: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*L4DecisionBenchmarks*' --job short
/// </summary>
[MemoryDiagnoser]
public class L4DecisionBenchmarks
{
    private const int PolicyCount = 100;
    private L4Authorizer _authorizer = L4Authorizer.Empty;
    private L4Authorizer _scanned = L4Authorizer.Empty;
    private WorkloadInfo _workload = null!;
    private L4Connection _allowedByLast;
    private L4Connection _deniedByNone;

    [GlobalSetup]
    public void Setup()
    {
        _authorizer = Build(prefix: false, out var names);
        _scanned = Build(prefix: true, out _);
        _workload = new WorkloadInfo("Kubernetes//Pod/demo/echo", "demo", "cluster.local", "echo")
        {
            Name = "echo",
            CanonicalName = "echo",
            WorkloadName = "echo",
            AuthorizationPolicies = [.. names],
        };
        _allowedByLast = new L4Connection("spiffe://cluster.local/ns/demo/sa/client", IPAddress.Parse("127.0.0.10"), IPAddress.Parse("127.0.0.20"), 8080);
        _deniedByNone = new L4Connection("spiffe://cluster.local/ns/demo/sa/stranger", IPAddress.Parse("127.0.0.10"), IPAddress.Parse("127.0.0.20"), 8080);
        foreach (var authorizer in new[] { _authorizer, _scanned })
        {
            if (!authorizer.Evaluate(_workload, _allowedByLast).Allowed || authorizer.Evaluate(_workload, _deniedByNone).Allowed)
            {
                throw new InvalidOperationException("benchmark policies do not decide as intended");
            }
        }
    }

    private static L4Authorizer Build(bool prefix, out List<string> names)
    {
        var policies = new List<Authorization>();
        names = [];
        for (int i = 0; i < PolicyCount; i++)
        {
            var action = i % 2 == 0 ? Action.Deny : Action.Allow;
            var principal = i == PolicyCount - 1 ? "cluster.local/ns/demo/sa/client" : $"cluster.local/ns/demo/sa/other-{i:D3}";
            var policy = new Authorization { Name = $"policy-{i:D3}", Namespace = "demo", Scope = Scope.WorkloadSelector, Action = action };
            var from = new Clause();
            from.Matches.Add(new Match
            {
                Principals = { prefix ? new StringMatch { Prefix = principal } : new StringMatch { Exact = principal } },
                SourceIps = { new Address { Address_ = ByteString.CopyFrom(127, 0, 0, 0), Length = 8 } },
            });
            var to = new Clause();
            to.Matches.Add(new Match { DestinationPorts = { 8080, 9090 } });
            var rule = new Rule();
            rule.Clauses.Add(from);
            rule.Clauses.Add(to);
            policy.Rules.Add(rule);
            policies.Add(policy);
            names.Add($"demo/policy-{i:D3}");
        }
        return L4Authorizer.Build(policies);
    }

    [Benchmark(Description = "L4 decision, 100 policies, last ALLOW matches")]
    public bool AllowedByLast() => _authorizer.Evaluate(_workload, _allowedByLast).Allowed;

    [Benchmark(Description = "L4 decision, 100 policies, none matches (denied)")]
    public bool DeniedByNone() => _authorizer.Evaluate(_workload, _deniedByNone).Allowed;

    [Benchmark(Description = "L4 decision, 100 prefix principals (full scan), last ALLOW matches")]
    public bool ScannedAllowedByLast() => _scanned.Evaluate(_workload, _allowedByLast).Allowed;
}
