"""What a request asks for, typed: the words the parser (handler.properties) produces and the
decision rules (handler.bundle, handler.rotation) read. Nothing here parses or decides."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .certificates import KeyAlgorithm


class RotationStage(Enum):
    """The ``RotationStage`` property's values (absent or empty: steady); docs/DESIGN.md §4."""

    INTRODUCE = "introduce"
    SWITCH = "switch"


DEFAULT_KEY_ALGORITHM = KeyAlgorithm.RSA_2048
DEFAULT_VALIDITY_DAYS = 36500
DEFAULT_RENEW_BEFORE_DAYS = 60
DEFAULT_SERVER_SANS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class GeneratorProperties:
    """What a ``Custom::SelfSignedCertificate`` asks for."""

    rack: str
    key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM
    validity_days: int = DEFAULT_VALIDITY_DAYS
    renew_before_days: int = DEFAULT_RENEW_BEFORE_DAYS
    server_subject_alt_names: tuple[str, ...] = DEFAULT_SERVER_SANS
    kms_key_id: str | None = None
    rotation_token: str | None = None
    rotation_stage: RotationStage | None = None  # a staged CA replacement


@dataclass(frozen=True)
class GetterProperties:
    """What a ``Custom::SelfSignedCertificateGetter`` asks for."""

    rack: str
    parameter_key: str
