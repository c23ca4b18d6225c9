# echo.py: a thread-per-connection echo server in the tutorial's style
# (socket + threading). Listens on 127.0.0.1:PORT (argv[1], 0 = the OS picks)
# and prints the port. Benchmark peer, bench/ only.
import sys
from socket import socket, SOCK_STREAM, AF_INET
from threading import Thread


def handle(client):
    with client:
        while True:
            data = client.recv(65536)
            if not data:
                break
            client.sendall(data)


def main():
    server = socket(family=AF_INET, type=SOCK_STREAM)
    server.bind(('127.0.0.1', int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    server.listen(512)
    print('listening on 127.0.0.1:%d' % server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        Thread(target=handle, args=(client,), daemon=True).start()


if __name__ == '__main__':
    main()
