using BenchmarkDotNet.Running;

namespace Ambient.Bench;

// Micro-benchmarks; side-by-side system benchmarks live in bench/run.sh.
// Usage: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*'
internal static class BenchProgram
{
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(BenchProgram).Assembly).Run(args);
}
