using System.Net;
using Ambient.Dataplane.State;

namespace Ambient.Ztunnel.DnsProxy;

/// <summary>What to do with one received message.</summary>
internal enum DnsAction
{
    /// <summary>The response is in the caller's buffer.</summary>
    Respond,

    /// <summary>Not a name of the mesh: send the query, as received, to the upstream resolver.</summary>
    Forward,

    /// <summary>Send nothing.</summary>
    Drop,
}

/// <summary>Counts of what the proxy did; read by tests and logs, written with Interlocked.</summary>
internal sealed class DnsCounters
{
    private long _answered;
    private long _forwarded;
    private long _forwardFailures;
    private long _malformed;

    /// <summary>Queries answered from the mesh (records, NODATA or NXDOMAIN).</summary>
    public long Answered => Interlocked.Read(ref _answered);

    public long Forwarded => Interlocked.Read(ref _forwarded);

    /// <summary>Forwarded queries no upstream answered in time (the client got SERVFAIL).</summary>
    public long ForwardFailures => Interlocked.Read(ref _forwardFailures);

    /// <summary>Messages dropped or answered FORMERR/NOTIMP.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    internal void CountAnswered() => Interlocked.Increment(ref _answered);
    internal void CountForwarded() => Interlocked.Increment(ref _forwarded);
    internal void CountForwardFailure() => Interlocked.Increment(ref _forwardFailures);
    internal void CountMalformed() => Interlocked.Increment(ref _malformed);
}

/// <summary>
/// Decides the answer to one message from the proxy state, as Istio's ztunnel DNS server does: A and AAAA for
/// service names (the VIPs, or a headless service's endpoints), NODATA when the name is known but has no address of
/// the asked family (or another type is asked), NXDOMAIN for other names under <c>svc.&lt;cluster domain&gt;</c>, and
/// everything else to the upstream resolver. The client, whose namespace expands bare names, is the workload at the
/// query's source address; a query from an address that is no workload (a host tool) is still answered, without
/// that expansion. Allocates nothing per query: the name is decoded on the stack, answers are copied from the
/// per-snapshot <see cref="DnsNameTable"/>.
/// </summary>
internal sealed class DnsAnswerer(ProxyState state)
{
    private DnsNameTable? _table;

    public DnsCounters Counters { get; } = new();

    /// <summary>
    /// Handles <paramref name="message"/> from <paramref name="source"/>. On <see cref="DnsAction.Respond"/> the response
    /// is <paramref name="response"/>[..<paramref name="responseLength"/>]; on <see cref="DnsAction.Forward"/>,
    /// <paramref name="query"/> is what the forwarding path needs to answer SERVFAIL or a truncation itself.
    /// </summary>
    /// <param name="overTcp">False: the response must fit the client's UDP payload size, else it is truncated (TC).</param>
    public DnsAction Answer(ReadOnlySpan<byte> message, IPAddress? source, bool overTcp, Span<byte> response, out int responseLength, out DnsQuery query)
    {
        responseLength = 0;
        Span<char> name = stackalloc char[DnsQueryParser.NameBufferLength];
        switch (DnsQueryParser.Parse(message, name, out query))
        {
            case DnsParseOutcome.Drop:
                Counters.CountMalformed();
                return DnsAction.Drop;
            case DnsParseOutcome.FormatError:
                Counters.CountMalformed();
                responseLength = DnsResponseWriter.WriteHeaderOnly(response, query.Id, query.Flags, DnsWire.FormatError);
                return DnsAction.Respond;
            case DnsParseOutcome.NotImplemented:
                Counters.CountMalformed();
                responseLength = DnsResponseWriter.WriteHeaderOnly(response, query.Id, query.Flags, DnsWire.NotImplemented);
                return DnsAction.Respond;
        }
        var limit = overTcp ? response.Length : Math.Min(response.Length, query.MaxUdpResponse);
        if (query.HasEdns && query.EdnsVersion != 0)
        {
            // RFC 6891 section 6.1.3: we speak version 0 only.
            Counters.CountAnswered();
            responseLength = WriteNoRecords(response, message, query, DnsWire.NoError, authoritative: false, truncated: false,
                extendedResponseCode: DnsWire.BadVersionExtended);
            return DnsAction.Respond;
        }
        if (query.Class != DnsWire.ClassIn || !query.NameIsHostname)
        {
            return Forwarding();
        }
        var client = source is null ? null : state.FindWorkloadByAddress(source);
        var table = CurrentTable();
        var match = table.Find(name[..query.NameLength], query.LabelCount, client?.Namespace, out var host);
        switch (match)
        {
            case DnsNameMatch.NotOurs:
                return Forwarding();
            case DnsNameMatch.NoSuchName:
                Counters.CountAnswered();
                responseLength = WriteNoRecords(response, message, query, DnsWire.NameError, authoritative: true, truncated: false);
                return DnsAction.Respond;
            case DnsNameMatch.EmptyNonTerminal:
                Counters.CountAnswered();
                responseLength = WriteNoRecords(response, message, query, DnsWire.NoError, authoritative: true, truncated: false);
                return DnsAction.Respond;
        }
        Counters.CountAnswered();
        ReadOnlySpan<byte> addresses = query.Type switch
        {
            DnsWire.TypeA => host!.V4,
            DnsWire.TypeAaaa => host!.V6,
            // A known name asked for another type (MX, TXT, SRV...): it exists, with no such records.
            _ => default,
        };
        // A VIP is only reachable from its own network (Istio: client.network == vip.network).
        if (client is not null && host!.HasVips && !string.Equals(client.Network, host.Service.Network, StringComparison.Ordinal))
        {
            addresses = default;
        }
        var size = query.Type == DnsWire.TypeA ? 4 : 16;
        var recordLength = query.Type == DnsWire.TypeA ? DnsResponseWriter.ARecordLength : DnsResponseWriter.AaaaRecordLength;
        var count = addresses.Length / size;
        var total = query.QuestionEnd + count * recordLength + (query.HasEdns ? DnsResponseWriter.OptRecordLength : 0);
        if (total > limit)
        {
            // Too many addresses for the client's UDP size: say so (TC) and let it ask again over TCP.
            responseLength = WriteNoRecords(response, message, query, DnsWire.NoError, authoritative: true, truncated: true);
            return DnsAction.Respond;
        }
        var written = DnsResponseWriter.WriteHeaderAndQuestion(response, message, query, DnsWire.NoError, authoritative: true, count, truncated: false);
        for (var i = 0; i < count; i++)
        {
            written += DnsResponseWriter.WriteAddressRecord(response[written..], addresses.Slice(i * size, size));
        }
        if (query.HasEdns)
        {
            written += DnsResponseWriter.WriteOpt(response[written..], 0);
        }
        responseLength = written;
        return DnsAction.Respond;

        DnsAction Forwarding()
        {
            Counters.CountForwarded();
            return DnsAction.Forward;
        }
    }

    /// <summary>Header, question, no records, and our OPT record when the query had one.</summary>
    public static int WriteNoRecords(Span<byte> response, ReadOnlySpan<byte> message, in DnsQuery query, int responseCode, bool authoritative,
        bool truncated, int extendedResponseCode = 0)
    {
        var written = DnsResponseWriter.WriteHeaderAndQuestion(response, message, query, responseCode, authoritative, answerCount: 0, truncated);
        if (query.HasEdns)
        {
            written += DnsResponseWriter.WriteOpt(response[written..], extendedResponseCode);
        }
        return written;
    }

    /// <summary>The table of the current snapshot, rebuilt on the first query after the snapshot changed. Two
    /// queries racing to rebuild it both build the same table; either is fine.</summary>
    private DnsNameTable CurrentTable()
    {
        var snapshot = state.Snapshot;
        var table = Volatile.Read(ref _table);
        if (table is null || !ReferenceEquals(table.Snapshot, snapshot))
        {
            table = DnsNameTable.Build(snapshot);
            Volatile.Write(ref _table, table);
        }
        return table;
    }
}
