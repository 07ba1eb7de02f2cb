"""The listening socket, created here rather than by uvicorn.

We set TCP_NODELAY on it (accepted sockets inherit it on Linux): uvicorn writes
a response's head and body separately, and with Nagle's algorithm on, a
keep-alive client waits for its own delayed ACK (~40 ms) on every request.
Binding ourselves also lets tests ask for port 0 and learn the port chosen.
"""

from __future__ import annotations

import socket


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
