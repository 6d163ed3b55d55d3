"""TLS 1.3 (stdlib ``ssl``) under the frame protocol, with the server certificate pinned.

TLS adds confidentiality (activations and results are otherwise readable on the wire, and a
server impersonator would get an AUTH tag to test token guesses against offline) and takes
over the frames' integrity: inside TLS the frames after the handshake carry no HMAC tag, since
TLS 1.3 records are AEAD (AES-GCM here) with their own sequence numbers, while the tagged AUTH
and WELCOME still prove the token both ways inside the session (``device_bridge.protocol``).
No client certificate is needed: the server end is pinned, so the client's token proof
cannot be relayed from another session. The server requires TLS when it binds an address
other than loopback (``device_bridge.server``). Both sides accept TLS 1.3 only.
The client trusts exactly one certificate, the server's, given as a file: it is the only
trust anchor, and the peer's certificate must also match it byte for byte (SHA-256 of the
DER), so no CA and no host name are involved. Make a pair with

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \\
        -subj /CN=pipesched-server -keyout server.key -out server.crt

(``self_signed_pair`` runs it).

The TLS handshake runs non-blocking under the caller's deadline, so a peer that trickles
handshake bytes cannot hold the connection past it.
"""

from __future__ import annotations

import hashlib
import select
import socket
import ssl
import subprocess
import time
from pathlib import Path


def _certificate_der(cert_file: str) -> bytes:
    try:
        with open(cert_file, encoding="ascii") as handle:
            return ssl.PEM_cert_to_DER_cert(handle.read())
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"certificate file {cert_file}: {error}") from None


def self_signed_pair(directory: str | Path, name: str = "pipesched-server",
                     days: int = 365) -> tuple[str, str]:
    """A fresh P-256 certificate and its key in ``directory`` (the ``openssl req`` above):
    their paths; ValueError in one line when openssl is missing or fails."""
    cert, key = Path(directory) / f"{name}.crt", Path(directory) / f"{name}.key"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:prime256v1", "-nodes", "-days", str(days), "-subj",
               f"/CN={name}", "-keyout", str(key), "-out", str(cert)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise ValueError("openssl is not installed: cannot make a certificate") from None
    except subprocess.CalledProcessError as error:
        raise ValueError(f"openssl req failed: {error.stderr.strip()[-200:]}") from None
    return str(cert), str(key)


def _handshake(sock: ssl.SSLSocket, deadline: float) -> None:
    """Complete the TLS handshake by ``deadline`` or close ``sock`` (which now owns the file
    descriptor of the socket it wraps) and raise."""
    try:
        _step_handshake(sock, deadline)
    except BaseException:  # deliberate: cleanup, re-raised
        sock.close()
        raise


def _step_handshake(sock: ssl.SSLSocket, deadline: float) -> None:
    sock.setblocking(False)
    while True:
        try:
            sock.do_handshake()
            sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            return
        except ssl.SSLWantReadError:
            waits = ([sock], [])
        except ssl.SSLWantWriteError:
            waits = ([], [sock])
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not any(select.select(*waits, [], remaining)):
            raise TimeoutError("TLS handshake deadline passed")


class ServerTls:
    """The server's certificate and key (``--tls-cert``, ``--tls-key``)."""

    def __init__(self, cert_file: str, key_file: str):
        _certificate_der(cert_file)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        try:
            self.context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"TLS key {key_file} / certificate {cert_file}: {error}") from None

    def wrap(self, sock: socket.socket, deadline: float) -> ssl.SSLSocket:
        wrapped = self.context.wrap_socket(sock, server_side=True,
                                           do_handshake_on_connect=False)
        _handshake(wrapped, deadline)
        return wrapped


class PinnedServerTls:
    """The client side: trusts only the certificate in ``cert_file`` (``--tls-cert``)."""

    def __init__(self, cert_file: str):
        self.fingerprint = hashlib.sha256(_certificate_der(cert_file)).digest()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.check_hostname = False  # the pin, not a name, identifies the server
        self.context.load_verify_locations(cafile=cert_file)

    def wrap(self, sock: socket.socket, deadline: float) -> ssl.SSLSocket:
        """Raises ``ssl.SSLCertVerificationError`` (an OSError) for any other certificate."""
        wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False)
        _handshake(wrapped, deadline)
        der = wrapped.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).digest() != self.fingerprint:
            wrapped.close()
            raise ssl.SSLCertVerificationError("server certificate does not match the pin")
        return wrapped
