using System.Diagnostics;
using System.Net;
using Ambient.Hbone;

namespace Ambient.Core.Tests.Hbone;

internal static class HboneTestSupport
{
    public const string ServerIdentity = "spiffe://cluster.local/ns/default/sa/server";
    public const string ClientIdentity = "spiffe://cluster.local/ns/default/sa/client";

    public static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(30);

    public static HbonePoolKey Key(IPEndPoint destination, string destinationIdentity = ServerIdentity) =>
        new(ClientIdentity, destinationIdentity, destination);

    /// <summary>Writes <paramref name="size"/> random bytes in uneven chunks while reading the echo back; half-closes
    /// after writing and expects the peer's END_STREAM after the last echoed byte. Asserts the bytes are intact.</summary>
    public static async Task EchoAsync(HboneStream stream, int size, int seed = 1)
    {
        byte[] sent = new byte[size];
        new Random(seed).NextBytes(sent);
        byte[] received = new byte[size];

        Task writer = Task.Run(async () =>
        {
            int offset = 0;
            int chunk = 1000;
            while (offset < size)
            {
                int n = Math.Min(chunk, size - offset);
                await stream.WriteAsync(sent.AsMemory(offset, n));
                offset += n;
                chunk = chunk >= 200_000 ? 1000 : chunk * 3; // 1 KB .. 243 KB: frames of many sizes
            }
            await stream.CompleteWritesAsync();
        });

        int total = 0;
        while (true)
        {
            // Once everything arrived, read into a scratch byte: the next read must report the peer's END_STREAM.
            Memory<byte> target = total < size ? received.AsMemory(total, Math.Min(64 * 1024, size - total)) : new byte[1];
            int n = await stream.ReadAsync(target).AsTask().WaitAsync(TestTimeout);
            if (n == 0)
            {
                break;
            }
            total += n;
            Assert.True(total <= size, "peer echoed more bytes than were sent");
        }
        await writer.WaitAsync(TestTimeout);
        Assert.Equal(size, total);
        Assert.True(sent.AsSpan().SequenceEqual(received), "echoed bytes differ from the bytes sent");
    }

    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout)
            {
                Assert.Fail($"timed out after {timeout} waiting for {what}");
            }
            await Task.Delay(20);
        }
    }
}
