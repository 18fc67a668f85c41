"""The fetcher verifies TLS certificates with its one shared context (net/fetch.py
_tls_context): a real TLS server on loopback whose certificate no public CA signed is refused,
on the first fetch and on later ones alike."""

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from net.fakes import PNG
from vidgate.net.fetch import FetchError, FetchPolicy, Network, fetch_url
from vidgate.net.fetch import IPAddress as FetchIPAddress

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
HOST = "images.example.test"


class TlsServer:
    """Accepts connections with a certificate for HOST from a private CA; records why each
    handshake failed (the client's alert), or answers one PNG when it succeeds."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.handshake_errors: list[str] = []
        self._recorded = threading.Condition()
        self.served = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _address = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                try:
                    with self.context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(65536)
                        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(PNG)}\r\n\r\n"
                        tls.sendall(head.encode() + PNG)
                        self.served += 1
                except (ssl.SSLError, OSError) as error:
                    with self._recorded:
                        self.handshake_errors.append(str(getattr(error, "reason", error)))
                        self._recorded.notify_all()

    def wait_for_errors(self, count: int, *, timeout_s: float) -> bool:
        with self._recorded:
            return self._recorded.wait_for(
                lambda: len(self.handshake_errors) >= count, timeout=timeout_s
            )

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(authority: trustme.CA) -> Iterator[TlsServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(HOST).configure_cert(context)
    tls = TlsServer(context)
    yield tls
    tls.close()


def fetch_trusting(authority: trustme.CA, port: int) -> bytes:
    """The control: a client that trusts the private CA gets the answer."""
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        tls.sendall(f"GET /cat.png HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        answer = b""
        while not answer.endswith(PNG):
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


async def to_loopback(host: str, port: int) -> list[FetchIPAddress]:
    assert host == HOST
    return [ipaddress.ip_address("127.0.0.1")]


async def test_a_certificate_no_public_ca_signed_is_refused_every_time(
    server: TlsServer, authority: trustme.CA
) -> None:
    assert fetch_trusting(authority, server.port).endswith(PNG)
    policy = FetchPolicy(allowed_private_networks=LOOPBACK)
    network = Network(resolve=to_loopback)
    for _ in range(2):
        with pytest.raises(FetchError):
            await fetch_url(f"https://{HOST}:{server.port}/cat.png", policy=policy, network=network)
    # The server works for a client that trusts its CA (above); the fetcher hung up in both
    # handshakes, before sending any request. The server's thread may record the second
    # failure just after the fetcher has given up.
    assert server.wait_for_errors(2, timeout_s=5), server.handshake_errors
    assert len(server.handshake_errors) == 2, server.handshake_errors
    assert server.served == 1
