"""`moezoo merge`: single-task LoRA runs of the GLUE recipe merged into one saved, scored and carded model."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
import torch
from huggingface_hub import ModelCard
from transformers import AutoTokenizer

from moezoo.adapters import AdaptedTransformerModel
from moezoo.cli import main as moezoo_command
from moezoo.merging import MergeArguments
from moezoo.training.arguments import parse_config_and_args

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
from train_glue import main as train_glue  # noqa: E402

TASKS = ("sst2", "rte")


@pytest.fixture(scope="module")
def single_task_runs(tiny_glue_base, tmp_path_factory, data_dir):
    """One LoRA run of the GLUE recipe per task, on the tiny base: {task: its best checkpoint}."""
    runs = {}
    for task in TASKS:
        folder = tmp_path_factory.mktemp(task)
        train_glue([
            str(REPO / "recipes" / "configs" / "glue_align_lora.yaml"), "--base_model", str(tiny_glue_base),
            "--adapter_method", "lora", "--adapter", '{"r": 2, "lora_alpha": 4}', "--tasks", task,
            "--max_train_samples_per_task", "48", "--max_validation_samples_per_task", "16", "--max_seq_length", "24",
            "--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--learning_rate", "0.05",
            "--output_dir", str(folder),
        ])
        runs[task] = folder / "best"
    return runs


def merge(*flags):
    return moezoo_command(["merge", *map(str, flags)])


def test_task_vector_experts_reproduce_every_source_on_its_task(single_task_runs, tmp_path):
    out = tmp_path / "experts"
    sources = [single_task_runs[task] for task in TASKS]
    assert merge("--sources", *sources, "--method", "task_vector_experts", "--output_dir", out) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["arguments"]["tasks"] == list(TASKS) and results["merge"]["method"] == "task_vector_experts"
    for task, source in single_task_runs.items():
        source_test = json.loads((source.parent / "results.json").read_text())["test"]
        for name, value in source_test.items():
            if name.startswith(f"{task}/"):
                assert results["test"][name] == pytest.approx(value, abs=1e-5), name
    # The same in the outputs: given its task id, each task's logits are its source's.
    merged = AdaptedTransformerModel.from_pretrained(out).eval()
    tokens = torch.randint(5, 30, (4, 9), generator=torch.Generator().manual_seed(0))
    for index, task in enumerate(TASKS):
        source = AdaptedTransformerModel.from_pretrained(single_task_runs[task]).eval()
        with torch.no_grad():
            expected = source(input_ids=tokens, task_ids=torch.zeros(4, dtype=torch.long)).logits[task]
            given = merged(input_ids=tokens, task_ids=torch.full((4,), index)).logits[task]
        assert not torch.allclose(expected, torch.zeros_like(expected))
        torch.testing.assert_close(given, expected, rtol=0, atol=1e-5)
        # Routed by tokens, an example's task id no longer routes it: as if it came without one.
        with torch.no_grad(), merged.routing.by_tokens():
            by_tokens = merged(input_ids=tokens, task_ids=torch.full((4,), index)).logits[task]
            without_ids = merged(input_ids=tokens).logits[task]
        torch.testing.assert_close(by_tokens, without_ids, rtol=0, atol=0)
        assert not torch.allclose(by_tokens, given, atol=1e-4)


def test_the_experts_token_routers_train_alone_and_the_model_is_scored_without_task_ids(single_task_runs, tmp_path):
    sources = [single_task_runs[task] for task in TASKS]
    assert merge("--sources", *sources, "--method", "task_vector_experts", "--output_dir", tmp_path / "untrained") == 0
    assert merge("--sources", *sources, "--method", "task_vector_experts", "--router_steps", "5",
                 "--router_learning_rate", "0.05", "--output_dir", tmp_path / "trained") == 0
    untrained = AdaptedTransformerModel.from_pretrained(tmp_path / "untrained").state_dict()
    trained = AdaptedTransformerModel.from_pretrained(tmp_path / "trained").state_dict()
    changed = sorted(name for name in trained if not torch.equal(trained[name], untrained[name]))
    assert changed and all(".token." in name for name in changed), changed
    results = json.loads((tmp_path / "trained" / "results.json").read_text())
    assert results["merge"]["options"] == {"router_steps": 5, "router_learning_rate": 0.05}
    assert set(results["test_without_task_ids"]) == set(results["test"])
    card = ModelCard.load(tmp_path / "trained" / "README.md").text
    accuracy = results["test_without_task_ids"]["rte/accuracy"]
    assert f"| rte | accuracy | {results['test']['rte/accuracy']:.4f} | {accuracy:.4f} |" in card
    # With task ids the routers play no part: the trained model scores as the untrained one.
    untrained_results = json.loads((tmp_path / "untrained" / "results.json").read_text())
    for name, value in untrained_results["test"].items():
        assert results["test"][name] == pytest.approx(value, abs=1e-5), name


def test_a_merge_chooses_its_scaling_on_validation_data_and_is_carded(single_task_runs, tmp_path, capsys):
    out = tmp_path / "ties"
    sources = [single_task_runs[task] for task in TASKS]
    assert merge("--sources", *sources, "--method", "ties", "--options", '{"density": 0.5}', "--scalings", "0.5", "2.0",
                 "--output_dir", out) == 0
    results = json.loads((out / "results.json").read_text())
    scores = results["merge"]["scaling_scores"]
    assert [entry["scaling"] for entry in scores] == [0.5, 2.0]
    chosen = max(scores, key=lambda entry: entry["score"])
    assert results["merge"]["options"] == {"density": 0.5, "scaling": chosen["scaling"]}
    assert results["validation"]["mean_score"] == pytest.approx(chosen["score"], abs=1e-6)
    assert results["environment"]["merge_seconds"] >= 0
    card = ModelCard.load(out / "README.md")
    assert card.text.lstrip().startswith("# ties")  # named after the output folder
    # Local sources are no Hub repositories: the Hub lists the merge as an adapter of their base, tagged a merge.
    assert results["merge"]["repositories"] == [None, None]
    assert card.data.base_model_relation == "adapter" and card.data.base_model == json.loads((out / "config.json").read_text())["base_model_name_or_path"]
    assert "merge" in card.data.tags
    assert "merged by `ties` from 2 sources, no training" in card.text
    # Its cost, all told: the merge and the sources' own training, read from their results.
    sources_seconds = sum(json.loads((source.parent / "results.json").read_text())["environment"]["train_seconds"]
                          for source in sources)
    assert results["environment"]["sources_train_seconds"] == pytest.approx(sources_seconds, abs=0.2)
    assert (f"merged from its sources in {results['environment']['merge_seconds']:.1f} s; the sources trained for "
            f"{sources_seconds / 60:.1f} min together") in card.text
    assert "**CPU-hours:**" in card.text and "for the merge and the sources' training)" in card.text
    assert f"scaling chosen on validation (mean_score): 0.5: {scores[0]['score']:.4f}" in card.text
    # `moezoo evaluate` rebuilds the same test split from the written results.json.
    capsys.readouterr()
    assert moezoo_command(["evaluate", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for name, value in results["test"].items():
        assert evaluated[name] == pytest.approx(value, abs=1e-5), name
    # An existing result is not replaced unless asked.
    assert merge("--sources", *sources, "--output_dir", out) == 1
    assert "is not empty; pass --overwrite_output_dir" in capsys.readouterr().err
    # Asked to, a new result replaces the whole folder: nothing of the earlier one (its card) is left behind.
    (out / "notes.txt").write_text("mine")
    assert merge("--sources", *sources, "--output_dir", out, "--overwrite_output_dir", "--no_evaluate") == 0
    assert not (out / "notes.txt").exists() and not (out / "README.md").exists()
    assert "test" not in json.loads((out / "results.json").read_text())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ties"]  # no temporary folder left


@pytest.mark.parametrize(("flags", "message"), [
    (["--method", "tie"], "Unknown merging method 'tie' (did you mean 'ties'?)"),
    (["--method", "ties", "--options", '{"drop_rate": 0.1}'], "Unknown option 'drop_rate' for the merging method 'ties'"),
    (["--options", "[0.3]"], "options must be a JSON object"),
    (["--method", "task_vector_experts", "--scalings", "1"], "task_vector_experts keeps every source as it is"),
    (["--options", '{"scaling": 1}', "--scalings", "1", "2"], "Give either the scaling option or candidate scalings"),
    (["--scaling", "1"], "Unknown argument(s) '--scaling' (did you mean '--scalings'?)"),
    (["--router_steps", "3"], "router_steps trains the token routers of task_vector_experts"),
    (["--router_steps", "-1"], "router_steps must be >= 0"),
])
def test_bad_settings_are_named_before_anything_loads(flags, message, tmp_path, capsys):
    assert merge("--sources", "no-such-folder", "--output_dir", tmp_path / "out", *flags) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_source_that_is_not_a_lora_fine_tune_is_refused(single_task_runs, tmp_path, capsys):
    from moezoo.zoo import entry_folder

    if entry_folder("mmoe-census-income") is None:
        pytest.skip("the zoo entry mmoe-census-income is not in this checkout")
    assert merge("--sources", single_task_runs["sst2"], "mmoe-census-income", "--output_dir", tmp_path / "out") == 1
    assert "mmoe-census-income is a MMoEModel, not a LoRA-adapted transformer" in capsys.readouterr().err


def test_a_source_with_another_vocabulary_is_refused(single_task_runs, tmp_path, capsys):
    other = tmp_path / "other_vocabulary"
    shutil.copytree(single_task_runs["rte"], other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["merging"])
    tokenizer.save_pretrained(other)
    assert merge("--sources", single_task_runs["sst2"], other, "--output_dir", tmp_path / "out") == 1
    assert f"{other} reads text with another vocabulary than" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_recipe_yaml_is_read_strictly():
    (arguments,) = parse_config_and_args([MergeArguments], [str(REPO / "recipes" / "configs" / "glue_merge.yaml")])
    assert len(arguments.sources) == 5 and arguments.method == "ties" and arguments.scalings


def test_a_merge_of_hub_sources_is_listed_under_them(single_task_runs, tmp_path):
    from moezoo.hub.folder import write_card
    from moezoo.merging.records import source_repository

    assert source_repository("mhr-glue") == "moezoo/mhr-glue"  # a zoo entry: its Hub repository
    assert source_repository("org/model") == "org/model"
    assert source_repository(str(single_task_runs["rte"])) is None
    out = tmp_path / "merged"
    assert merge("--sources", *(single_task_runs[task] for task in TASKS), "--output_dir", out) == 0
    config = json.loads((out / "config.json").read_text())
    config["merge"]["repositories"] = ["org/sst2-lora", "org/rte-lora"]
    (out / "config.json").write_text(json.dumps(config))
    card = ModelCard.load(write_card(out, overwrite=True))
    assert card.data.base_model_relation == "merge" and card.data.base_model == ["org/sst2-lora", "org/rte-lora"]


def test_the_experts_card_shows_how_the_token_routers_mix_the_sources(single_task_runs, tmp_path):
    from moezoo.hub.figures import measure_token_routing
    from moezoo.hub.folder import encoded_test_batches

    out = tmp_path / "experts"
    assert merge("--sources", *(single_task_runs[task] for task in TASKS), "--method", "task_vector_experts",
                 "--output_dir", out) == 0
    card = ModelCard.load(out / "README.md").text
    assert (out / "routing.png").is_file() and "without a task id, averaged over each task's test tokens" in card
    model = AdaptedTransformerModel.from_pretrained(out)
    batches = encoded_test_batches(json.loads((out / "results.json").read_text()), out)
    layers, usage = measure_token_routing(model, batches)
    assert set(usage) == set(TASKS) and len(layers) == len(usage["rte"])
    for shares in usage.values():
        torch.testing.assert_close(torch.stack(shares).sum(-1), torch.ones(len(layers)))
    # Token routers that ignore their input and favour head 1 put (nearly) every task's weight there.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".token." in name:
                parameter.zero_()
                if name.endswith("bias"):
                    parameter[1] = 20.0
    _, usage = measure_token_routing(model, batches)
    for shares in usage.values():
        assert all(share[1] > 0.999 for share in shares)


def test_the_experts_entry_continues_training_with_its_glue_yaml(tiny_glue_base, tmp_path, data_dir):
    """The YAML the task-vector-experts entry's card gives for fine-tuning describes the model its merge YAML
    builds, so that the GLUE recipe accepts that model (it refuses a checkpoint whose adapter differs)."""
    configs = REPO / "recipes" / "configs"
    (merge_settings,) = parse_config_and_args([MergeArguments], [str(configs / "glue_merge_experts.yaml")])
    training = yaml.safe_load((configs / "glue_task_vector_experts.yaml").read_text())
    source = yaml.safe_load((configs / "glue_align_lora.yaml").read_text())["adapter"]  # the sources' LoRA
    heads = len(merge_settings.sources)
    assert training["adapter"] == {
        "target_modules": source["target_modules"], "r": heads * source["r"], "lora_alpha": heads * source["r"],
        "num_heads": heads, "router": "task_or_token", "head_init": "random",
    }
    # Two sources of the sources' LoRA on the tiny base, merged, then trained on by the recipe with that YAML.
    sources = []
    for task in TASKS:
        train_glue([
            str(configs / "glue_align_lora.yaml"), "--base_model", str(tiny_glue_base), "--adapter_method", "lora",
            "--tasks", task, "--max_train_samples_per_task", "16", "--max_validation_samples_per_task", "8",
            "--max_seq_length", "16", "--num_train_epochs", "1", "--output_dir", str(tmp_path / task),
        ])
        sources.append(tmp_path / task / "best")
    assert merge("--sources", *sources, "--method", "task_vector_experts", "--no_evaluate", "--output_dir",
                 tmp_path / "experts") == 0
    heads_here = {"r": len(TASKS) * source["r"], "lora_alpha": len(TASKS) * source["r"], "num_heads": len(TASKS)}
    result = train_glue([
        str(configs / "glue_task_vector_experts.yaml"), "--base_model", str(tiny_glue_base), "--tasks", *TASKS,
        "--model_name_or_path", str(tmp_path / "experts"), "--adapter", json.dumps(heads_here),
        "--max_train_samples_per_task", "16", "--max_validation_samples_per_task", "8", "--max_seq_length", "16",
        "--output_dir", str(tmp_path / "continued"),
    ])
    assert result.summary["completed"]
    merged = AdaptedTransformerModel.from_pretrained(tmp_path / "experts").state_dict()
    continued = AdaptedTransformerModel.from_pretrained(tmp_path / "continued" / "best").state_dict()
    assert continued.keys() == merged.keys()  # the same heads, routers and task heads, trained on from the merge
    assert any(not torch.equal(continued[name], merged[name]) for name in merged)
