"""Why the cluster refused this process, in words an operator can act on.

A wrong password, an untrusted broker certificate, a plaintext client on a TLS listener or a
missing ACL cannot be fixed by retrying, yet aiokafka reports the first three only as "Unable to
bootstrap" (the cause goes to its log) and a worker would retry them for ever. `explain` turns
such a failure into a `KafkaAccessError` naming the setting or grant at fault; a worker then
stops retrying and reports the reason on /readyz, and a command prints it. Anything else (a
broker that is down or restarting) is left to the normal retries. Secrets never enter a message.
"""

from __future__ import annotations

import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from topics.ensure import TopicCreateError
from workers.base.kafka import KafkaConnection, connection

_AUTHORIZATION = (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


class KafkaAccessError(RuntimeError):
    """The cluster will not let this process in, or not do this: settings, credentials or ACLs must change."""


def who(settings: KafkaConnection) -> str:
    if settings.kafka_security_protocol.startswith("SASL_"):
        return f"principal User:{settings.kafka_sasl_username}"
    return f"this client ({settings.kafka_security_protocol})"


def authorization_message(settings: KafkaConnection, exc: KafkaError) -> str:
    """A refused operation: which principal lacks which ACL (Kafka names the topic, if any)."""
    what = {
        TopicAuthorizationFailedError: "a topic ACL",
        GroupAuthorizationFailedError: "a consumer-group ACL",
        TransactionalIdAuthorizationFailed: "a transactional-id ACL",
        ClusterAuthorizationFailedError: "an ACL to write (no topic Write grant, so no producer id)",
    }.get(type(exc), "an ACL")
    detail = f" ({', '.join(str(a) for a in exc.args)})" if exc.args else ""
    return f"Kafka refused {who(settings)}: missing {what}{detail}; see `vaxflow topics acls`"


async def diagnose(settings: KafkaConnection, timeout: float = 10.0) -> str | None:
    """Open one connection to the first bootstrap server the way every client does, and say what
    refused it; None if it connects, or fails in a way a retry may cure (refused, unreachable)."""
    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    options = connection(settings)
    options.pop("bootstrap_servers")
    protocol = settings.kafka_security_protocol
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **options)
    except SaslAuthenticationFailed:
        return (
            f"SASL authentication failed for VAXFLOW_KAFKA_SASL_USERNAME={settings.kafka_sasl_username}"
            f" ({settings.kafka_sasl_mechanism}): wrong password, or no such user on the cluster"
        )
    except UnsupportedSaslMechanismError:
        return f"the brokers do not offer VAXFLOW_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism}"
    except ssl.SSLCertVerificationError as exc:
        ca = settings.kafka_ssl_ca_file or "the system's CA store"
        return f"the broker's TLS certificate is not trusted ({exc.verify_message}; CA: {ca})"
    except ssl.SSLError as exc:
        return f"TLS handshake with the broker failed ({exc.reason}): is the listener TLS and the client cert right?"
    except KafkaConnectionError as exc:
        if "closed" in str(exc) and not protocol.endswith("SSL"):
            return (
                f"the broker closed the connection during the handshake: VAXFLOW_KAFKA_SECURITY_PROTOCOL={protocol}"
                " does not match its listener (a TLS or SASL listener refuses a plaintext client)"
            )
        return None
    except (OSError, TimeoutError):
        return None
    conn.close()
    return None


async def explain(settings: KafkaConnection, exc: BaseException) -> KafkaAccessError | None:
    """The access problem behind `exc`, or None if it is not one (retry as usual)."""
    if isinstance(exc, KafkaAccessError):
        return exc
    if isinstance(exc, _AUTHORIZATION):
        return KafkaAccessError(authorization_message(settings, exc))
    if isinstance(exc, TopicCreateError) and "Authorization failed" in str(exc):
        return KafkaAccessError(f"Kafka refused {who(settings)} to create topics ({exc}); run it as the admin")
    if isinstance(exc, KafkaConnectionError | ssl.SSLError):
        reason = await diagnose(settings)
        return KafkaAccessError(reason) if reason else None
    return None
