"""The one way out of a box with a network namespace of its own: unix sockets in DIR, bind-mounted into the box.

  DIR/proxy.sock          an HTTP proxy (CONNECT, and absolute-URI requests) for apt, pip and uv in the box:
                          the package registries this machine reaches, by name, on ports 80 and 443 only.
  DIR/forward-PORT.sock   a byte relay to the runner's 127.0.0.1:PORT (a test's loopback mirror).

Inside the box, systemd-socket-proxyd listens on the box's own 127.0.0.1 and connects to these sockets
(scripts/box writes those units). Nothing here listens on an address: the runner's network is not reachable
from the box, and the box's addresses are not reachable from the runner.

Usage: box-uplink.py DIR [PORT...]
"""
import asyncio
import ipaddress
import os
import socket
import sys

PROXY_PORTS = {80, 443}


async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def splice(client_reader, client_writer, upstream_reader, upstream_writer, first=b""):
    if first:
        upstream_writer.write(first)
        await upstream_writer.drain()
    await asyncio.gather(pump(client_reader, upstream_writer), pump(upstream_reader, client_writer))


async def registry_connection(host, port):
    """Only public addresses: the box's test traffic stays in its own namespaces, never on the runner's network."""
    if port not in PROXY_PORTS:
        raise PermissionError(f"port {port} is not a registry's")
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for family, _type, _proto, _name, address in infos:
        ip = ipaddress.ip_address(address[0])
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            continue
        return await asyncio.open_connection(address[0], port, family=family)
    raise PermissionError(f"{host} has no address a registry would have")


async def answer(writer, status):
    try:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()
    except ConnectionError:
        pass  # the client gave up first


async def proxy_client(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    request_line, _crlf, rest = head.partition(b"\r\n")
    try:
        method, target, version = request_line.decode("ascii").split(" ")
    except ValueError:
        await answer(writer, "400 Bad Request")
        return
    try:
        if method == "CONNECT":
            host, _colon, port = target.rpartition(":")
            upstream = await registry_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await splice(reader, writer, *upstream)
            return
        if not target.startswith("http://"):
            await answer(writer, "400 Bad Request")
            return
        authority, _slash, path = target[len("http://"):].partition("/")
        host, _colon, port = authority.partition(":")
        upstream = await registry_connection(host, int(port or 80))
    except (PermissionError, OSError, ValueError) as error:
        print(f"box-uplink: {method} {target}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        await answer(writer, "502 Bad Gateway")
        return
    # One request per connection: the next one may name another host.
    headers = [line for line in rest.split(b"\r\n")
               if line and not line.lower().startswith((b"proxy-connection:", b"connection:", b"keep-alive:"))]
    first = b"\r\n".join([f"{method} /{path} {version}".encode(), *headers, b"Connection: close", b"", b""])
    await splice(reader, writer, *upstream, first=first)


def forward_client(port):
    async def handle(reader, writer):
        try:
            upstream = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await splice(reader, writer, *upstream)
    return handle


async def main(directory, ports):
    servers = []
    for name, handler in [("proxy.sock", proxy_client)] + [(f"forward-{port}.sock", forward_client(port)) for port in ports]:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.unlink(path)
        servers.append(await asyncio.start_unix_server(handler, path))
        os.chmod(path, 0o666)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], [int(port) for port in sys.argv[2:]]))
