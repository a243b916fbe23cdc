"""The per-folder time table CI prints (tests/conftest.py) groups node ids the way the CI log reads them."""

from __future__ import annotations

import pytest

from tests.conftest import folder_of


@pytest.mark.parametrize(("nodeid", "folder"), [
    ("tests/unit/test_engine.py::TestX::test_y", "unit"),
    ("tests/integration/ad/test_ad_batch.py::test_z[a::b]", "integration/ad"),
    ("tests/integration/cli/test_contain_cli.py::T::t", "integration/cli"),
    ("tests/packaging/test_wheel.py::t", "packaging"),
    ("test_top.py::t", "."),
])
def test_folder_of(nodeid: str, folder: str) -> None:
    assert folder_of(nodeid) == folder
