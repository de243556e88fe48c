using System.Net;
using Ambient.Core.Authz;
using Ambient.Core.Protos.AuthorizationPolicies;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;

namespace Ambient.Bench.Authz;

/// <summary>
/// The waypoint's L7 authorization decision for one request with 50 rules in effect on the Service: 5 DENY and 5
/// ALLOW policies of 5 rules each, every rule a principal + source CIDR source, a method + path + host operation and a
/// header condition. Every rule is evaluated: no DENY matches, and the ALLOW rule that matches is the last one (or
/// none does). Goal: under 2 µs and 0 B allocated.
/// Run: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*L7DecisionBenchmarks*' --job short
/// </summary>
[MemoryDiagnoser]
public class L7DecisionBenchmarks
{
    private const string Ns = "demo";
    private const int Policies = 10;
    private const int RulesPerPolicy = 5;
    private L7Authorizer _authorizer = L7Authorizer.Empty;
    private L7Request _allowedByLast;
    private L7Request _deniedByNone;

    [GlobalSetup]
    public void Setup()
    {
        var specs = new List<AuthorizationPolicySpec>();
        for (var p = 0; p < Policies; p++)
        {
            var spec = new AuthorizationPolicySpec
            {
                Namespace = Ns,
                Name = $"policy-{p:D2}",
                Action = p % 2 == 0 ? PolicyAction.Deny : PolicyAction.Allow,
            };
            spec.TargetRefs.Add(new PolicyTargetReference { Group = "", Kind = "Service", Name = "echo", Namespace = Ns });
            for (var r = 0; r < RulesPerPolicy; r++)
            {
                var last = p == Policies - 1 && r == RulesPerPolicy - 1;
                var rule = new PolicyRule();
                rule.From.Add(new PolicySource
                {
                    Principals = { last ? "cluster.local/ns/demo/sa/client" : $"cluster.local/ns/demo/sa/other-{p}-{r}" },
                    IpBlocks = { "127.0.0.0/8" },
                });
                rule.To.Add(new PolicyOperation
                {
                    Methods = { "GET", "POST" },
                    Paths = { $"/api/v{r}/*", "/static/*" },
                    Hosts = { "echo.demo.svc.cluster.local", "*.example.com" },
                });
                rule.When.Add(new PolicyCondition { Key = "request.headers[x-tenant]", Values = { "blue", "green" } });
                spec.Rules.Add(rule);
            }
            specs.Add(spec);
        }
        _authorizer = L7Authorizer.Build(specs, Ns, "waypoint");
        var headers = new HeaderDictionary { ["x-tenant"] = "green", ["user-agent"] = "bench" };
        var source = IpKey.From(IPAddress.Parse("127.0.0.10"));
        var destination = IpKey.From(IPAddress.Parse("10.96.0.20"));
        _allowedByLast = new L7Request("spiffe://cluster.local/ns/demo/sa/client", source, source, destination, 80,
            "GET", "/static/app.js", "echo.demo.svc.cluster.local:80", headers);
        _deniedByNone = new L7Request("spiffe://cluster.local/ns/demo/sa/stranger", source, source, destination, 80,
            "GET", "/static/app.js", "echo.demo.svc.cluster.local:80", headers);
        if (!_authorizer.Evaluate(Ns, "echo", _allowedByLast).Allowed || _authorizer.Evaluate(Ns, "echo", _deniedByNone).Allowed)
        {
            throw new InvalidOperationException("benchmark policies do not decide as intended");
        }
    }

    [Benchmark(Description = "L7 decision, 50 rules, last ALLOW rule matches")]
    public bool AllowedByLast() => _authorizer.Evaluate(Ns, "echo", _allowedByLast).Allowed;

    [Benchmark(Description = "L7 decision, 50 rules, none matches (denied)")]
    public bool DeniedByNone() => _authorizer.Evaluate(Ns, "echo", _deniedByNone).Allowed;
}
