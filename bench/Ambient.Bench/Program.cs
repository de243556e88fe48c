using BenchmarkDotNet.Running;

namespace Ambient.Bench;

// Micro-benchmarks; side-by-side system benchmarks live in bench/run.sh.
// Usage: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*'
internal static class BenchProgram
{
    private static int Main(string[] args)
    {
        // bench/run.sh kube-scale: a system measurement (istiod-lite against a fake API server), not a micro-benchmark.
        if (args.Length > 0 && args[0] == "kube-scale")
        {
            return Kube.KubeScale.RunAsync(args[1..]).GetAwaiter().GetResult();
        }
        // Where one config generation's time goes inside istiod-lite, phase by phase (no API server, no process).
        if (args.Length > 0 && args[0] == "generation-probe")
        {
            return Kube.GenerationProbe.Run(args[1..]);
        }
        BenchmarkSwitcher.FromAssembly(typeof(BenchProgram).Assembly).Run(args);
        return 0;
    }
}
