using Ambient.Istiod;

// istiod-lite: the mesh's control service. Wiring only; see IstiodHost.
var options = IstiodOptions.TryParse(args, out var error);
if (options is null)
{
    Console.Error.WriteLine(error);
    return 2;
}
try
{
    await using var host = await IstiodHost.StartAsync(options, configureLogging: null, CancellationToken.None);
    Console.WriteLine($"istiod-lite: CA + workload discovery on https://{host.GrpcEndpoint} (root: {host.RootCertificatePath})");
    await host.WaitForShutdownAsync();
    return 0;
}
catch (Exception e) when (e is Ambient.Istiod.Ca.CaStateException or IOException or UnauthorizedAccessException or k8s.Exceptions.KubeConfigException)
{
    Console.Error.WriteLine($"istiod-lite: {e.Message}");
    return 1;
}
