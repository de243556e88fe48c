using System.Runtime.InteropServices;

namespace Ambient.Ctl.Cli;

/// <summary>
/// Ctrl-C (SIGINT) and SIGTERM as one cancellation token. We handle the signals ourselves (rather than letting the
/// command-line library end the process after its timeout) so children are always stopped before we exit.
/// </summary>
internal sealed class Stopping : IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly PosixSignalRegistration _int;
    private readonly PosixSignalRegistration _term;

    public Stopping()
    {
        _int = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    }

    public CancellationToken Token => _cts.Token;

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        _cts.Cancel();
    }

    public void Dispose()
    {
        _int.Dispose();
        _term.Dispose();
        _cts.Dispose();
    }
}
