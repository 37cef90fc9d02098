"""The package: configs inside it, the ``wsol`` command, optional features as extras with a one-line error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO

from wsol.config import CONF_DIR
from wsol.errors import WsolError
from wsol.extras import EXTRAS, require


def _pyproject() -> dict:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_configs_live_in_the_package_and_are_package_data():
    assert os.path.dirname(CONF_DIR) == os.path.dirname(sys.modules["wsol"].__file__)
    assert os.path.isfile(os.path.join(CONF_DIR, "config.yaml"))
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["wsol.conf"]
    assert "**/*.yaml" in patterns and os.path.isfile(os.path.join(CONF_DIR, "__init__.py"))


def test_every_extra_is_declared_and_all_installs_them():
    optional = _pyproject()["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(optional)
    assert optional["all"] == [f"wsol[{','.join(EXTRAS)}]"]
    core = " ".join(_pyproject()["project"]["dependencies"])
    assert not any(name in core for name in ("timm", "pycocotools", "matplotlib", "submitit", "joblib", "efficientnet"))


def test_a_missing_extra_is_one_line_naming_it():
    expected = r"^model=timm needs the optional package not_a_module: pip install 'wsol\[timm\]'$"
    with pytest.raises(WsolError, match=expected):
        require("not_a_module", "timm", "model=timm")
    assert require("numpy", "core", "arrays").__name__ == "numpy"


def _wsol(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from wsol.cli import main; sys.argv[0] = 'wsol'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd)


def test_the_wsol_command_lists_and_dispatches(tmp_path):
    listed = _wsol("--help")
    assert listed.returncode == 0 and all(name in listed.stdout for name in ("run", "aggregate", "select", "merge"))
    unknown = _wsol("evaluate")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown command 'evaluate'")
    job = _wsol("run", "-c", "job", "method=cam", cwd=str(tmp_path))  # from outside the checkout
    assert job.returncode == 0 and "name: cam" in job.stdout, job.stderr
    missing = _wsol("aggregate", str(tmp_path / "nothing"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert _pyproject()["project"]["scripts"]["wsol"] == "wsol.cli:main"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU: run the script itself")
def test_gpu_check_on_a_cpu_machine_says_so_and_exits_0():
    script = os.path.join(REPO, "scripts", "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script], check=False).returncode == 0
    env = {**os.environ, "WSOL_PYTHON": sys.executable}
    out = subprocess.run(["bash", script], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0 and "no CUDA GPU on this machine" in out.stdout
    with open(script) as f:  # every test it names exists
        text = f.read()
    for path, name in re.findall(r"(tests/\w+\.py)::(\w+)", text):
        with open(os.path.join(REPO, path)) as f:
            assert f"def {name}(" in f.read(), (path, name)
