namespace Ambient.TestCommon;

/// <summary>Where the repository's own files are, found from the test assembly's folder.</summary>
public static class RepoPaths
{
    /// <summary>The folder holding Ambient.sln.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>samples/mesh: the demo mesh folder ambientctl ships.</summary>
    public static string SampleMesh => Path.Combine(Root, "samples", "mesh");

    /// <summary>A script of tests/interop (the independent peers: python3-h2, python3-grpcio).</summary>
    public static string Interop(string script) => Path.Combine(Root, "tests", "interop", script);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Ambient.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("repository root (Ambient.sln) not found above " + AppContext.BaseDirectory);
    }
}
