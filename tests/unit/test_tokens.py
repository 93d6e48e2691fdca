"""The tokens file: scopes honoured for every role or refused, one name per token."""

from __future__ import annotations

from pathlib import Path

import pytest

from regulator.auth import TokenBook, TokenError, hash_token


def tokens_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def line(name: str, token: str, roles: str, mmgs: str | None = None) -> str:
    scope = f", mmgs: {mmgs}" if mmgs is not None else ""
    return f'- {{name: {name}, sha256: "{hash_token(token)}", roles: {roles}{scope}}}'


def test_a_coordinator_limited_to_one_mmg_reads_only_its_reports(tmp_path: Path) -> None:
    book = TokenBook.load(tokens_file(tmp_path, line("ars-gard", "t1", "[coordinator]", "[nimes]")))
    who = book.authenticate("t1")
    assert who is not None
    print(
        f"coordinator with mmgs [nimes]: reports nimes={who.can_report('nimes')}, "
        f"metz={who.can_report('metz')}"
    )
    assert who.can_report("nimes")
    assert not who.can_report("metz")


def test_a_regulator_limited_to_one_mmg_sees_only_it(tmp_path: Path) -> None:
    book = TokenBook.load(tokens_file(tmp_path, line("samu30", "t1", "[regulator]", "[nimes]")))
    who = book.authenticate("t1")
    assert who is not None
    assert who.visible_mmgs() == frozenset({"nimes"})
    assert who.can_see("nimes") and not who.can_see("metz")


@pytest.mark.parametrize(
    ("roles", "mmgs", "expected"),
    [
        ("[admin]", "[nimes]", "admin"),
        ('["desk:metz"]', "[nimes]", "desk:metz"),
        ("[regulator]", "[]", "vide"),
    ],
)
def test_mmgs_that_cannot_be_honoured_are_refused_at_load_in_french(
    tmp_path: Path, roles: str, mmgs: str, expected: str
) -> None:
    path = tokens_file(tmp_path, line("t", "t1", roles, mmgs))
    with pytest.raises(TokenError) as caught:
        TokenBook.load(path)
    print(f"roles {roles} with mmgs {mmgs}: {caught.value}")
    assert expected in str(caught.value)
    assert "« mmgs »" in str(caught.value)


def test_two_tokens_with_one_name_are_refused_at_load(tmp_path: Path) -> None:
    path = tokens_file(
        tmp_path,
        line("accueil", "t1", '["desk:nimes"]'),
        line("accueil", "t2", '["desk:metz"]'),
    )
    with pytest.raises(TokenError) as caught:
        TokenBook.load(path)
    print(f"two tokens named accueil: {caught.value}")
    assert "nom « accueil » déjà pris" in str(caught.value)


def test_one_token_listed_twice_is_refused_at_load(tmp_path: Path) -> None:
    path = tokens_file(tmp_path, line("a", "same", "[regulator]"), line("b", "same", "[admin]"))
    with pytest.raises(TokenError, match="même empreinte"):
        TokenBook.load(path)


def test_reload_swaps_tokens_and_a_broken_file_keeps_those_in_force(tmp_path: Path) -> None:
    path = tokens_file(tmp_path, line("a", "t1", "[regulator]"), line("b", "t2", "[admin]"))
    book = TokenBook.load(path)
    assert book.authenticate("t2") is not None
    tokens_file(tmp_path, line("a", "t1", "[regulator]"))
    assert book.reload()
    assert book.authenticate("t2") is None
    assert book.authenticate("t1") is not None
    tokens_file(tmp_path, line("a", "t1", "[regulator]"), "- {name: broken")
    assert not book.reload()
    assert book.last_error is not None
    assert book.authenticate("t1") is not None
    (tmp_path / "tokens.yaml").unlink()
    assert not book.reload()
    assert book.authenticate("t1") is not None


def test_a_session_follows_its_token_by_name_and_fingerprint(tmp_path: Path) -> None:
    path = tokens_file(
        tmp_path, line("accueil", "t1", '["desk:nimes"]'), line("samu30", "t2", "[regulator]")
    )
    book = TokenBook.load(path)
    removed: list[frozenset[str]] = []
    book.on_removed = removed.append
    found = book.fingerprint("t1")
    assert found is not None
    who, fingerprint = found
    assert fingerprint not in (hash_token("t1"), "t1")  # neither the token nor its hash
    assert book.by_session("accueil", fingerprint) == who
    # Roles changed, same token: the session goes on with the new roles.
    path.write_text(
        line("accueil", "t1", '["desk:nimes", coordinator]')
        + "\n"
        + line("samu30", "t2", "[regulator]")
        + "\n"
    )
    assert book.reload()
    roles = book.by_session("accueil", fingerprint)
    # Token changed under the same name, then removed: the session is over.
    path.write_text(
        line("accueil", "t9", '["desk:nimes"]') + "\n" + line("samu30", "t2", "[regulator]") + "\n"
    )
    assert book.reload()
    changed = book.by_session("accueil", fingerprint)
    path.write_text(line("samu30", "t2", "[regulator]") + "\n")
    assert book.reload()
    print(f"roles changed: {roles}; token changed: {changed}; removed names: {removed}")
    assert roles is not None and "coordinator" in roles.roles
    assert changed is None
    assert book.by_session("accueil", fingerprint) is None
    assert removed == [frozenset({"accueil"})]
