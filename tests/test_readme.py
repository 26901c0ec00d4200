import re
import sys
from pathlib import Path

import moezoo

REPO = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = setup_commands()
    assert len(commands) == 2 and all("\n" not in command for command in commands)
    assert all(command.startswith("pip install torch==2.13.0 && ") for command in commands)
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == commands[1]
    assert "recipes/train_tabular.py recipes/configs/census_income_mmoe.yaml" in commands[0]


def python_snippets() -> list[str]:
    readme = (REPO / "README.md").read_text()
    return re.findall(r"```python\n(.*?)\n```", readme, flags=re.S)


def test_every_python_snippet_of_the_readme_runs_as_written(tmp_path, monkeypatch, data_dir):
    # The snippets read the checkpoint that the first set-up command saves; a short run of the same
    # command saves one where they look for it.
    sys.path.insert(0, str(REPO / "recipes"))
    from train_tabular import main as train_tabular

    monkeypatch.chdir(tmp_path)
    train_tabular([
        str(REPO / "recipes" / "configs" / "census_income_mmoe.yaml"), "--data_dir", str(data_dir),
        "--max_train_samples", "2000", "--max_eval_samples", "1000", "--num_train_epochs", "1",
    ])
    assert (tmp_path / "outputs" / "census_income_mmoe" / "best").is_dir()
    snippets = python_snippets()
    assert snippets
    namespaces = []
    for snippet in snippets:
        namespaces.append({})
        exec(compile(snippet, "README.md", "exec"), namespaces[-1])
    scores = next(namespace["scores"] for namespace in namespaces if "scores" in namespace)
    assert list(scores.columns) == ["income", "marital"] and len(scores) == 5
    zoo_model = next(namespace["model"] for namespace in namespaces if "processor" in namespace and "scores" not in namespace)
    assert isinstance(zoo_model, moezoo.MMoEModel)


def test_the_lock_pins_every_dependency_within_the_projects_ranges():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"] + project["optional-dependencies"]["test"]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside pyproject's {requirement}"
    assert all(" -c constraints.txt " in command for command in setup_commands())


def readme_shell_commands() -> list[str]:
    """Every command of the README's shell blocks, in order: continuation lines joined, comments dropped."""
    readme = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def output_folder(command: str) -> str | None:
    """The folder a training command writes: its --output_dir, or else its YAML's (a zoo entry's YAML for
    `moezoo train <entry>`); None for a command that trains nothing."""
    import shlex

    import yaml

    from moezoo.zoo import ZOO

    words = shlex.split(command.split(" && ")[-1])
    words = [word for word in words if "=" not in word or word.startswith("--")]  # environment assignments
    trains = any(word.startswith("recipes/train_") for word in words) or words[:2] == ["moezoo", "train"]
    if not trains:
        return None
    if "--output_dir" in words:
        return words[words.index("--output_dir") + 1]
    config = next((word for word in words if word.endswith(".yaml")), None)
    if config is None:
        config = next(ZOO[word].config for word in words if word in ZOO)
    return yaml.safe_load((REPO / config).read_text())["output_dir"]


def test_the_readme_commands_run_in_order_in_one_clone():
    commands = readme_shell_commands()
    assert not [command for command in commands if "..." in command]  # no placeholder left to fill in
    folders = [folder for folder in map(output_folder, commands) if folder is not None]
    assert len(folders) >= 10
    assert len(folders) == len(set(folders)), sorted(folder for folder in folders if folders.count(folder) > 1)
    # A file a command reads is written by an earlier one.
    predict = next(index for index, command in enumerate(commands) if command.startswith("moezoo predict"))
    assert any("to_csv('rows.csv'" in command for command in commands[:predict])
    card = next(index for index, command in enumerate(commands) if command.startswith("moezoo card"))
    assert output_folder(commands[0]) == commands[card].split()[2].removesuffix("/best") and card > 0


def test_the_readmes_zoo_table_is_what_the_entries_results_give():
    from moezoo_cli.listing import readme_with_zoo_table

    readme = (REPO / "README.md").read_text()
    assert readme_with_zoo_table(readme) == readme, "run `python recipes/build_zoo.py --readme`"
    stale = readme.replace("| `mmoe-census-income` | `mmoe` | census_income | income auc 0.", "| `mmoe-census-income` | `mmoe` | census_income | income auc 1.")
    assert stale != readme and readme_with_zoo_table(stale) == readme
