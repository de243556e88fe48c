namespace Ambient.Ztunnel;

internal static class Program
{
    // The node proxy is wired up by the ztunnel issue; this entry point keeps the layout whole until then.
    private static int Main()
    {
        Console.Error.WriteLine("ztunnel: not wired up yet");
        return 1;
    }
}
