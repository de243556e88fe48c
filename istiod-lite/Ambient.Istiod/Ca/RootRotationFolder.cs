using System.Security.Cryptography;
using Ambient.Core.Files;
using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>
/// The file trigger of a root rotation for the default (self-signed) CA: a new root pair dropped into
/// <c>&lt;state&gt;/rotate-root/</c> (<c>root-cert.pem</c> + <c>root-key.pem</c>, as the state folder holds them) is
/// checked and, when good, rotated to (<see cref="RootRotation"/>); when done the pair replaces the state folder's
/// root and the drop folder is emptied, so a restart keeps the new root. A bad pair is refused with one error line
/// naming the file, once per content, and the old root keeps serving. The folder is polled (1 s): it works the same
/// on every file system, and a rotation is rare.
/// </summary>
internal sealed partial class RootRotationFolder : IAsyncDisposable
{
    public const string FolderName = SelfSignedRoot.RotationFolder;

    private readonly string _stateFolder;
    private readonly string _trustDomain;
    private readonly RootRotation _rotation;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly TimeSpan _poll;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<CaSigner> _adopted = [];
    private string? _lastRefused;
    private Task _loop = Task.CompletedTask;

    public RootRotationFolder(string stateFolder, string trustDomain, RootRotation rotation, ILogger logger, TimeProvider? time = null, TimeSpan? poll = null)
    {
        _stateFolder = stateFolder;
        _trustDomain = trustDomain;
        _rotation = rotation;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        _poll = poll ?? TimeSpan.FromSeconds(1);
    }

    public string Folder => Path.Combine(_stateFolder, FolderName);

    public void Start() => _loop = Task.Run(() => RunAsync(_stop.Token));

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await CheckOnceAsync(cancellationToken).ConfigureAwait(false);
                await Task.Delay(_poll, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Log.Failed(_logger, ex.Message);
                await Task.Delay(_poll, _time, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>One look at the drop folder; returns true when a rotation ran to the end.</summary>
    internal async Task<bool> CheckOnceAsync(CancellationToken cancellationToken)
    {
        var certPath = Path.Combine(Folder, CaStore.RootCertFile);
        var keyPath = Path.Combine(Folder, CaStore.RootKeyFile);
        if (!File.Exists(certPath) || !File.Exists(keyPath))
        {
            // Nothing dropped, or the second file is still on its way.
            _lastRefused = null;
            return false;
        }
        var fingerprint = Fingerprint(certPath, keyPath);
        if (fingerprint == _lastRefused)
        {
            return false;
        }
        CaSigner next;
        try
        {
            // The same checks as the state folder's own root: private folder and key, a CA, not expired, key matches.
            StrictModes.CheckFolder(Folder, "root rotation folder");
            StrictModes.CheckSecretFile(keyPath, "new CA root key");
            next = CaStore.Load(certPath, keyPath, _trustDomain, _time);
        }
        catch (Exception ex) when (ex is CaStateException or InsecureFileException or IOException or UnauthorizedAccessException)
        {
            Refuse(fingerprint, ex.Message);
            return false;
        }
        try
        {
            Log.Starting(_logger, certPath);
            await _rotation.RotateAsync(next, cancellationToken).ConfigureAwait(false);
        }
        catch (RotationRefusedException ex)
        {
            next.Dispose();
            Refuse(fingerprint, ex.Message);
            return false;
        }
        _adopted.Add(next);
        // Key first: a crash in between leaves "key does not belong to the certificate", which the next start
        // reports, rather than a root whose key is gone.
        File.Move(keyPath, Path.Combine(_stateFolder, CaStore.RootKeyFile), overwrite: true);
        File.Move(certPath, Path.Combine(_stateFolder, CaStore.RootCertFile), overwrite: true);
        Log.Promoted(_logger, _stateFolder);
        return true;
    }

    private void Refuse(string fingerprint, string reason)
    {
        _lastRefused = fingerprint;
        Log.Refused(_logger, reason);
    }

    private static string Fingerprint(string certPath, string keyPath)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(File.ReadAllBytes(certPath));
        hash.AppendData(File.ReadAllBytes(keyPath));
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
        _stop.Dispose();
        foreach (var signer in _adopted)
        {
            signer.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "root rotation requested by {File}")]
        public static partial void Starting(ILogger logger, string file);

        [LoggerMessage(2, LogLevel.Error, "root rotation refused, the current root keeps serving: {Reason}")]
        public static partial void Refused(ILogger logger, string reason);

        [LoggerMessage(3, LogLevel.Information, "the new root is now the state folder's root ({Folder}); it survives restarts")]
        public static partial void Promoted(ILogger logger, string folder);

        [LoggerMessage(4, LogLevel.Warning, "root rotation folder not readable, retrying: {Error}")]
        public static partial void Failed(ILogger logger, string error);
    }
}
