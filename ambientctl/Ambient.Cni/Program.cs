using Ambient.Cni;

// ambient-cni: run by the container runtime as a chained CNI plugin (CNI_COMMAND and friends in the environment, the
// network configuration on stdin, the result on stdout). See CniPlugin.
return await CniPlugin.RunAsync(Environment.GetEnvironmentVariable, Console.In, Console.Out, Console.Error);
