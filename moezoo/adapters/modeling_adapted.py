"""A pretrained transformer adapted to several tasks at once: a PEFT adapter inside, a head per task.

`AdaptedTransformerModel` wraps any transformers encoder or decoder (``AutoModel``): the chosen adapter
method goes into its linear layers through PEFT, each example's ``task_ids`` reach every adapted layer
through `TaskRouting`, the last hidden states are pooled (mean over real tokens, [CLS], or the last real
token for decoders), and each task reads the pooled vector through its own linear head. It is a moezoo
multi-task model: the shared training loop, `transformers.Trainer`, the masked losses and metrics apply.

Saved adapter-style: ``config.json`` (tasks, method, the base model's name and config), PEFT's
``adapter_config.json`` and ``adapter_model.safetensors`` in ``adapter/``, and ``heads.safetensors``; never
the base weights, which `from_pretrained` reads from ``base_model_name_or_path``. The PEFT files sit in a
subfolder because `transformers.AutoModel` takes a Hub repository with ``adapter_config.json`` at its root
for a bare PEFT adapter of the base model; ``PeftModel.from_pretrained(base, repo, subfolder="adapter")``
still loads them alone.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.dataclasses import strict
from peft import LoraConfig, PeftModel, PolyConfig, get_peft_model, set_peft_model_state_dict
from peft.utils import SAFETENSORS_WEIGHTS_NAME as ADAPTER_WEIGHTS_NAME
from peft.tuners.poly.layer import Linear as PolyLinear
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from ..locations import require_folder_or_repo_id
from ..models.modeling_utils import MultiTaskConfig, MultiTaskPreTrainedModel
from ..suggestions import closest_names
from .alignment import ALIGNMENT_FORM_SUMMARIES, ALIGNMENT_FORMS, ALIGNMENT_WEIGHTS, DISTANCES, LoraAlignment
from .merging import merge_task
from .base_models import load_pretrained, weights_digest
from .multi_head_lora import MultiHeadLoraConfig, MultiHeadLoraLinear, balance_loss
from .task_routing import UNKNOWN_TASK_POLICIES, TaskRouting

#: Adapter methods by name: the PEFT config class each builds (``None``: the encoder stays frozen and
#: only the heads train).
ADAPTER_METHODS: dict[str, type | None] = {
    "lora": LoraConfig,
    "align_lora": LoraConfig,
    "multi_head_lora": MultiHeadLoraConfig,
    "mhr": PolyConfig,
    "frozen": None,
}
POOLINGS = ("mean", "cls", "last")
HEADS_FILE = "heads.safetensors"
#: Where PEFT's adapter files go inside a saved model's folder (see the module's docstring).
ADAPTER_SUBFOLDER = "adapter"
#: Keyword arguments of `AdaptedTransformerModel.from_pretrained`, handed to ``snapshot_download``.
HUB_DOWNLOAD_ARGUMENTS = ("revision", "token", "cache_dir", "local_files_only", "force_download")
#: The keyword of `AdaptedTransformerModel.from_pretrained` that accepts a base model other than the one the
#: adapter was trained on (with a warning).
ALLOW_DIFFERENT_BASE = "allow_different_base"
#: Keyword arguments `transformers.AutoModel.from_pretrained` adds on its way to a model class's own.
AUTO_CLASS_ARGUMENTS = ("config", "trust_remote_code", "adapter_kwargs", "_from_auto", "_commit_hash", "code_revision")


@strict
class AdaptedTransformerConfig(MultiTaskConfig):
    """Configuration of `AdaptedTransformerModel`.

    Args:
        base_model_name_or_path: The pretrained transformer (a Hub id or a folder) whose weights
            `from_pretrained` reads.
        base_config: Its config as a dict (filled from the model when built with `from_base`).
        base_model_digest: `moezoo.adapters.base_models.weights_digest` of the base weights the adapter was
            trained on (filled by `from_base`); `from_pretrained` refuses a base with other weights.
        base_model_revision: The base model's Hub commit, when it was downloaded from the Hub.
        adapter_method: One of `ADAPTER_METHODS`: ``"lora"``, ``"align_lora"`` (LoRA plus the alignment loss),
            ``"multi_head_lora"``, ``"mhr"`` (PEFT's Poly; ``n_splits > 1`` is MHR), ``"frozen"``.
        adapter: Fields of the method's PEFT config (``r``, ``target_modules``, ...); the task count is filled
            in, and a ``None`` value drops the field.
        pooling: ``"mean"`` over real tokens, ``"cls"`` (the first token), or ``"last"`` real token (decoders).
        head_dropout: Dropout on the pooled vector.
        alignment_distance, alignment_form, alignment_weight: Align-LoRA's distance (``"kl"`` / ``"mmd"``), the form
            of its loss (``"authors"``, as the authors' code computes it, or ``"pooled"``: see
            `moezoo.adapters.alignment`) and λ (``None``: the form's own, `ALIGNMENT_WEIGHTS`).
        unknown_tasks: ``"error"``, ``"average"`` or ``"router"`` (see `TaskRouting`; ``"router"`` goes with a
            multi-head LoRA's ``router="task_or_token"``).
        merge: How the model was merged from fine-tunes of its base (`moezoo.merging.merge_lora_models`): the
            method, its options and the sources; ``None`` for a trained model.
    """

    model_type = "adapted_transformer"

    base_model_name_or_path: str | None = None
    base_config: dict | None = None
    base_model_digest: str | None = None
    base_model_revision: str | None = None
    adapter_method: str = "lora"
    adapter: dict = field(default_factory=dict)
    pooling: str = "mean"
    head_dropout: float | int = 0.1
    alignment_distance: str = "kl"
    alignment_form: str = "authors"
    alignment_weight: float | int | None = None
    unknown_tasks: str = "error"
    tower_hidden_sizes: list[int] = field(default_factory=list)
    merge: dict | None = None

    def validate_adapter(self) -> None:
        """Part of `@strict` validation: a known method, pooling, distance and policy."""
        for name, value, known in (
            ("adapter_method", self.adapter_method, list(ADAPTER_METHODS)),
            ("pooling", self.pooling, list(POOLINGS)),
            ("alignment_distance", self.alignment_distance, list(DISTANCES)),
            ("alignment_form", self.alignment_form, list(ALIGNMENT_FORMS)),
            ("unknown_tasks", self.unknown_tasks, list(UNKNOWN_TASK_POLICIES)),
        ):
            if value not in known:
                raise ValueError(f"Unknown {name} {value!r}{closest_names(value, known)}; choose one of {known}.")
        if self.adapter_method == "align_lora" and len(self.tasks) < 2:
            raise ValueError(
                f"adapter_method='align_lora' aligns the LoRA representations of several tasks; with "
                f"{len(self.tasks)} task its alignment loss is always 0 and it trains plain LoRA. Use adapter_method='lora'."
            )
        hybrid = self.adapter_method == "multi_head_lora" and self.adapter_settings().get("router") == "task_or_token"
        if hybrid != (self.unknown_tasks == "router"):
            raise ValueError(
                "router='task_or_token' leaves examples without a task id to the token routers, which needs "
                "unknown_tasks='router', and unknown_tasks='router' needs that router"
                f" (got adapter_method={self.adapter_method!r}, router={self.adapter_settings().get('router')!r}, "
                f"unknown_tasks={self.unknown_tasks!r})."
            )
        if self.adapter_method == "frozen" and self.adapter_settings():
            raise ValueError(
                f"adapter_method='frozen' trains the heads only; it takes no adapter settings, got {self.adapter_settings()}."
            )

    def adapter_settings(self) -> dict[str, Any]:
        """``adapter`` without its ``None`` values: a null setting removes the key (a YAML's setting for
        another method, say)."""
        return {name: value for name, value in self.adapter.items() if value is not None}

    def peft_config(self):
        """The PEFT config of the adapter (``None`` for ``"frozen"``), with the number of tasks filled in."""
        config_class = ADAPTER_METHODS[self.adapter_method]
        if config_class is None:
            return None
        settings = self.adapter_settings()
        known = [config_field.name for config_field in dataclasses.fields(config_class)]
        unknown = [name for name in settings if name not in known]
        if unknown:
            raise ValueError(
                f"adapter setting(s) {unknown} are not fields of {config_class.__name__} "
                f"({self.adapter_method}){closest_names(unknown[0], known)}."
            )
        if config_class is PolyConfig:
            settings.setdefault("n_tasks", len(self.tasks))
        if config_class is MultiHeadLoraConfig and settings.get("router") in ("task", "task_or_token"):
            settings.setdefault("num_tasks", len(self.tasks))
        return config_class(**settings)

    @property
    def architecture_name(self) -> str:
        return self.adapter_method

    def describe_blocks(self) -> list[str]:
        """The base model and the adapter in words, for model cards."""
        base = self.base_config or {}
        shape = ", ".join(
            f"{label} {base[key]}" for key, label in (("num_hidden_layers", "layers"), ("hidden_size", "width")) if key in base
        )
        settings = ", ".join(f"{name} {value}" for name, value in self.adapter_settings().items())
        adapter = f"`{self.adapter_method}` ({settings})" if settings else f"`{self.adapter_method}`"
        if self.adapter_method == "frozen":
            adapter = "none: the encoder is frozen and only the task heads train"
        elif self.adapter_method == "align_lora":
            other = next(form for form in ALIGNMENT_FORMS if form != self.alignment_form)
            adapter += (
                f", alignment loss `{self.alignment_distance}` with weight {self.resolved_alignment_weight} in the "
                f"`{self.alignment_form}` form, {ALIGNMENT_FORM_SUMMARIES[self.alignment_form]} (the `{other}` form is "
                f"{ALIGNMENT_FORM_SUMMARIES[other]})"
            )
        blocks = [
            f"**Base model:** `{self.base_model_name_or_path}` (`{base.get('model_type', 'unknown')}`{', ' + shape if shape else ''})",
            f"**Adapter:** {adapter}",
            f"**Task heads:** linear, on the {self.pooling}-pooled last hidden states",
        ]
        if self.merge:
            options = ", ".join(f"{name} {value}" for name, value in self.merge.get("options", {}).items())
            sources = ", ".join(f"`{source}`" for source in self.merge.get("sources") or []) or "fine-tunes not named"
            # A merge into one LoRA sums the sources' updates; task-vector experts keep each one as a head.
            kept = (
                "each source's update kept whole as one head of this multi-head LoRA (head i: source i), chosen by the "
                "task id, or mixed by the token routers for an input without one"
                if self.adapter_method == "multi_head_lora" else "their weight updates merged into this LoRA"
            )
            blocks.append(
                f"**Merged:** from {sources} by `{self.merge['method']}`{f' ({options})' if options else ''}, {kept} "
                "(moezoo.merging), each source's task heads kept"
            )
        return blocks

    @property
    def resolved_alignment_weight(self) -> float:
        """Align-LoRA's λ: ``alignment_weight``, or the form's own when it is ``None``."""
        return ALIGNMENT_WEIGHTS[self.alignment_form] if self.alignment_weight is None else self.alignment_weight

    @property
    def task_routed(self) -> bool:
        """Whether the adapter layers need each example's task id."""
        return self.adapter_method == "mhr" or (
            self.adapter_method == "multi_head_lora" and self.adapter_settings().get("router") in ("task", "task_or_token")
        )


class AdaptedTransformerModel(MultiTaskPreTrainedModel):
    """A pretrained transformer with a multi-task adapter and a head per task (see the module's docstring).

    Inputs: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` for BERT-like models), ``task_ids``
    (long ``[B]``: each example's task; needed by task-routed adapters and by Align-LoRA), ``labels``.
    Returns `moezoo.MultiTaskOutput`; ``aux_loss`` holds the heads' balance loss and Align-LoRA's loss.
    """

    config_class = AdaptedTransformerConfig
    main_input_name = "input_ids"

    def __init__(self, config: AdaptedTransformerConfig, backbone: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        if backbone is None:
            if config.base_config is None:
                raise ValueError("An AdaptedTransformerConfig needs base_config (build the model with from_base).")
            backbone = AutoModel.from_config(AutoConfig.for_model(**config.base_config))
        peft_config = config.peft_config()
        if peft_config is None:
            backbone.requires_grad_(False)
            self.backbone = backbone
        else:
            self.backbone = get_peft_model(backbone, peft_config)
            for adapter_config in self.backbone.peft_config.values():
                # PEFT keeps a set, which it writes in hash order, different in every process: sorted, two
                # saves of one model are byte-identical.
                if isinstance(adapter_config.target_modules, set):
                    adapter_config.target_modules = sorted(adapter_config.target_modules)
        self.routing = TaskRouting(len(config.tasks), config.unknown_tasks)
        if config.task_routed:
            self.routing.attach(self.backbone, (PolyLinear, MultiHeadLoraLinear))
        self.alignment = None
        if config.adapter_method == "align_lora":
            self.alignment = LoraAlignment(
                self.routing, config.alignment_distance, config.resolved_alignment_weight, config.alignment_form
            )
            self.alignment.attach(self.backbone)
        hidden_size = backbone.config.hidden_size
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.heads = nn.ModuleDict({task.name: nn.Linear(hidden_size, task.num_labels) for task in self.task_specs})
        for head in self.heads.values():
            head.reset_parameters()
        self.post_init()

    @classmethod
    def from_base(
        cls, base_model_name_or_path: str | os.PathLike, tasks: Sequence[Mapping], adapter_method: str = "lora",
        **config_fields: Any,
    ) -> AdaptedTransformerModel:
        """A new model on the pretrained transformer ``base_model_name_or_path`` (a Hub id, found in an installed
        package when one ships it: `moezoo.adapters.base_models.resolve_base_model`; or a folder), for ``tasks``."""
        backbone = load_pretrained(AutoModel, base_model_name_or_path)
        config = AdaptedTransformerConfig(
            tasks=list(tasks), adapter_method=adapter_method, base_model_name_or_path=str(base_model_name_or_path),
            base_config=backbone.config.to_dict(), base_model_digest=weights_digest(backbone),
            base_model_revision=getattr(backbone.config, "_commit_hash", None),
            input_size=backbone.config.hidden_size, **config_fields,
        )
        return cls(config, backbone=backbone)

    def _init_weights(self, module: nn.Module) -> None:
        # The heads initialise themselves (`nn.Linear.reset_parameters`): nothing to do here.
        return

    def initialize_weights(self) -> None:
        """Initialise nothing: the backbone arrives initialised (pretrained, or by its own ``post_init``),
        PEFT has initialised the adapters as their methods prescribe and the heads reset themselves.

        `PreTrainedModel.initialize_weights` would hand every module under the backbone to the backbone's own
        ``_init_weights``, which redraws the adapters' new linear layers from N(0, 0.02): LoRA's B would no
        longer start at zero and the adapted model would no longer start as the base model."""
        return

    def _refine_task_dependence(self, dependence: dict[str, torch.Tensor]) -> None:
        # A task router (multi-head LoRA's with router="task", MHR's) holds a row of mixing weights per task;
        # the adapters' A and B serve every task, and so does a token router.
        routers = []
        for module_name, layer in self.named_modules():
            if isinstance(layer, MultiHeadLoraLinear):
                routers += [f"{module_name}.mhlora_router.{adapter}.weight" for adapter in layer.mhlora_router
                            if layer.router_kind[adapter] == "task"]
                routers += [f"{module_name}.mhlora_router.{adapter}.task.weight" for adapter in layer.mhlora_router
                            if layer.router_kind[adapter] == "task_or_token"]
            elif isinstance(layer, PolyLinear):
                routers += [f"{module_name}.poly_router.{adapter}.module_logits" for adapter in layer.poly_router]
        for name in routers:
            if name in dependence:  # a trainable router
                dependence[name] = torch.eye(len(self.task_names), dtype=torch.bool)

    def input_dtype(self) -> torch.dtype:
        return next(iter(self.heads.values())).weight.dtype

    def check_input_values(self, inputs: Mapping[str, torch.Tensor]) -> None:
        """Every check of `forward` on a batch (or a materialised dataset), without computing anything."""
        known = {"input_ids", "attention_mask", "token_type_ids", "labels", "task_ids"}
        unknown = sorted(set(inputs) - known)
        if unknown:
            raise KeyError(f"Unknown input(s) {unknown}; {type(self).__name__} reads {sorted(known)}.")
        if inputs.get("input_ids") is None:
            raise ValueError("AdaptedTransformerModel reads token ids: pass input_ids.")
        if inputs.get("labels") is not None:
            self.labels_per_task(inputs["labels"], check_values=True)
        if inputs.get("task_ids") is not None:
            self.routing.check(inputs["task_ids"])

    def pool(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """``[B, S, D]`` -> ``[B, D]`` by ``config.pooling``."""
        if attention_mask is None:
            attention_mask = torch.ones(hidden_states.shape[:2], dtype=torch.long, device=hidden_states.device)
        mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
        if self.config.pooling == "cls":
            return hidden_states[:, 0]
        if self.config.pooling == "last":
            last = attention_mask.long().sum(1).clamp_min(1) - 1
            return hidden_states[torch.arange(len(last), device=last.device), last]
        return (hidden_states * mask).sum(1) / mask.sum(1).clamp_min(1)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        labels: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
        tasks: str | Sequence[str] | None = None,
        **kwargs: Any,
    ):
        if kwargs:
            raise TypeError(f"AdaptedTransformerModel.forward got unexpected argument(s) {sorted(kwargs)}.")
        if input_ids is None:
            raise ValueError("AdaptedTransformerModel reads token ids: pass input_ids.")
        names = self.resolve_tasks(tasks)
        self.routing.set(task_ids)
        if self.alignment is not None:
            self.alignment.start(attention_mask)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden_states = self.backbone(**inputs).last_hidden_state
        pooled = self.head_dropout(self.pool(hidden_states, attention_mask).to(self.input_dtype()))
        logits = {name: self.heads[name](pooled) for name in names}
        aux_losses = []
        if self.training:
            balance = balance_loss(self.backbone)
            if balance is not None:
                aux_losses.append(balance)
            if self.alignment is not None and task_ids is not None:
                aux_losses.append(self.alignment.loss())
        aux_loss = torch.stack(aux_losses).sum() if aux_losses else None
        # With task ids, each example's labels count for its own task only. Without labels the ids only routed
        # (an unknown task's id is then allowed where `unknown_tasks` says how it routes).
        return self.multitask_output(logits, labels, aux_loss, None, task_ids if labels is not None else None)

    def merge_task(self, task: str) -> PreTrainedModel:
        """The base transformer for task ``task`` alone, with the task's adapter update merged into its
        weights (`moezoo.adapters.merge_task`; a plain transformers model, saved and loaded without moezoo).
        Its last hidden states, pooled by `pool`, through ``self.heads[task]`` give the task's logits.

        Raises:
            KeyError: an unknown task.
            ValueError: the adapter does not route by task alone (plain LoRA and Align-LoRA share one update:
                PEFT's ``merge_and_unload`` merges it; a token router's update depends on the input).
        """
        if task not in self.task_names:
            raise KeyError(f"Unknown task {task!r}{closest_names(task, self.task_names)}; this model's tasks are {self.task_names}.")
        if not self.config.task_routed:
            raise ValueError(
                f"A {self.config.adapter_method!r} adapter does not route by task: no per-task update to merge"
                + (" (every task shares one LoRA: backbone.merge_and_unload() merges it)." if self.config.adapter_method in ("lora", "align_lora") else ".")
            )
        return merge_task(self.backbone, self.task_names.index(task))

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """Save adapter-style: ``config.json``, PEFT's adapter files in ``adapter/`` (none for ``"frozen"``) and
        the heads; never the base model's weights. PEFT's own card, which would describe the bare encoder,
        is not kept."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(folder)
        if isinstance(self.backbone, PeftModel):
            self.backbone.save_pretrained(folder / ADAPTER_SUBFOLDER)
            (folder / ADAPTER_SUBFOLDER / "README.md").unlink(missing_ok=True)
        save_file({name: value.detach().contiguous() for name, value in self.heads.state_dict().items()}, folder / HEADS_FILE)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        """Load a model saved by `save_pretrained` from a folder or a Hub repository (fetched with
        ``snapshot_download``, which takes ``revision``, ``token``, ``cache_dir``, ``local_files_only`` and
        ``force_download``): the base model from ``config.base_model_name_or_path``, then the adapter and the
        heads (safetensors only).

        The base model's weights must be those the adapter was trained on (``config.base_model_digest``);
        ``allow_different_base=True`` loads the adapter onto other weights of the same shape with a warning.

        Raises:
            TypeError: a positional or keyword argument this loader does not take.
            ValueError: the base model's weights are not those the adapter was trained on.
            OSError: the adapter or heads file is missing, or does not match the config.
        """
        for name in AUTO_CLASS_ARGUMENTS:  # what transformers' Auto classes pass along; the folder's config is read here
            kwargs.pop(name, None)
        allow_different_base = bool(kwargs.pop(ALLOW_DIFFERENT_BASE, False))
        unknown = sorted(set(kwargs) - set(HUB_DOWNLOAD_ARGUMENTS))
        if args or unknown:
            raise TypeError(
                f"{cls.__name__}.from_pretrained takes a folder or Hub id and {[*HUB_DOWNLOAD_ARGUMENTS, ALLOW_DIFFERENT_BASE]}; got "
                f"{'positional arguments ' + repr(args) if args else ''}{' ' if args and unknown else ''}"
                f"{'unknown keyword(s) ' + repr(unknown) if unknown else ''}."
            )
        require_folder_or_repo_id(pretrained_model_name_or_path)
        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            folder = Path(snapshot_download(str(pretrained_model_name_or_path), **kwargs))
        config = AdaptedTransformerConfig.from_pretrained(folder)
        if config.base_model_name_or_path is None:
            raise ValueError(f"{folder}/config.json names no base model (base_model_name_or_path).")
        backbone = load_pretrained(AutoModel, config.base_model_name_or_path)
        check_base_identity(config, backbone, folder, allow_different_base)
        model = cls(config, backbone=backbone)
        adapter_weights = f"{ADAPTER_SUBFOLDER}/{ADAPTER_WEIGHTS_NAME}"
        files = [HEADS_FILE, *([adapter_weights] if isinstance(model.backbone, PeftModel) else [])]
        missing = [name for name in files if not (folder / name).is_file()]
        if missing:
            raise OSError(f"{folder} lacks {missing}: not a complete {cls.__name__} saved with save_pretrained.")
        if isinstance(model.backbone, PeftModel):
            try:
                result = set_peft_model_state_dict(model.backbone, load_file(folder / adapter_weights))
            except RuntimeError as error:  # a tensor of another shape than the config gives
                raise OSError(
                    f"The adapter in {folder} does not fit its config.json (another task count, rank or number of "
                    f"heads?): {error}"
                ) from error
            if getattr(result, "unexpected_keys", None):
                raise OSError(f"The adapter in {folder} does not match its config: unexpected {result.unexpected_keys}.")
        heads = load_file(folder / HEADS_FILE)
        saved_tasks = sorted({name.split(".")[0] for name in heads})
        if saved_tasks != sorted(config.task_names):
            raise OSError(
                f"{folder / HEADS_FILE} holds heads for tasks {saved_tasks}, its config.json lists {sorted(config.task_names)}."
            )
        model.heads.load_state_dict(heads, strict=True)
        return model.eval()


def check_base_identity(
    config: AdaptedTransformerConfig, backbone: PreTrainedModel, folder: Path, allow_different: bool = False
) -> None:
    """Refuse (or, with ``allow_different``, warn about) a base model whose weights are not those the adapter
    in ``folder`` was trained on. A config without a digest (saved before moezoo recorded one) is not checked."""
    if config.base_model_digest is None:
        return
    found = weights_digest(backbone)
    if found == config.base_model_digest:
        return
    message = (
        f"The base model {config.base_model_name_or_path} has other weights than the one the adapter in {folder} was "
        f"trained on (weights digest {found}, the adapter's config.json records {config.base_model_digest}"
        + (f", Hub revision {config.base_model_revision}" if config.base_model_revision else "")
        + "): the adapter's updates would be applied to weights they were not learnt for."
    )
    if not allow_different:
        raise ValueError(f"{message} Load the recorded base, or pass {ALLOW_DIFFERENT_BASE}=True to load it anyway.")
    warnings.warn(f"{message} Loading it anyway ({ALLOW_DIFFERENT_BASE}=True).", stacklevel=3)
