using System.Buffers;
using System.Diagnostics;
using Ambient.Hbone.Http2;

namespace Ambient.Core.Tests.Http2;

/// <summary>
/// Interop with an independent HPACK implementation: python-hpack from the Debian python3-h2 package
/// (for /usr/bin/python3, not a pyenv interpreter). Missing package = failure, never a skip.
/// </summary>
public class HPackInteropTests
{
    private const string Python = "/usr/bin/python3";

    private static readonly (string Name, string Value)[] Request =
    [
        (":method", "CONNECT"),
        (":authority", "10.244.1.7:8080"),
        ("baggage", "k8s.namespace.name=default,k8s.pod.name=sleep-7d9f,service.name=sleep,service.version=v1"),
        ("forwarded", "for=\"10.244.0.5:43210\";host=httpbin.default.svc.cluster.local"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ];

    [Fact]
    public void PythonDecodesWhatWeEncode()
    {
        var encoder = new HPackEncoder();
        var output = new ArrayBufferWriter<byte>();
        var blocks = new List<string>();
        for (int i = 0; i < 2; i++)
        {
            // Twice on one encoder: the second block leans on the dynamic table.
            output.ResetWrittenCount();
            encoder.EncodeConnectRequest(output, Request[1].Value);
            encoder.EncodeHeader(output, "baggage"u8, Request[2].Value.AsSpan());
            encoder.EncodeHeader(output, "forwarded"u8, Request[3].Value.AsSpan(), HPackIndexing.WithoutIndexing);
            encoder.EncodeHeader(output, "traceparent"u8, Request[4].Value.AsSpan(), HPackIndexing.NeverIndexed);
            blocks.Add(Hex.Of(output.WrittenSpan));
        }
        // :method, :authority and baggage are now dynamic entries 64, 63, 62: one octet each.
        Assert.StartsWith("c0bfbe", blocks[1]);

        const string script = """
            import sys, hpack
            d = hpack.Decoder()
            for block in sys.argv[1:]:
                for name, value in d.decode(bytes.fromhex(block), raw=True):
                    print(name.decode('latin-1') + '\t' + value.decode('latin-1'))
                print('--')
            """;
        string stdout = RunPython(script, blocks);
        string expected = string.Join("\n", Request.Select(h => h.Name + "\t" + h.Value)) + "\n--\n";
        Assert.Equal(expected + expected, stdout.Replace("\r", ""));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WeDecodeWhatPythonEncodes(bool huffman)
    {
        const string script = """
            import sys, hpack
            e = hpack.Encoder()
            huff = sys.argv[1] == 'True'
            hs = [(':status', '200'), ('server', 'istio-envoy'), ('x-custom', 'v' * 300), ('date', 'Mon, 21 Oct 2013 20:13:21 GMT')]
            print(e.encode(hs, huffman=huff).hex())
            print(e.encode(hs + [('x-extra', 'caf\u00e9')], huffman=huff).hex())
            """;
        string[] lines = RunPython(script, [huffman.ToString()]).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(2, lines.Length);

        var decoder = new HPackDecoder();
        var expected = new List<(string, string)>
        {
            (":status", "200"), ("server", "istio-envoy"), ("x-custom", new string('v', 300)), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        };
        var first = new HeaderCollector();
        decoder.Decode(Hex.Parse(lines[0]), 1, ref first);
        Assert.Equal(expected, first.Pairs());
        Assert.Equal(8, first.Headers[0].StaticIndex);

        var second = new HeaderCollector();
        decoder.Decode(Hex.Parse(lines[1]), 3, ref second);
        expected.Add(("x-extra", "caf\u00c3\u00a9")); // UTF-8 bytes, shown as Latin-1
        Assert.Equal(expected, second.Pairs());
        Assert.True(lines[1].Length < lines[0].Length, "python's second block should reuse its dynamic table");
    }

    private static string RunPython(string script, IEnumerable<string> args)
    {
        const string install = "install the Debian package python3-h2 (provides hpack for /usr/bin/python3): apt-get install -y python3-h2";
        if (!File.Exists(Python))
        {
            Assert.Fail($"{Python} not found; {install}");
        }
        var psi = new ProcessStartInfo(Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        foreach (string arg in args)
        {
            psi.ArgumentList.Add(arg);
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            Assert.Fail("python hpack helper timed out");
        }
        string error = stderr.GetAwaiter().GetResult();
        if (error.Contains("No module named 'hpack'", StringComparison.Ordinal))
        {
            Assert.Fail($"{Python} cannot import hpack; {install}");
        }
        Assert.True(process.ExitCode == 0, $"python exited {process.ExitCode}: {error}");
        return stdout.GetAwaiter().GetResult();
    }
}
