import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own cache, so nothing leaks into ~/.cache/sentinel."""
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "sentinel-home"))


@pytest.fixture(scope="session")
def real_home(tmp_path_factory) -> Path:
    """A SENTINEL_HOME where the embedded model was pulled by the real CLI, once per session."""
    home = tmp_path_factory.mktemp("real-home")
    env = dict(os.environ, SENTINEL_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "sentinel.cli", "models", "pull", "smollm2-135m"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return home


@pytest.fixture(scope="session")
def real_model(real_home) -> Path:
    return real_home / "models" / "smollm2-135m"


@pytest.fixture(scope="session")
def real_mlx_fp32(real_home, real_model) -> Path:
    """The embedded model converted by our converter (float32) into real_home/mlx, once per session."""
    from convert import convert_to_mlx

    out = real_home / "mlx" / "smollm2-135m-float32"
    if not (out / "config.json").is_file():
        convert_to_mlx(real_model, out, dtype="float32")
    return out
