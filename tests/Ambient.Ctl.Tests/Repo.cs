namespace Ambient.Ctl.Tests;

internal static class Repo
{
    /// <summary>The repository root (the folder holding Ambient.sln), found upward from the test binaries.</summary>
    public static string Root
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Ambient.sln"))) return dir.FullName;
            }
            throw new InvalidOperationException("Ambient.sln not found above " + AppContext.BaseDirectory);
        }
    }

    public static string SampleMesh => Path.Combine(Root, "samples", "mesh");
}
