# The TLS origin of bench/transfer.sh: a small HTTPS/1.1 server, one thread per connection.
#
#   python3 origin.py ADDR PORT CERT KEY SECRETS LOG
#
# GET /body/N  answers N bytes (Content-Length, Connection: close): one random MiB, made once,
#              sent over and over (so the body is not compressible and not a run of one byte).
# GET /echo    answers "k=<the real value of the secret>\n": the gate must bring it back as the
#              placeholder (the bench checks that the scrubber runs at all).
# Each request appends one line to LOG: path, what x-api-key held (real / placeholder / other /
# none, never the value), TLS version and cipher. LOG.ready is written once listening.
import os, socket, ssl, sys, threading

addr, port, cert, key, secrets, log = sys.argv[1:7]
real = ""
for line in open(secrets):
    name, _, value = line.rstrip("\n").partition("=")
    if name == "ANTHROPIC_API_KEY":
        real = value
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
block = memoryview(os.urandom(1 << 20))
srv = socket.create_server((addr, int(port)), backlog=64)
lock = threading.Lock()
open(log + ".ready", "w").close()


def handle(raw):
    try:
        raw.settimeout(120)
        c = ctx.wrap_socket(raw, server_side=True)
        f = c.makefile("rb")
        line = f.readline().decode("latin-1")
        if not line:
            return
        apikey = None
        while True:
            h = f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            if k.strip().lower() == "x-api-key":
                apikey = v.strip()
        path = line.split(" ")[1] if line.count(" ") >= 2 else "?"
        if apikey is None:
            seen = "none"
        elif apikey == real:
            seen = "real"
        elif len(apikey) == len(real) and apikey.startswith("sk-ant-api03-"):
            seen = "placeholder"   # the shape of the real key, not the key: what the sandbox holds
        else:
            seen = "other"
        with lock, open(log, "a") as out:
            out.write("%s %s %s %s\n" % (path, seen, c.version(), c.cipher()[0]))
        if path.startswith("/body/"):
            n = int(path[len("/body/"):])
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n" % n)
            while n > 0:
                part = block[:min(n, len(block))]
                c.sendall(part)
                n -= len(part)
        elif path == "/echo":
            body = ("k=%s\n" % real).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
        else:
            c.sendall(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    except Exception as e:
        with lock, open(log + ".errors", "a") as out:
            out.write(repr(e) + "\n")
    finally:
        raw.close()


while True:
    conn, _ = srv.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
