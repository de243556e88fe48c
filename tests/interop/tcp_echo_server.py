#!/usr/bin/python3
"""A raw TCP echo workload for a local mesh pod (`command:`): listens on $POD_IP:$PORT, echoes every byte and answers
the client's half-close with its own. One thread per connection."""
import os
import socket
import threading


def serve(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                conn.shutdown(socket.SHUT_WR)
                return
            conn.sendall(data)


server = socket.create_server((os.environ["POD_IP"], int(os.environ["PORT"])), backlog=128)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
