"""The contract package is installable anywhere: it imports nothing outside the standard library."""

import json
import subprocess
import sys
from pathlib import Path

CONTRACT_DIR = Path(__file__).resolve().parents[2] / "contract"


def test_the_contract_imports_only_the_standard_library() -> None:
    # -S: no site-packages, so a third-party import fails outright; only the contract folder on the path.
    script = (
        "import json, sys; import penguins_contract; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script],
        env={"PYTHONPATH": str(CONTRACT_DIR), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        cwd=CONTRACT_DIR,
    )
    imported = set(json.loads(result.stdout)) - {"penguins_contract", "__main__"}
    assert "penguins_contract" in json.loads(result.stdout)
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names


def test_the_contract_folder_holds_only_the_package() -> None:
    """What the images copy: one package of small stdlib modules, no data, no other code."""
    assert [p.name for p in CONTRACT_DIR.iterdir() if p.name != "__pycache__"] == ["penguins_contract"]
