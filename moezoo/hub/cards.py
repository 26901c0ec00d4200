"""Model cards for moezoo checkpoints, built with `huggingface_hub.ModelCard` and `ModelCardData`.

The card's metadata (library, pipeline tag, tags, datasets, and the ``model-index`` of evaluation results)
is `ModelCardData`; its text is moezoo's template (`moezoo.hub.card_template`). Every number on a card
comes from the checkpoint or its ``results.json`` (with the baselines it was compared against): a card
without results says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from moezoo_cli.catalog import headline_metric

from ..adapters.modeling_adapted import AdaptedTransformerConfig
from ..models.modeling_utils import MultiTaskPreTrainedModel
from ..routing import effective_num_parameters
from .card_template import CITATIONS, MERGE_CITATIONS, MODEL_CARD_TEMPLATE
from .figures import format_unit_label
from .snippets import prediction_snippet

#: The paper behind each architecture, for the card.
ARCHITECTURE_PAPERS = {
    "shared_bottom": "Caruana, Multitask Learning, Machine Learning 28 (1997)",
    "omoe": "Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts, KDD 2018",
    "mmoe": "Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts, KDD 2018",
    "cgc": "Tang et al., Progressive Layered Extraction (PLE), RecSys 2020",
    "ple": "Tang et al., Progressive Layered Extraction (PLE), RecSys 2020",
    "dselect_k": "Hazimeh et al., DSelect-k: Differentiable Selection in the Mixture of Experts, NeurIPS 2021",
    "dselect_k_static": "Hazimeh et al., DSelect-k: Differentiable Selection in the Mixture of Experts, NeurIPS 2021",
    "home": "Wang et al., HoME: Hierarchy of Multi-Gate Experts for Multi-Task Learning at Kuaishou, 2024",
    "m3vit": (
        "Liang et al., M³ViT: Mixture-of-Experts Vision Transformer for Efficient Multi-task Learning with "
        "Model-Accelerator Co-design, NeurIPS 2022"
    ),
    "lora": "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022",
    "align_lora": "Align, Don't Divide: Revisiting the LoRA Architecture in Multi-Task Learning, 2025",
    "multi_head_lora": "Tian et al., HydraLoRA: An Asymmetric LoRA Architecture for Efficient Fine-Tuning, NeurIPS 2024",
    "mhr": "Caccia et al., Multi-Head Adapter Routing for Cross-Task Generalization, NeurIPS 2023",
}
#: The paper behind each merging method, for the card of a merged model.
MERGE_PAPERS = {
    "task_arithmetic": "Ilharco et al., Editing Models with Task Arithmetic, ICLR 2023",
    "ties": "Yadav et al., TIES-Merging: Resolving Interference When Merging Models, NeurIPS 2023",
    "dare_linear": "Yu et al., Language Models are Super Mario (DARE), ICML 2024",
    "dare_ties": "Yu et al., Language Models are Super Mario (DARE), ICML 2024, with TIES (Yadav et al., NeurIPS 2023)",
    "iso_c": "Marczak et al., No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces, ICML 2025",
    "iso_cts": "Marczak et al., No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces, ICML 2025",
    "task_vector_experts": "Tang et al., Merging Multi-Task Models via Weight-Ensembling Mixture of Experts, ICML 2024",
}
#: How moezoo's metric names appear in a model-index (Hub metric ids where one exists).
HUB_METRIC_TYPES = {
    "auc": "roc_auc", "accuracy": "accuracy", "mse": "mse", "mae": "mae", "miou": "mean_iou",
    "pixel_accuracy": "accuracy", "mcc": "matthews_correlation", "f1": "f1", "pearson": "pearsonr",
    "spearman": "spearmanr",
}
GATE_WEIGHTS_CAPTION = "Mean gate weight of every gate on every expert over the test split"
EXPERT_USAGE_CAPTION = (
    "Share of each task's expert choices (each token picks k experts) that each expert of each MoE block "
    "received over the test split"
)
ADAPTER_MIXING_CAPTION = (
    "Weight each task gives each {unit} of each adapted layer (layer index and projection), as the task router "
    "sets it"
)
TOKEN_ROUTING_CAPTION = (
    "Weight the token routers give each {unit} of each adapted layer (layer index and projection) when an input comes "
    "without a task id, averaged over each task's test tokens; {unit} i is source i's update, so the diagonal is the "
    "share that finds its own task's model"
)
LEARNING_CURVE_CAPTION = (
    "Each task's headline validation metric after every epoch (and, for a run that balanced its tasks, their weights "
    "and the cosines between their gradients)"
)
TASK_GAPS_CAPTION = (
    "Symmetric KL divergence between diagonal Gaussians fitted to each pair of tasks' LoRA A outputs over the test "
    "split (real tokens), averaged over the LoRA layers: the distance the alignment loss shrinks"
)
LIBRARY_NAME = "moezoo"
#: What a model is for, by the modality of its data (`DatasetDescription.modality`), unless the card says otherwise.
INTENDED_USES = {
    "tabular": (
        "A starting point for multi-task models on tabular data like its own: fine-tune it on your tasks, or compare "
        "multi-task architectures against it. Its predictions are scores for the benchmark's tasks."
    ),
    "image": (
        "A starting point for multi-task vision on small grey-scale images like its own (36x36 canvases of two "
        "overlapping items): fine-tune it, or study how its experts share the tasks."
    ),
    "text": (
        "A starting point for multi-task English sentence and sentence-pair classification and similarity: fine-tune "
        "it on your tasks, or serve the GLUE tasks it learnt from one base model."
    ),
}
OUT_OF_SCOPE_USES = {
    "tabular": "Decisions about people (income, marital status, education): the data is a 1994-95 survey extract, "
               "its predictions are not calibrated for any population and were never audited for fairness.",
    "image": "Anything beyond synthetic canvases of centred 28x28 items: natural images, other sizes or layouts, "
             "handwriting recognition in production.",
    "text": "Languages other than English, long documents (inputs are cut at the length stated below), and decisions "
            "about people; the GLUE tasks' licences restrict most of them to research use.",
}
LIMITATIONS = {
    "tabular": "Trained on one public benchmark; its predictions carry that data's biases and are not calibrated for "
               "any other population.",
    "image": "Trained and tested on one synthetic benchmark; the scores say nothing about other images.",
    "text": "Trained on five small GLUE tasks through a small sentence encoder; the scores are GLUE dev-set scores, "
            "not a measure of language understanding in general.",
}
MODEL_DOWNSTREAM_USE = (
    "Fine-tuning on related tasks: `--model_name_or_path` in moezoo's recipes loads it, and `--allow_task_changes` "
    "adds or drops tasks."
)
ADAPTER_DOWNSTREAM_USE = (
    "Further training: `--model_name_or_path` in `recipes/train_glue.py` continues from it. Where the adapter routes "
    "by task alone (MHR, a multi-head LoRA with a task router), `model.merge_task(task)` exports one task's "
    "base model with its update merged into the weights, a plain transformers model."
)


@dataclass
class DatasetDescription:
    """What a card says about the data a model was trained and tested on.

    Attributes:
        name: Human-readable name, e.g. ``"Census-Income (KDD)"``.
        slug: Short identifier used as the model-index dataset type, e.g. ``"census-income-kdd"``.
        task_type: The Hub task of the model-index, e.g. ``"tabular-classification"``.
        description: A sentence on the splits (sizes, protocol).
        hub_id: The dataset's Hub id, when it has one (listed in the card's ``datasets``).
        license: The data's licence, which the trained weights follow (a Hub licence id).
        license_link: Where the licence terms are stated, for a licence of ``"other"`` (the Hub asks for it).
        modality: ``"tabular"``, ``"image"`` or ``"text"``.
        language: The language of text data (an ISO code, such as ``"en"``); ``None`` for other data.
        test_split: The name, in the dataset's Hub repository, of the split the test metrics are measured on.
        test_split_description: What that split is, for the card's text (default: "The test split of <name>.").
        provenance: Where the files the recipe reads come from (the data folder's PROVENANCE.md, in short).
        source_hub_ids: Hub ids of the data sets this one is built from, when it is not on the Hub itself
            (MultiMNIST's canvases are built from MNIST): listed in the card's ``datasets``.
    """

    name: str
    slug: str
    task_type: str
    description: str = ""
    hub_id: str | None = None
    license: str | None = None
    license_link: str | None = None
    modality: str = "tabular"
    language: str | None = None
    test_split: str = "test"
    test_split_description: str | None = None
    provenance: str | None = None
    source_hub_ids: tuple[str, ...] = ()


@dataclass
class CardDetails:
    """The parts of a card that the checkpoint cannot know.

    Attributes:
        model_id: The name the card is titled with and the snippet loads (a Hub id or a folder).
        dataset: The data (see `DatasetDescription`); ``None`` when not known (a checkpoint without results).
        command: The command that trains the checkpoint from scratch.
        fine_tune_command: An ``accelerate launch`` command that continues training from the checkpoint.
        intended_use, out_of_scope_use, limitations: What the model is for and not for, and its known limits
            (``None``: what moezoo says of models on data of that modality).
        deviations: How the model deliberately differs from its paper, added to the card's limitations.
        downstream_use: How the checkpoint is built upon.
        failures: How the model fails on its test split, task by task (`moezoo.hub.failures.failure_report`).
        comparison: Markdown comparing the model with others on the same data (for example the zoo's).
        figure: File name of the routing figure beside the card (`moezoo.hub.figures`), if any.
        figure_caption: What the figure shows.
        training_figure: File name of the run's learning-curve figure beside the card
            (`moezoo.hub.figures.plot_training_history`), if any.
        task_parameters: Parameters each task actually uses (`task_parameter_counts`), if measured.
        processor_class: The transformers Auto class that loads the processor saved beside the checkpoint
            (``"AutoFeatureExtractor"`` for a tabular processor, ``"AutoImageProcessor"`` for an image
            processor, ``"AutoTokenizer"``), which the snippet then loads too; ``None`` when there is none.
        extra_tags: Tags beyond moezoo's own.
    """

    model_id: str
    dataset: DatasetDescription | None = None
    command: str | None = None
    fine_tune_command: str | None = None
    intended_use: str | None = None
    out_of_scope_use: str | None = None
    limitations: str | None = None
    deviations: str | None = None
    downstream_use: str = MODEL_DOWNSTREAM_USE
    failures: str | None = None
    comparison: str | None = None
    figure: str | None = None
    figure_caption: str = GATE_WEIGHTS_CAPTION
    training_figure: str | None = None
    task_parameters: Mapping[str, int] | None = None
    processor_class: str | None = None
    extra_tags: Sequence[str] = field(default_factory=tuple)


def task_parameter_counts(model: MultiTaskPreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """For each task, the parameter values its output depends on for ``inputs``: those with a non-zero
    gradient of the sum of its logits. Masked gate weights, other tasks' experts and towers, and the
    experts a saturated DSelect-k gate leaves out get none; embedding rows of categories absent from
    ``inputs`` get none either, so pass real data (a test split)."""
    model.eval()
    parameters = list(model.parameters())
    model_inputs = {name: value for name, value in inputs.items() if name != "labels"}
    counts = {}
    with torch.enable_grad():
        for task in model.task_names:
            logits = model(**model_inputs, tasks=[task]).logits[task]
            grads = torch.autograd.grad(logits.sum(), parameters, allow_unused=True)
            counts[task] = sum(int((grad != 0).sum()) for grad in grads if grad is not None)
    return counts


def eval_results(
    results: Mapping[str, Any], dataset: DatasetDescription, dense_tasks: Sequence[str] = ()
) -> list[EvalResult]:
    """One `EvalResult` per task and metric of ``results["test"]`` (moezoo's ``results.json``); dense
    (per-pixel) tasks are listed as image segmentation.

    huggingface_hub groups results by task type, dataset, configuration and split, not by task name;
    the task is given as the dataset configuration too (it is a label column of the data), so each
    task keeps its own entry in the model-index."""
    found = []
    for name, value in sorted(results.get("test", {}).items()):
        if "/" not in name:
            continue
        task, metric = name.split("/", 1)
        if metric not in HUB_METRIC_TYPES:
            continue
        found.append(
            EvalResult(
                task_type="image-segmentation" if task in dense_tasks else dataset.task_type,
                task_name=task,
                dataset_type=dataset.hub_id or dataset.slug,
                dataset_name=dataset.name,
                dataset_config=task,
                dataset_split=dataset.test_split,
                metric_type=HUB_METRIC_TYPES[metric],
                metric_name=f"{task} {metric}",
                metric_value=round(float(value), 6),
            )
        )
    return found


def architecture_summary(model: MultiTaskPreTrainedModel, task_parameters: Mapping[str, int] | None = None) -> str:
    """Markdown list: architecture, tasks, routing levels (gates, experts, gate type), parameters."""
    config = model.config
    lines = [
        f"- **Architecture:** `{config.model_type}` ({type(model).__name__})",
        "- **Tasks:** " + ", ".join(f"`{task.name}` ({task.kind}" + (f", {task.num_labels} labels)" if task.num_labels > 1 else ")")
                                    for task in model.task_specs),
    ]
    labels_of = getattr(config, "routing_unit_labels", None)
    if labels_of is not None:
        for index, (gates, experts) in enumerate(labels_of()):
            lines.append(
                f"- **Routing level {index}:** {len(experts)} experts ({', '.join(format_unit_label(label) for label in experts)}), "
                f"{len(gates)} `{config.gate_type}` gates ({', '.join(format_unit_label(label) for label in gates)})"
            )
        lines.append(f"- **Expert layers:** {config.expert_hidden_sizes}, tower layers {config.tower_hidden_sizes}")
    describe = getattr(config, "describe_blocks", None)
    if describe is not None:
        lines += [f"- {line}" for line in describe()]
    trainable = model.num_parameters(only_trainable=True)
    counts = [f"{effective_num_parameters(model):,} that can affect an output"]
    if trainable < model.num_parameters():  # an adapter: the base model's weights stay as they were
        counts.append(f"{trainable:,} trained")
    lines.append(f"- **Parameters:** {model.num_parameters():,} ({', '.join(counts)})")
    if task_parameters:
        lines.append("- **Parameters each task uses on the test split:** " + ", ".join(
            f"`{task}` {count:,}" for task, count in task_parameters.items()))
    return "\n".join(lines)


def results_table(results: Mapping[str, Any] | None) -> str:
    """Markdown table of the validation and test metrics per task, or a sentence saying there are none."""
    if not results or "test" not in results:
        return "No evaluation results were recorded for this checkpoint (it has no results.json)."
    metrics = sorted({name for split in ("validation", "test") for name in results.get(split, {}) if "/" in name and not name.endswith("/loss")})
    rows = ["| task | metric | validation | test |", "|---|---|---|---|"]
    for name in metrics:
        task, metric = name.split("/", 1)
        values = [results.get(split, {}).get(name) for split in ("validation", "test")]
        rows.append(f"| {task} | {metric} | " + " | ".join("" if value is None else f"{value:.4f}" for value in values) + " |")
    without_ids = results.get("test_without_task_ids")
    if without_ids:
        rows += [
            "", "Inputs without a task id (routed by the token routers; each example scored on its own task's head):",
            "", "| task | metric | test, with task ids | test, without |", "|---|---|---|---|",
        ]
        rows += [f"| {name.split('/')[0]} | {name.split('/', 1)[1]} | {results['test'][name]:.4f} | {without_ids[name]:.4f} |"
                 for name in metrics if name in without_ids and name in results["test"]]
    return "\n".join(rows)


def training_regime(results: Mapping[str, Any] | None, command: str | None) -> str:
    """The settings that produced the checkpoint and its budget, from ``results.json``'s arguments."""
    if not results:
        return "Not recorded: this checkpoint has no results.json."
    merge = results.get("merge")
    if merge:  # no training of its own: how it was merged
        lines = [f"- merged by `{merge['method']}` from {len(merge.get('sources') or [])} sources, no training"]
        lines += [f"- `{name}`: {value}" for name, value in (merge.get("options") or {}).items()]
        if merge.get("scaling_scores"):
            lines.append("- scaling chosen on validation (mean_score): " + ", ".join(
                f"{entry['scaling']:g}: {entry['score']:.4f}" for entry in merge["scaling_scores"]))
        if command:
            lines.append(f"- rebuilt from scratch by: `{command}`")
        return "\n".join(lines)
    arguments = results.get("arguments", {})
    shown = (
        "seed", "num_train_epochs", "max_train_steps", "per_device_train_batch_size", "learning_rate", "weight_decay",
        "lr_scheduler_type", "warmup_ratio", "max_grad_norm", "task_mixing", "group_by_length", "max_seq_length",
        "max_train_samples", "max_train_samples_per_task", "metric_for_best_model",
    )
    lines = [f"- `{name}`: {arguments[name]}" for name in shown if arguments.get(name) is not None]
    if results.get("best_epoch") is not None:
        lines.append(f"- best epoch: {results['best_epoch']} (by `{arguments.get('metric_for_best_model', 'loss')}` on validation)")
    if results.get("num_processes"):
        lines.append(f"- processes: {results['num_processes']}")
    if command:
        lines.append(f"- rebuilt from scratch by: `{command}`")
    return "\n".join(lines)


def compute_summary(results: Mapping[str, Any] | None) -> str:
    """Hardware, wall time, CPU- or GPU-hours and peak memory of the training run; of a merged model, of the merge
    and, where recorded, of its sources' training."""
    environment = (results or {}).get("environment", {})
    merged = "merge_seconds" in environment
    if not merged and "train_seconds" not in environment:
        return "Not recorded."
    hardware = environment.get("hardware", "not recorded")
    if merged:
        seconds = environment["merge_seconds"] + environment.get("sources_train_seconds", 0.0)
        sources = environment.get("sources_train_seconds")
        lines = [
            f"- **Hardware:** {hardware}",
            f"- **Training wall time:** none of its own: merged from its sources in {environment['merge_seconds']:.1f} s"
            + (f"; the sources trained for {sources / 60:.1f} min together" if sources is not None else
               "; the sources' training is not recorded"),
        ]
        what = "the merge and the sources' training" if sources is not None else "the merge"
    else:
        seconds = environment["train_seconds"]
        lines = [f"- **Hardware:** {hardware}", f"- **Training wall time:** {seconds / 60:.1f} min"]
        what = "the wall time"
    cores = re.search(r"CPU \(.*?, (\d+) cores\)", hardware)
    if cores:
        lines.append(f"- **CPU-hours:** {seconds * int(cores.group(1)) / 3600:.2f} ({cores.group(1)} cores for {what})")
    elif hardware.split(" x ")[0].strip().isdigit():
        lines.append(f"- **GPU-hours:** {seconds * int(hardware.split(' x ')[0]) / 3600:.2f} ({what})")
    if environment.get("peak_memory_mb"):
        lines.append(f"- **Peak memory:** {environment['peak_memory_mb']:,.0f} MB resident (main process)")
    versions = environment.get("versions", {})
    if versions:
        lines.append("- **Software:** " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    return "\n".join(lines)


def baselines_table(results: Mapping[str, Any] | None) -> str | None:
    """Markdown: each task's headline test metric for this model and each baseline of ``results["baselines"]``
    (models trained at the same budget, see `moezoo_cli.catalog.Baseline`), with a line per baseline on what
    it is and one on the tasks where this model is behind it and ahead of it; ``None`` when the results list
    none."""
    baselines = (results or {}).get("baselines") or {}
    test = (results or {}).get("test", {})
    if not baselines or not test:
        return None
    labels = list(baselines)
    lines = [
        "| task | metric | this model | " + " | ".join(labels) + " |",
        "|---|---|---|" + "---|" * len(labels),
    ]
    sides: dict[str, dict[str, list[str]]] = {label: {"behind": [], "level": [], "ahead": []} for label in labels}
    for task in sorted({name.split("/")[0] for name in test if "/" in name}):
        metric = headline_metric(task, test)
        if metric is None:
            continue
        name = f"{task}/{metric}"
        cells = [f"{baselines[label]['test'][name]:.4f}" if name in baselines[label].get("test", {}) else "" for label in labels]
        lines.append(f"| {task} | {metric} | {test[name]:.4f} | " + " | ".join(cells) + " |")
        for label in labels:  # every headline metric is higher-is-better
            theirs = baselines[label].get("test", {}).get(name)
            if theirs is not None:
                # Equal at the table's precision is level: a model that computes its baseline (task-vector experts
                # given task ids) differs from it only by float rounding.
                difference = round(test[name] - theirs, 4)
                sides[label]["ahead" if difference > 0 else "behind" if difference < 0 else "level"].append(f"`{task}`")
    notes = [f"- **{label}:** {baselines[label]['description']}" for label in labels if baselines[label].get("description")]
    verdicts = [
        f"- Against the {label} baseline: " + "; ".join(
            f"{side} on {', '.join(tasks)}" for side, tasks in sides[label].items() if tasks
        ) + "."
        for label in labels if any(sides[label].values())
    ]
    return "\n".join([*lines, "", *notes, *([""] if verdicts else []), *verdicts])


def _license_text(dataset: DatasetDescription | None) -> str:
    if dataset is None or dataset.license is None:
        return "not stated: the data it was trained on is not recorded."
    link = f" ({dataset.license_link})" if dataset.license_link else ""
    return f"`{dataset.license}`{link}, the licence of the {dataset.name} data it was trained on."


def _training_data(dataset: DatasetDescription | None) -> str:
    if dataset is None:
        return "Not recorded: this checkpoint has no results.json."
    lines = [f"{dataset.name}. {dataset.description}".strip()]
    if dataset.provenance:
        lines.append(f"**Provenance:** {dataset.provenance}")
    lines.append(f"**Licence:** {_license_text(dataset)}")
    if dataset.hub_id:
        hub = f"[`{dataset.hub_id}`](https://huggingface.co/datasets/{dataset.hub_id})."
    elif dataset.source_hub_ids:
        hub = "not itself; built from " + ", ".join(
            f"[`{name}`](https://huggingface.co/datasets/{name})" for name in dataset.source_hub_ids) + "."
    else:
        hub = "no official copy; the recipe reads the files named above."
    lines.append(f"**On the Hub:** {hub}")
    return "\n\n".join(lines)


def _fine_tuning(details: CardDetails, adapter: bool) -> str:
    downstream = ADAPTER_DOWNSTREAM_USE if adapter and details.downstream_use == MODEL_DOWNSTREAM_USE else details.downstream_use
    if details.fine_tune_command:
        return (
            "Continue training from this checkpoint with its recipe, on one process or several:\n\n```bash\n"
            + details.fine_tune_command + "\n```\n\n" + downstream
        )
    return downstream


def build_model_card(
    model: MultiTaskPreTrainedModel, results: Mapping[str, Any] | None, details: CardDetails
) -> ModelCard:
    """The model card of ``model`` and its ``results.json`` (``None`` when it has none), from moezoo's own
    template (`moezoo.hub.card_template`): every section is filled from the checkpoint, its results and its data."""
    config = model.config
    dataset = details.dataset
    if dataset is None and results:
        raise ValueError("A card with results needs the data set they were measured on (CardDetails.dataset).")
    architecture = config.architecture_name
    adapter = isinstance(config, AdaptedTransformerConfig)
    merge = config.merge if adapter else None
    repositories = (merge or {}).get("repositories") or []
    if merge and repositories and all(repositories):
        # The Hub lists a merge under the models merged into it, when they are all there.
        base_model, relation = list(repositories), "merge"
        tags = ["multi-task", "peft", "adapter", "merge", architecture]
    elif adapter:
        # Sources that are local folders are no Hub repositories: the merge is listed as its base's adapter.
        base_model, relation = config.base_model_name_or_path, "adapter"
        tags = ["multi-task", "peft", "adapter", *(["merge"] if merge else []), architecture]
    else:
        base_model = (results or {}).get("arguments", {}).get("model_name_or_path")
        tags = ["mixture-of-experts", "multi-task", architecture]
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=dataset.task_type if dataset is not None else None,
        tags=[*tags, *details.extra_tags],
        datasets=([dataset.hub_id] if dataset.hub_id else list(dataset.source_hub_ids)) or None if dataset is not None else None,
        language=dataset.language if dataset is not None else None,
        model_name=details.model_id,
        license=dataset.license if dataset is not None else None,
        license_name=dataset.slug if dataset is not None and dataset.license_link else None,
        license_link=dataset.license_link if dataset is not None else None,
        base_model=base_model,
        eval_results=(eval_results(results, dataset, model.dense_tasks) or None) if results else None,
        # The Hub lists an adapter under its base model's adapters, a merge under its sources.
        **({"base_model_relation": relation} if adapter and base_model else {}),
    )
    versions = (results or {}).get("environment", {}).get("versions", {})
    figure = f"{details.figure_caption}:\n\n![{details.figure_caption}]({details.figure})" if details.figure else None
    modality = dataset.modality if dataset is not None else "tabular"
    return ModelCard.from_template(
        card_data,
        template_str=MODEL_CARD_TEMPLATE,
        model_id=details.model_id,
        model_summary=(
            (f"A multi-task `{architecture}` adapter on `{base_model}`" if adapter else f"A multi-task `{architecture}` model")
            + f" for {', '.join(f'`{name}`' for name in model.task_names)}"
            + (f" on {dataset.name}" if dataset is not None else "")
            + (", merged from single-task fine-tunes" if merge else ", trained") + " and published with moezoo."
        ),
        model_description=architecture_summary(model, details.task_parameters),
        model_type=(
            f"multi-task adapter (`{architecture}`) on a pretrained transformer, with a head per task" if adapter
            else f"multi-task Mixture-of-Experts (`{architecture}`)"
        ),
        paper=ARCHITECTURE_PAPERS.get(architecture, "none: a baseline of moezoo's")
        + (f"; merged by {MERGE_PAPERS[merge['method']]}" if merge and merge.get("method") in MERGE_PAPERS else ""),
        moezoo_version=versions.get("moezoo", "(version not recorded)"),
        license_text=_license_text(dataset),
        intended_use=details.intended_use or INTENDED_USES[modality],
        out_of_scope_use=details.out_of_scope_use or OUT_OF_SCOPE_USES[modality],
        snippet_intro=(
            "Loads the model (and its processor) with transformers' Auto classes and predicts every task for a few "
            "real examples; offline, give the entry's folder in place of its Hub id."
        ),
        get_started_code=prediction_snippet(
            model, details.model_id, (results or {}).get("arguments", {}).get("dataset"), details.processor_class
        ),
        fine_tuning=_fine_tuning(details, adapter),
        training_data=_training_data(dataset),
        training_regime=training_regime(results, details.command),
        compute=compute_summary(results),
        learning_curve=(
            f"{LEARNING_CURVE_CAPTION}:\n\n![{LEARNING_CURVE_CAPTION}]({details.training_figure})" if details.training_figure else None
        ),
        testing_data=(dataset.test_split_description or f"The test split of {dataset.name}.") if dataset is not None else "",
        testing_metrics=(
            "ROC AUC and accuracy for binary tasks, accuracy for multiclass tasks, MSE and MAE for regression; "
            "for dense (per-pixel) tasks, mean intersection over union (mIoU) and pixel accuracy; where a task asks "
            "for them (GLUE's do), Matthews correlation, F1, Pearson and Spearman correlation."
        ),
        results=results_table(results),
        baselines=baselines_table(results),
        failures=details.failures or "Not examined: the test split was not at hand when this card was written.",
        comparison=details.comparison,
        model_examination=figure,
        limitations="\n\n".join(filter(None, [details.limitations or LIMITATIONS[modality], details.deviations])),
        citation="\n\n".join(citation for citation in (
            CITATIONS.get(architecture), MERGE_CITATIONS.get((merge or {}).get("method"))) if citation) or None,
    )
