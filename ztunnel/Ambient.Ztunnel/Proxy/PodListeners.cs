using Ambient.Hbone.Server;
using System.Net;
using System.Net.Sockets;
using Ambient.Ztunnel.Proxy.Inbound;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Ztunnel.Proxy.Socks5;
using Ambient.Dataplane.State;

namespace Ambient.Ztunnel.Proxy;

/// <summary>
/// Keeps one HBONE listener (podIP:15008) and one SOCKS5 front door (podIP:15080) per local enrolled pod, following
/// every snapshot: listeners for new pods are bound, those of pods that left are closed. Reconciling is serialized and
/// never throws (a listener that cannot bind is logged and retried on the next snapshot).
/// </summary>
internal sealed partial class PodListeners : IAsyncDisposable
{
    private readonly ProxyState _state;
    private readonly HboneInboundServer _inbound;
    private readonly IOutboundProxy _outbound;
    private readonly int _hbonePort;
    private readonly int _socksPort;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly Dictionary<IPAddress, Socks5Listener> _socks = new();
    private readonly SemaphoreSlim _reconcile = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();

    public PodListeners(ProxyState state, HboneInboundServer inbound, IOutboundProxy outbound, int hbonePort, int socksPort, ILoggerFactory loggerFactory)
    {
        _state = state;
        _inbound = inbound;
        _outbound = outbound;
        _hbonePort = hbonePort;
        _socksPort = socksPort;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger("Ambient.Ztunnel");
    }

    public IReadOnlyDictionary<IPAddress, IPEndPoint> Hbone => _inbound.Listeners;

    public IReadOnlyDictionary<IPAddress, IPEndPoint> Socks
    {
        get
        {
            lock (_socks)
            {
                var copy = new Dictionary<IPAddress, IPEndPoint>(_socks.Count);
                foreach (var (ip, l) in _socks)
                {
                    copy[ip] = l.LocalEndPoint;
                }
                return copy;
            }
        }
    }

    /// <summary>Follows the proxy state from now on.</summary>
    public void Start() => _state.Changed += OnStateChanged;

    // Reconciling never throws (it logs bind failures), so the task needs no observer.
    private void OnStateChanged(ProxyState state) => _ = ReconcileAsync();

    /// <summary>Makes the per-pod listeners match the local enrolled pods of the current snapshot.</summary>
    public async Task ReconcileAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }
        await _reconcile.WaitAsync().ConfigureAwait(false);
        try
        {
            var wanted = new HashSet<IPAddress>();
            foreach (var w in _state.LocalWorkloads.InMesh)
            {
                foreach (var a in w.Addresses)
                {
                    wanted.Add(a);
                }
            }
            foreach (var ip in wanted)
            {
                AddHbone(ip);
                AddSocks(ip);
            }
            foreach (var ip in _inbound.Listeners.Keys.ToArray())
            {
                if (!wanted.Contains(ip))
                {
                    _inbound.RemoveListener(ip);
                    Log.ListenerRemoved(_logger, "HBONE", ip.ToString());
                }
            }
            List<Socks5Listener> gone = [];
            lock (_socks)
            {
                foreach (var ip in _socks.Keys.ToArray())
                {
                    if (!wanted.Contains(ip))
                    {
                        gone.Add(_socks[ip]);
                        _socks.Remove(ip);
                    }
                }
            }
            foreach (var l in gone)
            {
                Log.ListenerRemoved(_logger, "SOCKS5", l.LocalEndPoint.ToString());
                await l.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _reconcile.Release();
        }
    }

    private void AddHbone(IPAddress ip)
    {
        if (_inbound.Listeners.ContainsKey(ip))
        {
            return;
        }
        try
        {
            var ep = _inbound.AddListener(ip);
            Log.ListenerAdded(_logger, "HBONE", ep.ToString());
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            Log.ListenerFailed(_logger, "HBONE", $"{ip}:{_hbonePort}", e.Message);
        }
    }

    private void AddSocks(IPAddress ip)
    {
        lock (_socks)
        {
            if (_socks.ContainsKey(ip))
            {
                return;
            }
        }
        try
        {
            var listener = Socks5Listener.Start(new IPEndPoint(ip, _socksPort), _outbound, _loggerFactory.CreateLogger<Socks5Listener>());
            lock (_socks)
            {
                _socks[ip] = listener;
            }
            Log.ListenerAdded(_logger, "SOCKS5", listener.LocalEndPoint.ToString());
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            Log.ListenerFailed(_logger, "SOCKS5", $"{ip}:{_socksPort}", e.Message);
        }
    }

    /// <summary>Stops following the state and closes the SOCKS5 front doors (the HBONE server is its owner's to stop).</summary>
    public async ValueTask DisposeAsync()
    {
        _state.Changed -= OnStateChanged;
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _reconcile.WaitAsync().ConfigureAwait(false);
        try
        {
            Socks5Listener[] socks;
            lock (_socks)
            {
                socks = [.. _socks.Values];
                _socks.Clear();
            }
            foreach (var l in socks)
            {
                await l.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _reconcile.Release();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "{Kind} listener up on {Endpoint}")]
        public static partial void ListenerAdded(ILogger logger, string kind, string endpoint);

        [LoggerMessage(2, LogLevel.Information, "{Kind} listener for {Address} removed")]
        public static partial void ListenerRemoved(ILogger logger, string kind, string address);

        [LoggerMessage(3, LogLevel.Error, "{Kind} listener on {Endpoint} could not start: {Error}")]
        public static partial void ListenerFailed(ILogger logger, string kind, string endpoint, string error);
    }
}
