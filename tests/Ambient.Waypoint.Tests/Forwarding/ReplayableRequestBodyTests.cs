using Ambient.Waypoint.Forwarding;
using Xunit;

namespace Ambient.Waypoint.Tests.Forwarding;

/// <summary>The request body kept for retries and mirrors: replayed whole, given to mirrors whole, given up past the limit.</summary>
public sealed class ReplayableRequestBodyTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static byte[] Bytes(int length) => Enumerable.Range(0, length).Select(i => (byte)i).ToArray();

    private static async Task<byte[]> ReadAllAsync(Stream stream, int chunk = 7)
    {
        var result = new MemoryStream();
        var buffer = new byte[chunk];
        int n;
        while ((n = await stream.ReadAsync(buffer, Ct)) > 0)
        {
            result.Write(buffer, 0, n);
        }
        return result.ToArray();
    }

    [Fact]
    public async Task AfterARewind_TheSameBytesAreReadAgain_EvenWhenTheFirstAttemptStoppedHalfway()
    {
        var data = Bytes(100);
        using var body = new ReplayableRequestBody(new MemoryStream(data), contentLength: null, limit: 1000);
        var half = new byte[40];
        Assert.Equal(40, await body.ReadAsync(half, Ct));
        body.Rewind();
        Assert.Equal(data, await ReadAllAsync(body));
        body.Rewind();
        Assert.Equal(data, await ReadAllAsync(body, chunk: 64));
        Assert.True(body.CanReplay);
    }

    [Fact]
    public async Task MirrorsGetTheWholeBody_OnceTheMainReadReachesTheEnd()
    {
        var data = Bytes(50);
        using var body = new ReplayableRequestBody(new MemoryStream(data), contentLength: 50, limit: 1000);
        var whole = body.WholeBodyAsync();
        Assert.False(whole.IsCompleted);
        await ReadAllAsync(body);
        Assert.Equal(data, await whole);
        Assert.Equal(data, await body.WholeBodyAsync());
    }

    [Theory]
    [InlineData(null)]
    [InlineData(101L)]
    public async Task PastTheLimit_TheBodyStreamsThrough_ButIsNeitherReplayedNorMirrored(long? declared)
    {
        var data = Bytes(101);
        using var body = new ReplayableRequestBody(new MemoryStream(data), declared, limit: 100);
        var whole = body.WholeBodyAsync();
        Assert.Equal(data, await ReadAllAsync(body));
        Assert.False(body.CanReplay);
        Assert.Throws<InvalidOperationException>(body.Rewind);
        Assert.Null(await whole);
    }

    [Fact]
    public async Task AMirrorStillWaiting_WhenTheRequestEnds_GetsNothing()
    {
        var body = new ReplayableRequestBody(new MemoryStream(Bytes(10)), contentLength: 10, limit: 100);
        var whole = body.WholeBodyAsync();
        await body.ReadExactlyAsync(new byte[3], Ct);
        body.Dispose();
        Assert.Null(await whole);
        Assert.False(body.CanReplay);
    }
}
