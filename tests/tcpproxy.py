"""A TCP forwarder the tests put between workers and PostgreSQL to cut connections at will."""

from __future__ import annotations

import select
import socket
import threading


class TCPProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``. ``start()``/``stop()`` open and close the
    listening socket; ``drop_connections()`` cuts every forwarded connection at once."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._stopped.clear()
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Stop accepting and cut every connection."""
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.drop_connections()

    def drop_connections(self) -> int:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        return len(pairs)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._pairs)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                if (a, b) in self._pairs:
                    self._pairs.remove((a, b))
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass
