"""Protocol files mutated at random: loading raises ProtocolLoadError (naming file and
field) or gives a protocol that decides without raising — never another exception."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regulator.core.decision import decide
from regulator.core.models import Call, DecisionContext, Platform, Stage
from regulator.core.protocol import Protocol, ProtocolLoadError, parse_protocol
from regulator.protocols import load_protocol_file
from tests.support.app import PROTOCOLS

FILES = sorted(PROTOCOLS.glob("*.yaml"))
SOURCES = {p.name: p.read_text(encoding="utf-8") for p in FILES}
DOCUMENTS = {name: yaml.safe_load(text) for name, text in SOURCES.items()}

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "24:00",
            "25:00-26:00",
            "20:00-19:00",
            "00:00-24:00",
            "08:00-24:00",
            "+33466123456",
            "15",
            "3237",
            "sip:x@y",
            "Europe/Paris",
            "Mars/Olympus",
            "2026-02-30T10:00",
            "2026-11-24T19:00",
            "regulation",
            "menu",
            "pharmacy",
            "971",
            "6AE",
        ]
    ),
    st.dates(),
    st.datetimes(),
)
value = st.recursive(
    scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside the document."""
    found = [prefix]
    if isinstance(data, dict):
        for key, item in data.items():
            found += paths(item, (*prefix, key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found += paths(item, (*prefix, index))
    return found


def mutate(document: Any, path: tuple[Any, ...], action: str, new: Any) -> Any:
    if not path:
        return new
    data = copy.deepcopy(document)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = new
    elif isinstance(parent[last], dict):  # add an unknown key
        parent[last]["zz_unknown"] = new
    elif isinstance(parent[last], list):
        parent[last].append(new)
    else:
        parent[last] = [parent[last], new]
    return data


def exercise(protocol: Protocol) -> None:
    """A protocol that loaded must be usable: schedule and decisions never raise."""
    tz = protocol.tz
    for at in ("2026-11-24T21:00", "2026-12-25T10:00", "2026-07-14T03:00"):
        now = dt.datetime.fromisoformat(at).replace(tzinfo=tz)
        protocol.schedule.state(now)
        for stage, digits in ((Stage.INCOMING, None), (Stage.DIGITS, "2")):
            call = Call(
                call_id="CAfuzz",
                caller="+33611223344",
                called=protocol.numbers[0],
                platform=Platform.GENERIC,
                stage=stage,
                digits=digits,
            )
            decision = decide(protocol, call, now, DecisionContext())
            assert decision.route is not None


@FUZZ
@given(
    name=st.sampled_from(sorted(DOCUMENTS)),
    data=st.data(),
    action=st.sampled_from(["delete", "replace", "replace", "add"]),
    new=value,
)
def test_structural_mutations_raise_only_protocol_load_error(
    name: str, data: st.DataObject, action: str, new: Any
) -> None:
    document = DOCUMENTS[name]
    path = data.draw(st.sampled_from(paths(document)), label="path")
    mutated = mutate(document, path, action, new)
    try:
        protocol = parse_protocol(mutated, name)
    except ProtocolLoadError as exc:
        issues = exc.issues
    else:
        exercise(protocol)
        return
    assert issues and all(issue.file == name for issue in issues)


@FUZZ
@given(
    name=st.sampled_from(sorted(SOURCES)),
    edits=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1),
            st.sampled_from(["flip", "insert", "delete", "dup_line"]),
            st.binary(min_size=1, max_size=6)
            | st.sampled_from(
                [b":", b"- ", b"\t", b"{", b"]", b"&a", b"*a", b"!!python/object", b"\xff", b"\n  "]
            ),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_text_mutations_raise_only_protocol_load_error(
    tmp_path_factory: pytest.TempPathFactory, name: str, edits: list[tuple[float, str, bytes]]
) -> None:
    raw = bytearray(SOURCES[name].encode("utf-8"))
    for where, action, chunk in edits:
        at = int(where * (len(raw) - 1))
        if action == "flip":
            raw[at] ^= chunk[0] or 1
        elif action == "insert":
            raw[at:at] = chunk
        elif action == "delete":
            del raw[at : at + len(chunk)]
        else:
            start = raw.rfind(b"\n", 0, at) + 1
            end = raw.find(b"\n", at)
            line = raw[start : end if end >= 0 else len(raw)]
            raw[start:start] = line + b"\n"
    path: Path = tmp_path_factory.mktemp("proto") / name
    path.write_bytes(bytes(raw))
    try:
        protocol = load_protocol_file(path)
    except ProtocolLoadError as exc:
        issues = exc.issues
    else:
        exercise(protocol)
        return
    assert issues


def test_a_missing_or_unreadable_file_is_a_protocol_load_error(tmp_path: Path) -> None:
    with pytest.raises(ProtocolLoadError):
        load_protocol_file(tmp_path / "absent.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ProtocolLoadError):
        load_protocol_file(tmp_path / "dir.yaml")
    (tmp_path / "bomb.yaml").write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
            for i in range(8)
        ),
        encoding="utf-8",
    )
    with pytest.raises(ProtocolLoadError):  # a billion laughs is not a protocol either
        load_protocol_file(tmp_path / "bomb.yaml")
