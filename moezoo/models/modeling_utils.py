"""What every moezoo model shares: the task/input config, input embedding, task heads, losses, outputs."""

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import field, fields
from pathlib import Path
from typing import Any, ClassVar, get_args

import torch
from huggingface_hub.dataclasses import strict
from safetensors import SafetensorError
from torch import nn
from transformers import GenerationConfig, PreTrainedConfig, PreTrainedModel
from transformers.utils import FEATURE_EXTRACTOR_NAME, logging

from ..constants import restore_constants
from ..locations import require_folder_or_repo_id
from ..outputs import MultiTaskOutput
from ..suggestions import closest_names
from ..routing import ExpertBank
from ..tabular import FeatureSchema, TabularEmbedding, TabularProcessor
from ..tasks import (
    TaskSpec,
    check_task_ids,
    own_task_labels,
    parse_tasks,
    present_label_counts,
    split_labels,
    weighted_task_losses,
)
from .image_encoder import ConvImageEncoder, ImageEncoderSpec


logger = logging.get_logger(__name__)

#: Where a processor (tabular or image) is saved beside a model: transformers' own file name.
PROCESSOR_FILE = FEATURE_EXTRACTOR_NAME
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"


def processor_auto_class_name(path: Path) -> str | None:
    """The transformers Auto class that loads the processor file ``path``: ``"AutoImageProcessor"`` for an
    image processor (M3ViT's), ``"AutoFeatureExtractor"`` for moezoo's tabular processor; ``None`` when
    the file does not exist."""
    if not path.is_file():
        return None
    return "AutoImageProcessor" if "image_processor_type" in json.loads(path.read_text()) else "AutoFeatureExtractor"


def checkpoint_processor_class(folder: Path) -> str | None:
    """The transformers Auto class that loads what a checkpoint folder holds beside the model: a tokenizer
    (``"AutoTokenizer"``, an adapted transformer's), or the processor of `processor_auto_class_name`;
    ``None`` when there is neither."""
    if (folder / TOKENIZER_CONFIG_FILE).is_file():
        return "AutoTokenizer"
    return processor_auto_class_name(folder / PROCESSOR_FILE)


def processor_matches(folder: Path, config: "MultiTaskConfig") -> bool:
    """Whether the processor saved in ``folder`` suits a model of ``config``: an image processor always
    (a ViT's), a tabular processor when it produces the features ``config`` reads."""
    try:
        saved = json.loads((folder / PROCESSOR_FILE).read_text())
    except (OSError, ValueError):
        return False
    if "image_processor_type" in saved:
        return True
    if config.features is None:
        return False
    try:
        processor = TabularProcessor.from_pretrained(folder)
    except (OSError, ValueError, TypeError):
        return False
    return processor.feature_schema.to_dict() == FeatureSchema.from_dict(config.features).to_dict()


#: Keyword arguments that transformers itself gives a config beyond its fields (when loading, or for
#: its own features); any other unknown keyword is a mistake.
TRANSFORMERS_CONFIG_KWARGS = frozenset(
    {
        "name_or_path", "_name_or_path", "_commit_hash", "torch_dtype", "num_labels", "output_attentions",
        "attn_implementation", "experts_implementation", "per_layer_config", "rope_scaling", "rope_theta",
        "_attn_implementation_internal", "_experts_implementation_internal",
        *GenerationConfig._get_default_generation_params(),
    }
)


def reject_unknown_config_fields(config_class: type, given: Mapping[str, Any]) -> None:
    """Raise a `ValueError` for keyword arguments that are no field of ``config_class`` (nor ones
    transformers passes itself), naming the closest fields and the other architectures that have them."""
    unknown = sorted(set(given) - TRANSFORMERS_CONFIG_KWARGS)
    if not unknown:
        return
    known = [config_field.name for config_field in fields(config_class)]
    problems = []
    for name in unknown:
        owners = sorted(
            other.model_type
            for other in _config_classes()
            if other is not config_class and name in other.__dataclass_fields__ and other.model_type
        )
        # The closest names first: a misspelling is likelier than a field of another architecture.
        owned = f" (a field of {', '.join(owners)})" if owners else ""
        problems.append(f"{name!r}{closest_names(name, known)}{owned}")
    raise ValueError(
        f"{config_class.__name__} ({config_class.model_type!r}) has no field {', '.join(problems)}. "
        f"Its fields: {sorted(name for name in known if name not in PreTrainedConfig.__dataclass_fields__)}."
    )


def _config_classes() -> list[type]:
    """Every `MultiTaskConfig` subclass defined so far."""
    found, pending = [], [MultiTaskConfig]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _default_tasks() -> list[dict]:
    return [{"name": "task_0", "kind": "binary"}, {"name": "task_1", "kind": "binary"}]


@strict
class MultiTaskConfig(PreTrainedConfig):
    """Configuration shared by every multi-task model: its tasks, its inputs and its task towers.

    Args:
        tasks: The tasks, as `moezoo.TaskSpec` fields (``name``, ``kind``, ``num_labels``, ``weight``).
        features: A `moezoo.tabular.FeatureSchema` as a dict (numeric and categorical features);
            ``None`` when the model reads images or dense ``inputs_embeds`` instead.
        image_encoder: A `moezoo.models.image_encoder.ImageEncoderSpec` as a dict: the model reads
            ``pixel_values`` through a small shared CNN. ``None`` for tabular or dense inputs.
        input_size: Size of the dense vector the model body reads. Derived from ``features`` or
            ``image_encoder`` when one is set; otherwise the size of ``inputs_embeds``.
        tower_hidden_sizes: Hidden layers of each task's tower (``[]``: the head reads the mixture).
        tower_activation: Activation of the towers (any `transformers.activations.ACT2FN` name).
        tower_dropout: Dropout in the towers.
    """

    model_type = "moezoo_multitask"
    # `transformers.Trainer.predict` returns what is left of the output: the logits alone.
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["task_losses", "task_label_counts", "aux_loss", "router_probs"]

    tasks: list[dict] = field(default_factory=_default_tasks)
    features: dict | None = None
    image_encoder: dict | None = None
    input_size: int | None = None
    tower_hidden_sizes: list[int] = field(default_factory=lambda: [8])
    tower_activation: str = "relu"
    tower_dropout: float | int = 0.0

    def __post_init__(self, **kwargs) -> None:
        foreign_type = kwargs.pop("model_type", self.model_type)
        if foreign_type != self.model_type:
            raise ValueError(
                f"This config describes a {foreign_type!r} model, not a {self.model_type!r} one: load it with "
                f"the {foreign_type!r} classes (or transformers.AutoModel / AutoConfig after `import moezoo`)."
            )
        reject_unknown_config_fields(type(self), kwargs)
        for config_field in fields(self):
            # Fields typed `float | int` (or `float | int | None`) accept the ints YAML and JSON write for
            # whole numbers, stored as floats.
            value = getattr(self, config_field.name)
            if {float, int} <= set(get_args(config_field.type)) and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, config_field.name, float(value))
        self.tasks = [TaskSpec.from_dict(task).to_dict() for task in self.tasks]
        if self.features is not None and self.image_encoder is not None:
            raise ValueError("Set features (tabular inputs) or image_encoder (image inputs), not both.")
        encoded_size = None
        if self.features is not None:
            schema = FeatureSchema.from_dict(self.features)
            self.features, encoded_size, source = schema.to_dict(), schema.output_size, "the feature schema"
        elif self.image_encoder is not None:
            spec = ImageEncoderSpec.from_dict(self.image_encoder)
            self.image_encoder, encoded_size, source = spec.to_dict(), spec.output_size, "the image encoder"
        if encoded_size is not None:
            if self.input_size is not None and self.input_size != encoded_size:
                raise ValueError(
                    f"input_size={self.input_size} disagrees with {source}, which gives {encoded_size}; "
                    "leave input_size unset when features or an image encoder are given."
                )
            self.input_size = encoded_size
        elif self.input_size is None:
            self.input_size = 32
        super().__post_init__(**kwargs)

    def validate_tasks(self) -> None:
        """Part of `@strict` validation: tasks are valid and their names unique."""
        parse_tasks(self.tasks)

    def validate_inputs(self) -> None:
        """Part of `@strict` validation: a positive input size and sane towers."""
        if self.input_size < 1:
            raise ValueError(f"input_size must be positive, got {self.input_size}.")
        if any(size < 1 for size in self.tower_hidden_sizes):
            raise ValueError(f"tower_hidden_sizes must be positive, got {self.tower_hidden_sizes}.")
        if not 0.0 <= self.tower_dropout < 1.0:
            raise ValueError(f"tower_dropout must be in [0, 1), got {self.tower_dropout}.")

    @property
    def task_specs(self) -> list[TaskSpec]:
        return parse_tasks(self.tasks)

    @property
    def architecture_name(self) -> str:
        """The architecture's name in the zoo and on cards: the model type (an adapted transformer gives its
        adapter method)."""
        return self.model_type

    @property
    def task_names(self) -> list[str]:
        return [task["name"] for task in self.tasks]

    @property
    def feature_schema(self) -> FeatureSchema | None:
        return FeatureSchema.from_dict(self.features) if self.features is not None else None


def cast_floating(name: str, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` in ``dtype``; a `TypeError` naming the input when it is not a floating tensor."""
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {tensor.dtype}.")
    return tensor.to(dtype)


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """A `ValueError` naming the input and counting its NaN / inf values, if it holds any."""
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        raise ValueError(f"{name} contains {int((~finite).sum())} NaN or inf value(s).")


class TaskHeads(nn.Module):
    """Each task's tower and output layer.

    The towers are one `ExpertBank` with one "expert" per task, each reading its own task's
    representation; the output layers are per task since their sizes differ.
    Input ``[B, T, d]`` (task ``t`` reads ``inputs[:, t]``) -> logits per task ``[B, num_labels]``.
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        input_size: int,
        hidden_sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.task_names = [task.name for task in tasks]
        self.towers = (
            ExpertBank(len(tasks), input_size, hidden_sizes, activation=activation, dropout=dropout)
            if hidden_sizes
            else None
        )
        head_input_size = hidden_sizes[-1] if hidden_sizes else input_size
        self.outputs = nn.ModuleDict({task.name: nn.Linear(head_input_size, task.num_labels) for task in tasks})

    def forward(self, task_inputs: torch.Tensor, task_names: Sequence[str]) -> dict[str, torch.Tensor]:
        hidden = self.towers(task_inputs) if self.towers is not None else task_inputs
        return {name: self.outputs[name](hidden[:, self.task_names.index(name)]) for name in task_names}


class MultiTaskPreTrainedModel(PreTrainedModel):
    """Base class of moezoo models: input embedding, task selection, losses and outputs.

    A subclass builds its body and calls `embed_inputs` and `multitask_output` from its ``forward``.
    """

    config_class = MultiTaskConfig
    main_input_name = "numeric_features"
    _no_split_modules: list[str] = []
    # Set by `skip_input_value_checks` for inputs that were checked once, where they were prepared.
    _check_input_values: bool = True
    _labels_complete: bool = False
    # Each task's loss averages its own present labels; `transformers.Trainer` must not pass its
    # `num_items_in_batch` (for token-count normalisation) to forward.
    accepts_loss_kwargs = False

    def __init__(self, config: MultiTaskConfig) -> None:
        super().__init__(config)
        self.task_specs = config.task_specs
        self.task_names = [task.name for task in self.task_specs]
        schema = config.feature_schema
        self.embeddings = TabularEmbedding(schema) if schema is not None else None
        self.image_encoder = (
            ConvImageEncoder(ImageEncoderSpec.from_dict(config.image_encoder)) if config.image_encoder is not None else None
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        """`transformers.PreTrainedModel.from_pretrained`, stricter: weights are read from safetensors
        only (never unpickled), and a weights file that is corrupt, truncated, or lacks or adds
        tensors is an error rather than a silently re-initialised model."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("moezoo loads weights from safetensors only; use_safetensors=False is not supported.")
        require_folder_or_repo_id(pretrained_model_name_or_path)
        kwargs["use_safetensors"] = True
        want_info = kwargs.pop("output_loading_info", False)
        try:
            try:
                model, info = super().from_pretrained(
                    pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
                )
            except RuntimeError as error:
                if "ignore_mismatched_sizes" not in str(error) or kwargs.get("ignore_mismatched_sizes"):
                    raise
                # transformers only points at its log; load again, keeping the mismatches, to name them.
                model, info = super().from_pretrained(
                    pretrained_model_name_or_path, *args, output_loading_info=True,
                    **{**kwargs, "ignore_mismatched_sizes": True},
                )
        except SafetensorError as error:
            raise OSError(
                f"The weights file in {pretrained_model_name_or_path} is corrupt or truncated ({error}); "
                "re-save or re-download the checkpoint."
            ) from error
        problems = [
            f"{description}: {sorted(info[key])}"
            for key, description in (("missing_keys", "missing"), ("unexpected_keys", "not in the model"))
            if info.get(key)
        ]
        problems += [
            f"{name} has shape {list(checkpoint_shape)} in the checkpoint but {list(model_shape)} in the model"
            for name, checkpoint_shape, model_shape in info.get("mismatched_keys") or []
        ]
        if problems:
            raise OSError(
                f"The checkpoint in {pretrained_model_name_or_path} does not match {cls.__name__} built from its "
                f"config.json: {'; '.join(problems)}."
            )
        return (model, info) if want_info else model

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`transformers.PreTrainedModel.save_pretrained`, leaving no file of another model behind: a
        weight index of an earlier (sharded) save, and a processor that produces other features than
        this model reads, are removed (with a warning that names them)."""
        folder = Path(save_directory)
        stale = [folder / WEIGHTS_INDEX_FILE]
        if (folder / PROCESSOR_FILE).is_file() and not processor_matches(folder, self.config):
            stale.append(folder / PROCESSOR_FILE)
        removed = [path.name for path in stale if path.is_file()]
        for name in removed:
            (folder / name).unlink()
        if removed:
            logger.warning(f"Removed {removed}, left in {folder} by another model.")
        super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's default initialisation for every layer (transformers' default is N(0, 0.02), tuned
        # for transformers, not for these small tabular networks). `reset_parameters` goes through
        # torch.nn.init, which transformers guards so that loaded weights are never overwritten.
        # transformers visits every submodule, so only modules that own parameters directly reset
        # them; a container's `reset_parameters` would initialise its children a second time.
        restore_constants(module)
        if isinstance(module, PreTrainedModel) or next(module.parameters(recurse=False), None) is None:
            return
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()

    @contextmanager
    def skip_input_value_checks(self, labels_complete: bool = False) -> Iterator[None]:
        """Within this block, `forward` skips the checks whose cost grows with the data: NaN / inf in
        float inputs, categorical indices outside their vocabularies, label values, task ids. For inputs
        that already passed `check_input_values` once, as the training loop's materialised datasets do.
        Shape and dtype checks still run.

        Args:
            labels_complete: The caller also knows that no label is missing
                (`moezoo.tasks.labels_complete`): the losses skip their masking.
        """
        previous = self._check_input_values, self._labels_complete
        self._check_input_values, self._labels_complete = False, labels_complete
        try:
            yield
        finally:
            self._check_input_values, self._labels_complete = previous

    def check_input_values(self, inputs: Mapping[str, torch.Tensor]) -> None:
        """Run every check of `forward` on a batch (or a whole materialised dataset) without computing
        anything: shapes, dtypes, and the values that `skip_input_value_checks` then trusts.

        Raises:
            ValueError / TypeError / KeyError: naming the input, feature or task at fault.
        """
        known = {"numeric_features", "categorical_features", "inputs_embeds", "pixel_values", "labels", "task_ids"}
        unknown = sorted(set(inputs) - known)
        if unknown:
            raise KeyError(f"Unknown input(s) {unknown}; {type(self).__name__} reads {sorted(known)}.")
        sizes = {name: len(value) for name, value in inputs.items() if isinstance(value, torch.Tensor)}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Inputs disagree on the batch size: {sizes}.")
        if self.embeddings is not None and inputs.get("inputs_embeds") is None:
            self.embeddings.checked_inputs(inputs.get("numeric_features"), inputs.get("categorical_features"))
        for name in ("inputs_embeds", "pixel_values"):
            if inputs.get(name) is not None:
                check_finite(name, inputs[name])
        if inputs.get("labels") is not None:
            self.labels_per_task(inputs["labels"], check_values=True)
        if inputs.get("task_ids") is not None:
            check_task_ids(inputs["task_ids"], len(self.task_specs))

    def input_dtype(self) -> torch.dtype:
        """The floating dtype the model computes in, to which floating inputs are cast. `dtype`, which
        walks the module tree; a subclass may return a parameter's dtype directly (it runs every step)."""
        return self.dtype

    def embed_inputs(
        self,
        numeric_features: torch.Tensor | None = None,
        categorical_features: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The dense ``[B, input_size]`` vector the body reads, in the model's dtype.

        Floating inputs are cast to the model's dtype (float64 rows into a float32 model, say).
        """
        check_values = self._check_input_values
        if inputs_embeds is not None:
            if inputs_embeds.dim() != 2 or inputs_embeds.shape[1] != self.config.input_size:
                raise ValueError(
                    f"inputs_embeds must be [batch, {self.config.input_size}], got {list(inputs_embeds.shape)}."
                )
            if check_values:
                check_finite("inputs_embeds", inputs_embeds)
            return cast_floating("inputs_embeds", inputs_embeds, self.input_dtype())
        if self.image_encoder is not None:
            if pixel_values is None:
                raise ValueError("This model reads images (config.image_encoder is set): pass pixel_values.")
            pixel_values = cast_floating("pixel_values", pixel_values, self.input_dtype())
            if check_values:
                check_finite("pixel_values", pixel_values)
            return self.image_encoder(pixel_values)
        if pixel_values is not None:
            raise ValueError("This model has no image encoder (config.image_encoder is None): it cannot read pixel_values.")
        if self.embeddings is None:
            raise ValueError("This model has no feature schema (config.features is None): pass inputs_embeds.")
        if numeric_features is not None and numeric_features.is_floating_point():
            numeric_features = numeric_features.to(self.input_dtype())
        return self.embeddings(numeric_features, categorical_features, check_values=check_values)

    def resolve_tasks(self, tasks: str | Sequence[str] | None) -> list[str]:
        """Validate a task selection; ``None`` selects every task."""
        if tasks is None:
            return list(self.task_names)
        names = [tasks] if isinstance(tasks, str) else list(tasks)
        unknown = [name for name in names if name not in self.task_names]
        if unknown:
            raise KeyError(f"Unknown task(s) {unknown}; this model's tasks are {self.task_names}.")
        return names

    @property
    def dense_tasks(self) -> tuple[str, ...]:
        """The tasks predicted per pixel (logits ``[B, num_labels, H, W]``); none for the tabular models."""
        return ()

    def task_dependence(self) -> dict[str, torch.Tensor]:
        """Which tasks' losses each trainable parameter can affect, read from the model's structure (not
        from data): for every parameter name, Bool ``[T, R]`` over the ``R`` equal blocks of the parameter
        viewed as ``[R, -1]`` (its rows: the experts of a bank, the gates of a gate, the tasks of stacked
        towers; ``R = 1`` for the whole parameter). Multi-task optimisation combines the tasks' gradients
        only where more than one task depends on a block; a block of one task keeps that task's gradient.

        Here: a parameter under ``heads.<task>`` serves that task, and every other one every task;
        architectures with task-specific parts elsewhere refine it (`_refine_task_dependence`).
        """
        num_tasks = len(self.task_names)
        dependence = {}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            owner = next((index for index, task in enumerate(self.task_names) if name.startswith(f"heads.{task}.")), None)
            uses = torch.ones(num_tasks, 1, dtype=torch.bool)
            if owner is not None:
                uses = torch.zeros(num_tasks, 1, dtype=torch.bool)
                uses[owner] = True
            dependence[name] = uses
        self._refine_task_dependence(dependence)
        return dependence

    def _refine_task_dependence(self, dependence: dict[str, torch.Tensor]) -> None:
        """Adjust `task_dependence`'s default in place (a subclass's task-specific parameters)."""

    def shared_representation_module(self) -> nn.Module | None:
        """The module whose output is the representation every task reads, through which the shared
        parameters reach the tasks (the representation-level variant of the gradient methods, MGDA-UB, takes
        the tasks' gradients of it); ``None`` where the model has none."""
        return None

    def labels_per_task(
        self, labels: torch.Tensor | Mapping[str, torch.Tensor], check_values: bool = True
    ) -> dict[str, torch.Tensor]:
        """A batch's labels per task as float tensors with the examples first: ``[B, label_width]``
        (`moezoo.tasks.split_labels`), or ``[B, label_width, H, W]`` for a dense task. Shapes are
        always checked, values with ``check_values``."""
        return split_labels(self.task_specs, labels, check_values=check_values)

    def task_losses(
        self,
        logits: dict[str, torch.Tensor],
        labels: torch.Tensor | Mapping[str, torch.Tensor],
        task_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The weighted sum of the task losses, each task's loss (see `weighted_task_losses`) and its
        number of present labels (`present_label_counts`), for logits ``[B, num_labels]`` per task. With
        ``task_ids``, each example counts for its own task only."""
        reference = next(iter(logits.values()))
        per_task_labels = self.labels_per_task(labels, check_values=self._check_input_values)
        label_batch = next(iter(per_task_labels.values())).shape[0]
        if label_batch != reference.shape[0]:
            raise ValueError(f"Labels have batch size {label_batch}, inputs {reference.shape[0]}.")
        if task_ids is not None:
            per_task_labels = own_task_labels(self.task_specs, per_task_labels, task_ids)
        # With task ids, each example's other tasks count as missing labels.
        complete = self._labels_complete and task_ids is None
        total, losses = weighted_task_losses(self.task_specs, logits, per_task_labels, complete)
        return total, losses, present_label_counts(self.task_specs, per_task_labels)

    def multitask_output(
        self,
        logits: dict[str, torch.Tensor],
        labels: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
        aux_loss: torch.Tensor | None = None,
        router_probs: tuple[torch.Tensor, ...] | None = None,
        task_ids: torch.Tensor | None = None,
    ) -> MultiTaskOutput:
        """Compute the task losses (when labels are given) and pack the output. With ``task_ids``
        (mixed-task data), each example's labels count for its own task only (`own_task_labels`)."""
        reference = next(iter(logits.values()))
        if task_ids is not None:
            check_task_ids(task_ids, len(self.task_specs), reference.shape[0], check_values=self._check_input_values)
        loss = task_losses = label_counts = None
        if labels is not None:
            weighted, task_losses, label_counts = self.task_losses(logits, labels, task_ids)
            # A model without auxiliary losses adds nothing (not a zero) to the graph.
            if weighted is None:
                loss = aux_loss if aux_loss is not None else reference.new_zeros(())
            else:
                loss = weighted if aux_loss is None else weighted + aux_loss
        if aux_loss is None:
            aux_loss = reference.new_zeros(())
        return MultiTaskOutput(
            loss=loss, task_losses=task_losses, task_label_counts=label_counts, logits=logits, aux_loss=aux_loss,
            router_probs=router_probs,
        )
