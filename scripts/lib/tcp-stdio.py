"""Connect to HOST PORT and relay stdin/stdout: SSH's ProxyCommand into a box's private network,
run by `box connect` inside a network namespace (`ip netns exec`), so the connection comes from there."""
import os
import selectors
import socket
import sys


def main(host, port):
    connection = socket.create_connection((host, int(port)), timeout=10)
    connection.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "in")
    selector.register(connection, selectors.EVENT_READ, "net")
    while True:
        for key, _events in selector.select():
            if key.data == "in":
                data = os.read(sys.stdin.fileno(), 65536)
                if not data:
                    connection.shutdown(socket.SHUT_WR)
                    selector.unregister(sys.stdin.fileno())
                    continue
                connection.sendall(data)
            else:
                data = connection.recv(65536)
                if not data:
                    return
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: tcp-stdio.py HOST PORT")
    try:
        main(*sys.argv[1:])
    except OSError as error:
        sys.exit(f"tcp-stdio: {sys.argv[1]}:{sys.argv[2]}: {error}")
