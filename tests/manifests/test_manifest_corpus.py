"""The broken-manifest corpus: every file in broken/ is one mistake a user makes.

Each ``broken/<case>.yaml`` is validated together with the valid set in
``valid/`` (so a case needs only the documents that show its mistake), and must
produce exactly the problems listed in ``broken/<case>.expected``, one per
line, without the file name: ``line:column: Kind/name: field: message``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizenctl.errors import ManifestError
from kaizenctl.manifests.loader import load_manifests

HERE = Path(__file__).parent
CASES = sorted((HERE / "broken").glob("*.yaml"))
# Set for the cases about substituted values; nothing else may depend on the real environment.
ENVIRON = {"KAIZEN_TEST_PROVIDER": "secret-provider-value"}


def test_the_corpus_has_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_every_case_has_its_expectation() -> None:
    missing = [case.name for case in CASES if not case.with_suffix(".expected").exists()]
    assert missing == []


def test_the_valid_set_alone_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)
    assert len(load_manifests(["valid"], environ=ENVIRON).resources) == 7


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.stem)
def test_broken_manifest_is_reported_with_location_and_message(
    case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Relative paths, so expectations that point into valid/ read the same on any machine.
    monkeypatch.chdir(HERE)
    name = f"broken/{case.name}"
    expected = [
        f"{name}:{line}" for line in case.with_suffix(".expected").read_text().splitlines() if line
    ]
    with pytest.raises(ManifestError) as caught:
        load_manifests(["valid", name], environ=ENVIRON)
    assert caught.value.problems == expected


def test_substituted_values_never_appear_in_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)
    with pytest.raises(ManifestError) as caught:
        load_manifests(["valid", "broken/env-substituted-value-invalid.yaml"], environ=ENVIRON)
    assert ENVIRON["KAIZEN_TEST_PROVIDER"] not in str(caught.value)
