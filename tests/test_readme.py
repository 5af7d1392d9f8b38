"""The README's promises that can be checked mechanically."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    blocks = text.split("```bash\n")[1:]
    return [b.split("```")[0].strip() for b in blocks]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = _bash_blocks((ROOT / "README.md").read_text())
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines(), "the .ci/run test command differs from the README's"


def test_readme_lists_every_public_function():
    import fastconv.functional
    import fastconv.grad

    readme = (ROOT / "README.md").read_text()
    for module in (fastconv.functional, fastconv.grad):
        for name in module.__all__:
            assert name in readme, f"{module.__name__}.{name} is missing from the README table"


def test_readme_quickstart_runs():
    block = (ROOT / "README.md").read_text().split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(block, "README quickstart", "exec"), namespace)
    assert namespace["y"].shape == (1, 128, 56, 56)
    assert namespace["up"].shape == (1, 64, 112, 112)
    assert namespace["dw"].shape == (128, 64, 3, 3)
