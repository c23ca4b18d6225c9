# keepalive_client.py PORT N [tls]: N "GET /" requests, one at a time, on
# one keep-alive connection (over TLS without verifying when "tls" is given).
import socket, ssl, sys

port, n, tls = int(sys.argv[1]), int(sys.argv[2]), len(sys.argv) > 3
conn = socket.create_connection(("127.0.0.1", port))
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = ctx.wrap_socket(conn)
replies = conn.makefile("rb")
for _ in range(n):
    conn.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    length = 0
    while True:
        line = replies.readline()
        if not line:
            sys.exit("the server closed the connection")
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        if line == b"\r\n":
            break
    replies.read(length)
