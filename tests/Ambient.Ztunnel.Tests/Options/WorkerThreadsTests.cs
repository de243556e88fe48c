namespace Ambient.Ztunnel.Tests.Options;

/// <summary>How many epoll (worker) threads the ztunnel runs: ZTUNNEL_WORKER_THREADS, else half the cores, one or two.</summary>
public sealed class WorkerThreadsTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(3, 1)]
    [InlineData(4, 2)]
    [InlineData(64, 2)]
    public void Unset_it_is_half_the_cores_one_or_two(int cores, int expected)
    {
        Assert.Equal(expected, Program.WorkerThreadCount(null, cores, out var error));
        Assert.Null(error);
    }

    [Fact]
    public void Set_it_wins_over_the_cores()
    {
        Assert.Equal(6, Program.WorkerThreadCount("6", 2, out var error));
        Assert.Null(error);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("two")]
    [InlineData(" 2")]
    [InlineData("99999")]
    [InlineData("")]
    public void Anything_but_a_whole_number_from_1_to_1024_is_an_error_naming_the_variable(string configured)
    {
        Assert.Null(Program.WorkerThreadCount(configured, 2, out var error));
        Assert.Contains("ZTUNNEL_WORKER_THREADS", error, StringComparison.Ordinal);
        Assert.Contains($"'{configured}'", error, StringComparison.Ordinal);
    }
}
