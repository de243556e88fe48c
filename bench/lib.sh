# Helpers shared by the bench scripts; source it after setting BENCH (the name used in messages).

# apt_install WHAT PACKAGE...: installs Debian packages, or explains why it cannot (not root) and exits.
apt_install() {
    local what="$1"; shift
    if [ "$(id -u)" -ne 0 ]; then echo "$BENCH: $what is missing and we are not root to apt-get install it" >&2; exit 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

# terminate PID: SIGTERM, then SIGKILL if it has not exited within 10 s (and say so: a proxy should stop promptly).
terminate() {
    local pid="$1" i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.2; done
    echo "$BENCH: pid $pid ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-60)...) ignored SIGTERM for 10 s; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# wait_http URL SECONDS: until the URL answers 2xx.
wait_http() {
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "$BENCH: $1 did not answer within $2 s" >&2; return 1; }
        sleep 0.2
    done
}

# mtls_certs DIR SERVER_IP CA_NAME: a throw-away ECDSA P-256 CA and a server (SAN IP:SERVER_IP, serverAuth) and client
# (clientAuth) certificate signed by it, for a haproxy pair's mutual TLS: DIR/ca.pem, DIR/server.pem, DIR/client.pem
# (certificate + key, as haproxy's crt wants them).
mtls_certs() {
    local dir="$1" ip="$2" name="$3" who
    mkdir -p "$dir"
    (
        cd "$dir"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -subj "/CN=$name" -days 1 -out ca.pem
        for who in server client; do
            openssl ecparam -name prime256v1 -genkey -noout -out "$who.key"
            openssl req -new -key "$who.key" -subj "/CN=haproxy-$who" -out "$who.csr"
            printf 'subjectAltName=IP:%s\nextendedKeyUsage=%s\n' "$ip" "$([ "$who" = server ] && echo serverAuth || echo clientAuth)" > "$who.ext"
            openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile "$who.ext" -out "$who.crt" 2>/dev/null
            cat "$who.crt" "$who.key" > "$who.pem"
        done
    ) >/dev/null
}
