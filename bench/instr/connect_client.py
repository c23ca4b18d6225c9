# connect_client.py PORT N: N clients one after the other, each connects,
# reads to the end of the stream and closes (the time server's clients).
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    while s.recv(4096): pass
    s.close()
