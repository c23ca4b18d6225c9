# time.py: the tutorial's Python time server (python-network-programming.md),
# as written there, except that it listens on 127.0.0.1:PORT (argv[1], 0 = the
# OS picks) and prints the port. Benchmark peer, bench/ only.
import sys
from socket import socket, SOCK_STREAM, AF_INET
from datetime import datetime


def main():
    server = socket(family=AF_INET, type=SOCK_STREAM)
    server.bind(('127.0.0.1', int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    server.listen(512)
    print('listening on 127.0.0.1:%d' % server.getsockname()[1], flush=True)
    while True:
        client, addr = server.accept()
        print(str(addr) + '连接到了服务器.')
        client.send(str(datetime.now()).encode('utf-8'))
        client.close()


if __name__ == '__main__':
    main()
