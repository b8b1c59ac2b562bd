"""A throwaway certificate authority for the secured local Kafka cluster (development and tests only).

Production brokers carry certificates from the organisation's own CA; locally, `vaxflow dev up
--kafka-security sasl_ssl` needs one that clients can verify with hostname checks on, so this
makes a CA and one broker certificate for 127.0.0.1 and localhost with the `cryptography`
library. The broker certificate also serves as the brokers' client certificate on their
internal and controller listeners (mutual TLS), so it carries both key usages.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from workers.base.private_files import write_private

BROKER_COMMON_NAME = "vaxflow-kafka-broker"
VALID_FOR = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Pki:
    """Where the CA certificate (what clients trust) and the brokers' PEM keystore are."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def broker_keystore(self) -> Path:
        """The broker's PKCS#8 key followed by its certificate, as Kafka's PEM keystore wants it."""
        return self.directory / "broker-keystore.pem"

    @property
    def broker_principal(self) -> str:
        """The principal Kafka derives from the broker certificate on a mutual-TLS listener."""
        return f"User:CN={BROKER_COMMON_NAME}"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def make_pki(directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Pki:
    """Create the CA and broker certificate once; an existing set is kept (brokers restart with it).

    `hosts` are the names and addresses clients reach the brokers by (hostname verification is
    on): 127.0.0.1 for the local cluster, the service names for docker-compose's.
    """
    pki = Pki(directory)
    if pki.ca_file.exists() and pki.broker_keystore.exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("vaxflow development CA"))
        .issuer_name(_name("vaxflow development CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        x509.CertificateBuilder()
        .subject_name(_name(BROKER_COMMON_NAME))
        .issuer_name(ca.subject)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName([_alt_name(host) for host in hosts]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem = broker.public_bytes(serialization.Encoding.PEM)
    write_private(pki.broker_keystore, _pem_key(broker_key) + cert_pem)
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return pki


def main(argv: list[str] | None = None) -> int:
    """`python -m vaxflow.dev.pki DIR HOST...`: the same CA and broker keystore for docker-compose's
    cluster profile, whose brokers are reached by their service names."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    pki = make_pki(Path(args[0]), tuple(args[1:]) or ("localhost", "127.0.0.1"))
    print(pki.ca_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
