using Ambient.Samples.Echo;

// The built-in pod images of the local mesh: `ambient-samples echo` (ambient/echo) and `ambient-samples sleep`
// (ambient/sleep). ambientctl tells a pod where it lives through POD_IP, PORTS, POD_NAME, ... (see EchoSettings).
var command = args.Length > 0 ? args[0] : "";
switch (command)
{
    case "echo":
        var settings = EchoSettings.FromEnvironment(Environment.GetEnvironmentVariable, out var error);
        if (settings is null)
        {
            Console.Error.WriteLine($"ambient/echo: {error}");
            return 2;
        }
        await EchoServer.RunAsync(settings);
        return 0;
    case "sleep":
        {
            // Idles until stopped, like the sleep image pods use as a traffic source. The token source is never
            // disposed: ProcessExit can fire after Main has returned.
            var stop = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
            AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.Cancel();
            Console.WriteLine($"ambient/sleep: pod {Environment.GetEnvironmentVariable("POD_NAME") ?? "-"} idling");
            await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            return 0;
        }
    default:
        Console.Error.WriteLine("usage: ambient-samples echo|sleep   (settings from POD_IP, PORTS, POD_NAME, POD_NAMESPACE, SERVICE_NAME, SERVICE_ACCOUNT)");
        return 2;
}
