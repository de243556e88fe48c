namespace Ambient.Ctl.Cli;

internal static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>Something failed at run time (a component, a port, a check of the demo).</summary>
    public const int Failed = 1;
    /// <summary>The input was invalid (bad folder, bad argument): fix it and try again.</summary>
    public const int InvalidInput = 2;
}
