namespace Ambient.TestCommon;

/// <summary>How the plug-in CA's key is written to <c>ca-key.pem</c>.</summary>
public enum CaKeyFormat
{
    /// <summary>"RSA PRIVATE KEY" (RSA only).</summary>
    Pkcs1,

    /// <summary>"EC PRIVATE KEY" (EC only).</summary>
    Sec1,

    /// <summary>"PRIVATE KEY".</summary>
    Pkcs8,

    /// <summary>"ENCRYPTED PRIVATE KEY" (PBES2, AES-256-CBC), password in <see cref="PlugInCaFolder.PasswordFile"/>.</summary>
    EncryptedPkcs8,
}

/// <summary>
/// An Istio <c>cacerts</c> folder made by the system openssl, independently of our code: a self-signed root
/// (EC P-256) whose key stays outside the folder, and an intermediate signed by it. Missing openssl fails the test.
/// </summary>
public sealed class PlugInCaFolder : IDisposable
{
    // The extensions of each certificate the tests need, as an operator's openssl config would have them.
    private const string OpenSslConfig = """
        [req]
        distinguished_name = dn
        prompt = no
        x509_extensions = root
        [dn]
        O = cluster.local
        CN = Plug-in Test Root CA
        [root]
        basicConstraints = critical,CA:true
        keyUsage = critical,keyCertSign,cRLSign
        subjectKeyIdentifier = hash
        [intermediate]
        basicConstraints = critical,CA:true,pathlen:0
        keyUsage = critical,keyCertSign,cRLSign
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        [not_a_ca]
        basicConstraints = critical,CA:false
        keyUsage = critical,digitalSignature,keyEncipherment
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        """;

    private readonly TempDir _dir = new();
    private readonly string _work;

    /// <param name="keyAlgorithm">"rsa:2048", "rsa:4096", "ec:P-256" or "ec:P-384".</param>
    /// <param name="intermediateDays">The intermediate's life in days; -1 makes one that has already expired.</param>
    /// <param name="intermediateIsCa">False signs ca-cert.pem without CA:true, as a leaf.</param>
    public PlugInCaFolder(string keyAlgorithm = "ec:P-256", CaKeyFormat keyFormat = CaKeyFormat.Pkcs8, int intermediateDays = 365, bool intermediateIsCa = true)
    {
        _work = Path.Combine(_dir.Path, "work");
        Folder = Path.Combine(_dir.Path, "cacerts");
        Directory.CreateDirectory(_work);
        Directory.CreateDirectory(Folder);
        var config = Write(_work, "openssl.cnf", OpenSslConfig);
        var rootKey = Path.Combine(_work, "root-key.pem");
        OpenSsl("req", "-x509", "-config", config, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", rootKey, "-out", RootCert, "-days", "3650");

        var plainKey = NewKey(keyAlgorithm, keyFormat);
        var csr = Path.Combine(_work, "ca.csr");
        OpenSsl("req", "-new", "-key", plainKey, "-subj", "/O=cluster.local/CN=Plug-in Test Intermediate CA", "-out", csr);
        OpenSsl("x509", "-req", "-in", csr, "-CA", RootCert, "-CAkey", rootKey, "-set_serial", "4096",
            "-days", intermediateDays.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-extfile", config, "-extensions", intermediateIsCa ? "intermediate" : "not_a_ca", "-out", CaCert);
        File.WriteAllText(CertChain, File.ReadAllText(CaCert) + File.ReadAllText(RootCert));
        WriteKey(plainKey, keyFormat, CaKey);
    }

    /// <summary>The folder to pass as <c>--ca-dir</c>.</summary>
    public string Folder { get; }

    public string CaCert => Path.Combine(Folder, "ca-cert.pem");
    public string CaKey => Path.Combine(Folder, "ca-key.pem");
    public string RootCert => Path.Combine(Folder, "root-cert.pem");
    public string CertChain => Path.Combine(Folder, "cert-chain.pem");

    /// <summary>Set for <see cref="CaKeyFormat.EncryptedPkcs8"/>: the password with a trailing newline, as echo writes it.</summary>
    public string? PasswordFile { get; private set; }

    /// <summary>Puts a fresh key of the same kind in ca-key.pem: a key that does not match ca-cert.pem.</summary>
    public void ReplaceKeyWithAnother(string keyAlgorithm, CaKeyFormat keyFormat) => WriteKey(NewKey(keyAlgorithm, keyFormat), keyFormat, CaKey);

    /// <summary>A scratch file beside (not in) the CA folder.</summary>
    public string WriteScratch(string name, string content) => Write(_work, name, content);

    public void Dispose() => _dir.Dispose();

    private static void OpenSsl(params string[] args)
    {
        var (code, output) = Ambient.TestCommon.OpenSsl.Run(args);
        if (code != 0)
        {
            throw new InvalidOperationException($"openssl {string.Join(' ', args)} failed ({code}): {output}");
        }
    }

    // A key in its algorithm's traditional form (PKCS#1 or SEC1), which every later step can read unencrypted.
    private string NewKey(string keyAlgorithm, CaKeyFormat format)
    {
        var path = Path.Combine(_work, "key-" + Guid.NewGuid().ToString("N")[..8] + ".pem");
        var (kind, size) = (keyAlgorithm.Split(':')[0], keyAlgorithm.Split(':')[1]);
        if (kind == "rsa" && format == CaKeyFormat.Sec1 || kind == "ec" && format == CaKeyFormat.Pkcs1)
        {
            throw new ArgumentException($"{format} cannot hold a {kind} key", nameof(format));
        }
        if (kind == "rsa")
        {
            OpenSsl("genrsa", "-traditional", "-out", path, size);
        }
        else
        {
            OpenSsl("ecparam", "-name", size == "P-384" ? "secp384r1" : "prime256v1", "-genkey", "-noout", "-out", path);
        }
        return path;
    }

    private void WriteKey(string plainKey, CaKeyFormat format, string target)
    {
        switch (format)
        {
            case CaKeyFormat.Pkcs1 or CaKeyFormat.Sec1:
                File.Copy(plainKey, target, overwrite: true);
                break;
            case CaKeyFormat.Pkcs8:
                OpenSsl("pkcs8", "-topk8", "-nocrypt", "-in", plainKey, "-out", target);
                break;
            case CaKeyFormat.EncryptedPkcs8:
                PasswordFile ??= Write(_work, "ca-key.password", "correct horse battery staple\n");
                OpenSsl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "file:" + PasswordFile, "-in", plainKey, "-out", target);
                break;
        }
    }

    private static string Write(string folder, string name, string content)
    {
        var path = Path.Combine(folder, name);
        File.WriteAllText(path, content);
        return path;
    }
}
