namespace Ambient.Waypoint;

internal static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("waypoint: not wired yet");
        return 2;
    }
}
