using System.Net;
using Ambient.Ctl.Kube;
using k8s.Autorest;

namespace Ambient.Ctl.Install;

/// <summary>Reads of objects that may not exist.</summary>
internal static class KubeReads
{
    /// <summary>The object, or null when the server says 404; other failures are thrown.</summary>
    public static async Task<T?> OrNullAsync<T>(Func<Task<T>> read) where T : class
    {
        try
        {
            return await read().ConfigureAwait(false);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>
    /// What a failed call to the cluster says, for the user: the server's own words when it refused, or why it could
    /// not be reached; null for any other exception (not the cluster's doing).
    /// </summary>
    public static string? DescribeFailure(Exception e) => e switch
    {
        HttpOperationException refused => ClusterCommands.Describe(refused),
        HttpRequestException unreachable => "cannot reach the cluster: " + unreachable.Message,
        _ => null,
    };
}

