"""Property parsing: CloudFormation's strings in, typed values or a reason naming the property."""

from __future__ import annotations

from typing import Any

import pytest

from handler.certificates import KeyAlgorithm
from handler.properties import (
    PropertyError,
    parse_generator,
    parse_getter,
    rotation_requested,
)
from tests.conftest import NOW


def test_defaults_follow_the_spec() -> None:
    parsed = parse_generator({"ServiceToken": "arn", "Rack": "convox", "Version": "1"}, NOW)
    assert parsed.key_algorithm is KeyAlgorithm.RSA_2048
    assert parsed.validity_days == 36500
    assert parsed.renew_before_days == 60
    assert parsed.server_subject_alt_names == ("localhost", "127.0.0.1")
    assert parsed.kms_key_id is None
    assert parsed.rotation_token is None


def test_strings_are_converted_like_cloudformation_sends_them() -> None:
    parsed = parse_generator(
        {
            "Rack": "prod",
            "KeyAlgorithm": "ecdsa-p384",
            "ValidityDays": "3650",
            "RenewBeforeDays": "30",
            "ServerSubjectAltNames": " docker.internal, 10.0.0.1 ,::1,DOCKER.internal",
            "KmsKeyId": "alias/docker-tls",
            "RotationToken": "2026-11",
            "Description": "old rack templates send this",
            "ServiceTimeout": "300",
        },
        NOW,
    )
    assert parsed.key_algorithm is KeyAlgorithm.ECDSA_P384
    assert (parsed.validity_days, parsed.renew_before_days) == (3650, 30)
    assert parsed.server_subject_alt_names == ("docker.internal", "10.0.0.1", "::1")
    assert parsed.kms_key_id == "alias/docker-tls"
    assert parsed.rotation_token == "2026-11"


def test_a_list_of_sans_is_accepted() -> None:
    parsed = parse_generator({"Rack": "r", "ServerSubjectAltNames": ["*.docker.internal"]}, NOW)
    assert parsed.server_subject_alt_names == ("*.docker.internal",)


@pytest.mark.parametrize(
    "name",
    [
        "*.ec2.internal",
        "*.us-east-1.compute.internal",
        "*.eu-west-1.compute.internal",
        "*.rack.example.com",
        "*.compute.internal",  # three labels: no instance name is directly under it, but allowed
    ],
)
def test_a_fleet_wide_wildcard_is_accepted(name: str) -> None:
    parsed = parse_generator({"Rack": "r", "ServerSubjectAltNames": f"localhost,{name}"}, NOW)
    assert parsed.server_subject_alt_names == ("localhost", name)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("*", "'*' is a wildcard for every name"),
        ("*.com", "'*.com' is a wildcard on a top-level domain (com)"),
        ("*.internal", "'*.internal' is a wildcard on a top-level domain (internal)"),
        ("*.co.uk", "'*.co.uk' is a wildcard on a public suffix (co.uk)"),
        ("*.amazonaws.com", "'*.amazonaws.com' is a wildcard on a public suffix (amazonaws.com)"),
        ("a*.example.com", "'a*.example.com' is a wildcard that is not the whole leftmost label"),
        ("*a.example.com", "'*a.example.com' is a wildcard that is not the whole leftmost label"),
        ("foo.*.example.com", "is a wildcard that is not the whole leftmost label"),
        ("*.*.example.com", "is a wildcard that is not the whole leftmost label"),
        ("a,,b", "entry 2 is empty"),
        ("a,", "entry 2 is empty"),
        ("under_score.example", "'under_score.example' is neither an IP address nor a DNS name"),
        ("300.1.1.1", "'300.1.1.1' is neither an IP address nor a DNS name"),
        ("a" * 64 + ".com", "is neither an IP address nor a DNS name"),
    ],
)
def test_a_bad_server_name_is_refused_with_a_sentence_naming_it(entry: str, why: str) -> None:
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "r", "ServerSubjectAltNames": entry}, NOW)
    message = str(raised.value)
    assert message.startswith("ServerSubjectAltNames entry ")
    assert why in message


BAD_GENERATOR: list[tuple[dict[str, Any], str]] = [
    ({}, "Rack"),
    ({"Rack": ""}, "Rack"),
    ({"Rack": "   "}, "Rack"),
    ({"Rack": " padded"}, "Rack"),
    ({"Rack": "line\nbreak"}, "Rack"),
    ({"Rack": "x" * 129}, "Rack"),
    ({"Rack": "é" * 65}, "Rack"),  # 130 bytes of UTF-8
    ({"Rack": 42}, "Rack"),
    ({"Rack": ["a"]}, "Rack"),
    ({"Rack": "r", "ValidityDays": "ten"}, "ValidityDays"),
    ({"Rack": "r", "ValidityDays": "0"}, "ValidityDays"),
    ({"Rack": "r", "ValidityDays": "-5"}, "ValidityDays"),
    ({"Rack": "r", "ValidityDays": "1.5"}, "ValidityDays"),
    ({"Rack": "r", "ValidityDays": "1e3"}, "ValidityDays"),
    ({"Rack": "r", "ValidityDays": "99999999999"}, "ValidityDays"),
    ({"Rack": "r", "ValidityDays": "3000000"}, "ValidityDays"),  # past year 9999
    ({"Rack": "r", "ValidityDays": True}, "ValidityDays"),
    ({"Rack": "r", "ValidityDays": " 30"}, "ValidityDays"),
    ({"Rack": "r", "RenewBeforeDays": "0"}, "RenewBeforeDays"),
    ({"Rack": "r", "RenewBeforeDays": "x"}, "RenewBeforeDays"),
    ({"Rack": "r", "ValidityDays": "60", "RenewBeforeDays": "60"}, "RenewBeforeDays"),
    ({"Rack": "r", "ValidityDays": "30"}, "RenewBeforeDays"),  # default 60 >= 30
    ({"Rack": "r", "KeyAlgorithm": "RSA-1024"}, "KeyAlgorithm"),
    ({"Rack": "r", "KeyAlgorithm": "Ed25519"}, "KeyAlgorithm"),
    ({"Rack": "r", "KeyAlgorithm": ""}, "KeyAlgorithm"),
    ({"Rack": "r", "KeyAlgorithm": 2048}, "KeyAlgorithm"),
    ({"Rack": "r", "ServerSubjectAltNames": ""}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": []}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": "a,,b"}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": ["ok", 7]}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": ["ok", ""]}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": "under_score.example"}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": "-bad.example"}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": "http://x"}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": "300.1.1.1"}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": "10.0.0"}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": "a" * 64 + ".com"}, "ServerSubjectAltNames"),
    ({"Rack": "r", "ServerSubjectAltNames": {"a": "b"}}, "ServerSubjectAltNames"),
    (
        {"Rack": "r", "ServerSubjectAltNames": [f"h{i}" for i in range(101)]},
        "ServerSubjectAltNames",
    ),
    ({"Rack": "r", "KmsKeyId": "has space"}, "KmsKeyId"),
    ({"Rack": "r", "KmsKeyId": 5}, "KmsKeyId"),
    ({"Rack": "r", "RotationToken": "x" * 257}, "RotationToken"),
    ({"Rack": "r", "RotationToken": 5}, "RotationToken"),
    ({"Rack": "r", "KeySize": "2048"}, "KeySize"),
    ({"Rack": "r", "ParameterKey": "x"}, "ParameterKey"),
]


@pytest.mark.parametrize(("properties", "name"), BAD_GENERATOR)
def test_bad_generator_properties_name_the_property(properties: dict[str, Any], name: str) -> None:
    with pytest.raises(PropertyError) as raised:
        parse_generator(properties, NOW)
    assert str(raised.value).startswith(name)
    assert raised.value.name == name


@pytest.mark.parametrize(
    ("properties", "name"),
    [
        ({"ParameterKey": "x-docker-tls-key"}, "Rack"),
        ({"Rack": "r"}, "ParameterKey"),
        ({"Rack": "r", "ParameterKey": ""}, "ParameterKey"),
        ({"Rack": "r", "ParameterKey": ["a"]}, "ParameterKey"),
        ({"Rack": "r", "ParameterKey": "k", "KeyAlgorithm": "RSA-2048"}, "KeyAlgorithm"),
    ],
)
def test_bad_getter_properties_name_the_property(properties: dict[str, Any], name: str) -> None:
    with pytest.raises(PropertyError) as raised:
        parse_getter(properties)
    assert str(raised.value).startswith(name)


def test_only_a_changed_rotation_token_requests_rotation() -> None:
    assert rotation_requested({"RotationToken": "a"}, None) is False  # a Create
    assert rotation_requested({"RotationToken": "a"}, {"RotationToken": "a"}) is False
    assert rotation_requested({"Version": "2"}, {"Version": "1"}) is False
    assert rotation_requested({"RotationToken": ""}, {}) is False
    assert rotation_requested({"RotationToken": "b"}, {"RotationToken": "a"})
    assert rotation_requested({"RotationToken": "a"}, {})
    assert rotation_requested({}, {"RotationToken": "a"})


@pytest.mark.parametrize(("length", "ok"), [(253, True), (254, False)])
def test_a_dns_name_is_at_most_253_characters(length: int, ok: bool) -> None:
    labels = ["a" * 63, "b" * 63, "c" * 63]
    name = ".".join(labels)
    name = name + "." + "d" * (length - len(name) - 1)
    assert len(name) == length
    if ok:
        parsed = parse_generator({"Rack": "r", "ServerSubjectAltNames": name}, NOW)
        assert parsed.server_subject_alt_names == (name,)
    else:
        with pytest.raises(PropertyError, match="is neither an IP address nor a DNS name"):
            parse_generator({"Rack": "r", "ServerSubjectAltNames": name}, NOW)


def test_a_renewal_window_of_one_day_is_accepted() -> None:
    parsed = parse_generator({"Rack": "r", "ValidityDays": "2", "RenewBeforeDays": "1"}, NOW)
    assert (parsed.validity_days, parsed.renew_before_days) == (2, 1)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (
            {"KeyAlgorithm": "DSA"},
            "KeyAlgorithm must be one of RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384, "
            "got 'DSA'",
        ),
        ({"ValidityDays": "1.5"}, "ValidityDays must be a whole number of days, got '1.5'"),
        (
            {"ValidityDays": "30"},
            "RenewBeforeDays (60) must be less than ValidityDays (30)",
        ),
        ({"Nope": "1"}, "Nope is not a property of this resource (allowed: "),
        ({"Nope": "1", "Other": "2"}, "Nope, Other are not a property of this resource"),
        ({"Rack": "a\x7fb"}, "Rack must not have surrounding spaces or control characters"),
        ({"Rack": "a\x1fb"}, "Rack must not have surrounding spaces or control characters"),
    ],
)
def test_the_reasons_read_as_sentences(properties: dict[str, Any], message: str) -> None:
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "r", **properties}, NOW)
    assert str(raised.value).startswith(message)


def test_day_counts_may_come_as_integers_but_never_as_booleans() -> None:
    parsed = parse_generator({"Rack": "r", "ValidityDays": 3650, "RenewBeforeDays": 30}, NOW)
    assert (parsed.validity_days, parsed.renew_before_days) == (3650, 30)
    with pytest.raises(PropertyError, match="^ValidityDays must be a whole number of days"):
        parse_generator({"Rack": "r", "ValidityDays": True}, NOW)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({}, "Rack is required: set it to the fleet's name, e.g. the stack name"),
        ({"Rack": "x" * 129}, "Rack must be at most 128 bytes of UTF-8"),
        (
            {"Rack": "r", "ServerSubjectAltNames": {"a": 1}},
            "ServerSubjectAltNames must be a list or a comma-separated string",
        ),
        (
            {"Rack": "r", "ValidityDays": "3000000"},
            "ValidityDays would end certificates after year 9999 (max ",
        ),
        (
            {"Rack": "r", "Nope": "1"},
            "Nope is not a property of this resource (allowed: KeyAlgorithm, KmsKeyId, Rack, "
            "RenewBeforeDays, RotationStage, RotationToken, ServerSubjectAltNames, ValidityDays, "
            "Version)",
        ),
    ],
)
def test_more_reasons_read_as_sentences(properties: dict[str, Any], message: str) -> None:
    with pytest.raises(PropertyError) as raised:
        parse_generator(properties, NOW)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("properties", [{"Rack": "r"}, {"Rack": "r", "ParameterKey": ""}])
def test_a_getter_without_parameter_key_says_which_name_to_use(properties: dict[str, Any]) -> None:
    with pytest.raises(PropertyError) as refused:
        parse_getter(properties)
    assert str(refused.value) == "ParameterKey is required: use a name the generator returned"


def test_a_rack_that_is_not_text_names_the_type_it_got() -> None:
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": 7}, NOW)
    assert str(raised.value) == "Rack must be a string, got int"


def test_an_invalid_kms_key_id_is_echoed_cut_to_60_characters() -> None:
    """Enough to recognise the value in the Reason, never a long run the redaction would eat."""
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "r", "KmsKeyId": "alias/" + "!" * 100}, NOW)
    assert str(raised.value) == f"KmsKeyId is not valid: {('alias/' + '!' * 54)!r}"


@pytest.mark.parametrize(
    ("name", "echoed"),
    [("N" * 40, "N" * 40), ("N" * 41, "N" * 40 + "..."), ("N" * 90, "N" * 40 + "...")],
)
def test_an_unknown_property_name_is_echoed_whole_up_to_40_characters(
    name: str, echoed: str
) -> None:
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "r", name: "1"}, NOW)
    assert str(raised.value).startswith(f"{echoed} is not a property of this resource")


def test_a_rotation_stage_is_read_from_the_properties() -> None:
    from handler.model import RotationStage

    parsed = parse_generator({"Rack": "r", "RotationStage": "Introduce"}, NOW)
    assert parsed.rotation_stage is RotationStage.INTRODUCE
    assert parse_generator({"Rack": "r"}, NOW).rotation_stage is None


@pytest.mark.parametrize(
    ("old", "stage"),
    [
        ({"Rack": "r", "RotationStage": "switch"}, "switch"),
        ({"Rack": "r", "RotationStage": "introduce"}, "introduce"),
        ({"Rack": "r"}, None),
        ({"Rack": "r", "RotationStage": "bogus"}, None),  # accepted once by an older release
        (None, None),  # a Create has no old properties
        (["not", "an", "object"], None),
    ],
)
def test_the_previous_stage_comes_from_the_old_properties(old: Any, stage: str | None) -> None:
    from handler.properties import previous_rotation_stage

    found = previous_rotation_stage(old)
    assert (found.value if found is not None else None) == stage


def test_a_validity_past_year_9999_names_the_largest_allowed() -> None:
    from handler.certificates import max_validity_days

    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "r", "ValidityDays": "3000000"}, NOW)
    assert str(raised.value) == (
        f"ValidityDays would end certificates after year 9999 (max {max_validity_days(NOW)})"
    )


def test_a_rack_may_hold_inner_spaces_but_no_control_character() -> None:
    """A space (0x20) is the first character that is not a control character."""
    assert parse_generator({"Rack": "my rack"}, NOW).rack == "my rack"
    with pytest.raises(PropertyError, match="^Rack must not have surrounding spaces"):
        parse_generator({"Rack": "my\x1frack"}, NOW)


def test_a_bad_server_name_is_echoed_cut_to_80_characters() -> None:
    entry = "a_" * 60
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "r", "ServerSubjectAltNames": entry}, NOW)
    assert str(raised.value) == (
        f"ServerSubjectAltNames entry {entry[:80]!r} is neither an IP address nor a DNS name"
    )


def test_a_rack_of_spaces_is_called_empty() -> None:
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "   "}, NOW)
    assert str(raised.value) == "Rack must not be empty"


def test_server_names_that_name_nothing_are_refused() -> None:
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "r", "ServerSubjectAltNames": []}, NOW)
    assert str(raised.value) == (
        "ServerSubjectAltNames must name at least one DNS name or IP address"
    )


def test_the_longest_validity_that_ends_in_year_9999_is_accepted() -> None:
    from handler.certificates import max_validity_days

    most = max_validity_days(NOW)
    assert parse_generator({"Rack": "r", "ValidityDays": most}, NOW).validity_days == most
    with pytest.raises(PropertyError, match="^ValidityDays would end certificates after"):
        parse_generator({"Rack": "r", "ValidityDays": most + 1}, NOW)


@pytest.mark.parametrize(
    ("properties", "accepted"),
    [
        ({"Rack": "x" * 128}, "x" * 128),
        ({"Rack": "é" * 64}, "é" * 64),  # 128 bytes of UTF-8
        ({"Rack": "r", "RotationToken": "t" * 256}, "t" * 256),
        ({"Rack": "r", "ServerSubjectAltNames": [f"h{i}" for i in range(100)]}, "h99"),
    ],
)
def test_every_limit_is_reached_not_refused(properties: dict[str, Any], accepted: str) -> None:
    """At each limit the value is accepted; one past it (BAD_GENERATOR) is refused."""
    parsed = parse_generator(properties, NOW)
    assert accepted in (parsed.rack, parsed.rotation_token, *parsed.server_subject_alt_names)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"ValidityDays": "0"}, "ValidityDays must be at least 1"),
        ({"RenewBeforeDays": "0"}, "RenewBeforeDays must be at least 1"),
        ({"RotationToken": "t" * 257}, "RotationToken must be a string of at most 256 characters"),
        ({"RotationToken": 7}, "RotationToken must be a string of at most 256 characters"),
        (
            {"ServerSubjectAltNames": [f"h{i}" for i in range(101)]},
            "ServerSubjectAltNames may hold at most 100 entries",
        ),
        (
            {"ServerSubjectAltNames": ["ok", 7]},
            "ServerSubjectAltNames entries must be strings, got 7",
        ),
        (
            {"RotationStage": "bogus"},
            "RotationStage must be introduce or switch, or empty for none, got 'bogus'",
        ),
        (  # the value is echoed cut to 40 characters
            {"RotationStage": "s" * 50},
            f"RotationStage must be introduce or switch, or empty for none, got '{'s' * 40}'",
        ),
    ],
)
def test_every_refusal_is_a_whole_sentence(properties: dict[str, Any], message: str) -> None:
    """What the operator reads in the stack's events, word for word."""
    with pytest.raises(PropertyError) as raised:
        parse_generator({"Rack": "r", **properties}, NOW)
    assert str(raised.value) == message


def test_a_server_name_is_written_as_clients_compare_it() -> None:
    """Lower case, without the root's trailing dot: 'Host.Example.' and 'host.example' are one
    name, so one entry."""
    parsed = parse_generator(
        {"Rack": "r", "ServerSubjectAltNames": "Host.Example.,host.example,*.Fleet.Example."}, NOW
    )
    assert parsed.server_subject_alt_names == ("host.example", "*.fleet.example")
