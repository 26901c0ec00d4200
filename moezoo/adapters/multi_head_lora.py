"""Multi-head LoRA (HydraLoRA style) as a PEFT tuner: one shared A, several B heads, a router mixing them.

For a targeted linear layer ``W`` (``[out, in]``)::

    y = W x + (lora_alpha / r) * sum_i g_i * B_i A x,   g = softmax(router)

``A`` (``[r, in]``) is shared; each head ``B_i`` (``[out, r]``) starts at zero (``head_init="zeros"``: the
adapted model starts as the base model) or random (``"random"``, as R-LoRA does). The router is per token
(``router="token"``: a linear map of the layer's input) or per task (``router="task"``: learned head
logits for each task, chosen by the example's ``task_ids``, which `moezoo.adapters.TaskRouting` hands to
the layer), or both (``router="task_or_token"``: an example with a task id takes its task's row, one
without (id -1, or no ids at all) the token router's weights; the form `moezoo.merging` gives single-task
LoRAs turned into the heads of one adapter, exact for a known task, routed by input otherwise).

What breaks the symmetry between the heads: zero heads under a router that weighs them all alike would
each receive the same gradient at every step, stay equal forever, and leave the router's own gradient at
zero (a softmax over equal heads). HydraLoRA starts its router at random (``router_init="random"``, the
default: the token router as an ``nn.Linear`` does, Kaiming uniform; the task router's logits from
N(0, 1)), so each head gets its own share of every gradient from the first step while the zero heads
keep the adapted model equal to the base model. ``router_init="uniform"`` starts the router at zero
(every head weighs 1/N) and needs ``head_init="random"`` to break the symmetry instead. With ``balance_loss_weight`` the layer also returns a load-balancing loss, the squared
coefficient of variation of the heads' mean weights (`moezoo.routing.cv_squared`), collected by
`balance_loss`.

PEFT's ``PeftType`` enum cannot be extended from outside, so the tuner is registered in PEFT's mapping
tables under the string ``"MULTI_HEAD_LORA"`` when moezoo is imported (`register_multi_head_lora`);
``PeftModel.from_pretrained`` then reads its ``adapter_config.json``. Tested with peft 0.21.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..routing import cv_squared
from ..tasks import check_task_ids

#: The name the tuner is registered under in PEFT's mapping tables (and written as ``peft_type``).
MULTI_HEAD_LORA = "MULTI_HEAD_LORA"
PREFIX = "mhlora_"
ROUTERS = ("token", "task", "task_or_token")
HEAD_INITS = ("zeros", "random")
ROUTER_INITS = ("random", "uniform")


@dataclass
class MultiHeadLoraConfig(PeftConfig):
    """Configuration of a multi-head LoRA adapter (see the module's docstring for the formula).

    Args:
        r: Rank of the shared ``A`` and of every head.
        lora_alpha: Scaling numerator: the update is scaled by ``lora_alpha / r``.
        num_heads: Number of ``B`` heads.
        router: ``"token"`` (from each token's input), ``"task"`` (from the example's task id) or
            ``"task_or_token"`` (the task's row where the example has a task id, the token router's otherwise).
        num_tasks: Number of tasks (``router="task"``).
        head_init: ``"zeros"`` (the adapted model starts as the base model) or ``"random"``.
        router_init: ``"random"`` (HydraLoRA: the heads differ from the first step) or ``"uniform"`` (every
            head 1/N; only with ``head_init="random"``, see the module's docstring).
        balance_loss_weight: Weight of each layer's load-balancing loss (0: none).
        lora_dropout: Dropout on the adapter's input.
        target_modules: Names (or a regex) of the linear layers to adapt; ``None`` for LoRA's defaults
            for the model type.
        exclude_modules: Names (or a regex) of modules not to adapt.
        modules_to_save: Modules besides the adapters to train and save (a classifier, say).
    """

    r: int = field(default=8, metadata={"help": "Rank of A and of each head."})
    lora_alpha: float = field(default=8, metadata={"help": "The update is scaled by lora_alpha / r."})
    num_heads: int = field(default=4, metadata={"help": "Number of B heads."})
    router: Literal["token", "task", "task_or_token"] = field(default="token", metadata={"help": "token, task or task_or_token routing."})
    num_tasks: int | None = field(default=None, metadata={"help": "Number of tasks (router='task')."})
    head_init: Literal["zeros", "random"] = field(default="zeros", metadata={"help": "zeros or random heads."})
    router_init: Literal["random", "uniform"] = field(default="random", metadata={"help": "random or uniform router."})
    balance_loss_weight: float = field(default=0.0, metadata={"help": "Weight of the heads' balance loss."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Linear layers to adapt."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules not to adapt."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Other modules to train and save."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = MULTI_HEAD_LORA
        if isinstance(self.target_modules, (list, tuple, set)):
            self.target_modules = set(self.target_modules)
        for name in ("r", "num_heads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"MultiHeadLoraConfig.{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.router not in ROUTERS:
            raise ValueError(f"Unknown router {self.router!r}; choose one of {ROUTERS}.")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"Unknown head_init {self.head_init!r}; choose one of {HEAD_INITS}.")
        if self.router_init not in ROUTER_INITS:
            raise ValueError(f"Unknown router_init {self.router_init!r}; choose one of {ROUTER_INITS}.")
        if self.router_init == "uniform" and self.head_init == "zeros" and self.num_heads > 1:
            raise ValueError(
                "router_init='uniform' with head_init='zeros' never trains the heads apart: every head gets the same "
                "gradient at every step and the router's gradient is zero. Use router_init='random' (HydraLoRA's) or "
                "head_init='random'."
            )
        if self.router != "token" and (not isinstance(self.num_tasks, int) or self.num_tasks < 1):
            raise ValueError(f"router={self.router!r} needs num_tasks, a positive number of tasks; got {self.num_tasks!r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.balance_loss_weight < 0:
            raise ValueError(f"balance_loss_weight cannot be negative, got {self.balance_loss_weight}.")


class MultiHeadLoraLayer(BaseTunerLayer):
    """The adapter state of one adapted linear layer (see `MultiHeadLoraLinear`)."""

    adapter_layer_names = ("mhlora_A", "mhlora_B", "mhlora_router")
    other_param_names = ("r", "num_heads", "scaling", "router_kind", "balance_loss_weight", "mhlora_dropout")

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.r: dict[str, int] = {}
        self.num_heads: dict[str, int] = {}
        self.scaling: dict[str, float] = {}
        self.router_kind: dict[str, str] = {}
        self.balance_loss_weight: dict[str, float] = {}
        self.mhlora_A = nn.ParameterDict()
        self.mhlora_B = nn.ParameterDict()
        self.mhlora_router = nn.ModuleDict()
        self.mhlora_dropout = nn.ModuleDict()
        # The balance loss of the last forward pass, for `balance_loss`.
        self.balance_loss: torch.Tensor | None = None
        self.kwargs = kwargs
        base = self.get_base_layer()
        if isinstance(base, nn.Linear):
            self.in_features, self.out_features = base.in_features, base.out_features
        elif isinstance(base, Conv1D):  # GPT-2's linear layers, weight [in, out]
            self.in_features, self.out_features = base.weight.shape
        else:
            raise TypeError(f"Multi-head LoRA adapts nn.Linear and transformers' Conv1D layers, not {type(base).__name__}.")

    def update_layer(self, adapter_name: str, config: MultiHeadLoraConfig, inference_mode: bool = False, **kwargs: Any) -> None:
        self.r[adapter_name] = config.r
        self.num_heads[adapter_name] = config.num_heads
        self.scaling[adapter_name] = config.lora_alpha / config.r
        self.router_kind[adapter_name] = config.router
        self.balance_loss_weight[adapter_name] = config.balance_loss_weight
        self.mhlora_A[adapter_name] = nn.Parameter(torch.empty(config.r, self.in_features))
        self.mhlora_B[adapter_name] = nn.Parameter(torch.empty(config.num_heads, self.out_features, config.r))
        token_router = nn.Linear(self.in_features, config.num_heads) if config.router != "task" else None
        task_router = nn.Embedding(config.num_tasks, config.num_heads) if config.router != "token" else None
        self.mhlora_router[adapter_name] = (
            nn.ModuleDict({"task": task_router, "token": token_router}) if config.router == "task_or_token"
            else token_router or task_router
        )
        self.mhlora_dropout[adapter_name] = nn.Dropout(config.lora_dropout) if config.lora_dropout else nn.Identity()
        self.reset_parameters(adapter_name, config.head_init, config.router_init)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=inference_mode)

    @torch.no_grad()
    def reset_parameters(self, adapter_name: str, head_init: str, router_init: str = "random") -> None:
        """A as LoRA's (Kaiming uniform), heads at zero or Kaiming uniform, and the router at random (a token
        router as ``nn.Linear`` with a zero bias, a task router's logits from N(0, 1)) or at zero (every
        head 1/N)."""
        nn.init.kaiming_uniform_(self.mhlora_A[adapter_name], a=math.sqrt(5))
        heads = self.mhlora_B[adapter_name]
        if head_init == "zeros":
            nn.init.zeros_(heads)
        else:
            for head in heads:
                nn.init.kaiming_uniform_(head, a=math.sqrt(5))
        for parameter in self.mhlora_router[adapter_name].parameters():
            nn.init.zeros_(parameter)
        if router_init == "random":
            if self.token_router(adapter_name) is not None:
                nn.init.kaiming_uniform_(self.token_router(adapter_name).weight, a=math.sqrt(5))
            if self.task_router(adapter_name) is not None:
                nn.init.normal_(self.task_router(adapter_name).weight)

    def task_router(self, adapter_name: str) -> nn.Embedding | None:
        """The task router (a row of head logits per task), or ``None`` for a token router."""
        router = self.mhlora_router[adapter_name]
        if isinstance(router, nn.ModuleDict):
            return router["task"]
        return router if isinstance(router, nn.Embedding) else None

    def token_router(self, adapter_name: str) -> nn.Linear | None:
        """The token router (head logits from each token's input), or ``None`` for a task router."""
        router = self.mhlora_router[adapter_name]
        if isinstance(router, nn.ModuleDict):
            return router["token"]
        return router if isinstance(router, nn.Linear) else None

    def head_weights(self, adapter_name: str, inputs: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        """The router's softmax over heads: ``[..., N]`` per token, ``[B, 1, ..., 1, N]`` per task; for
        ``"task_or_token"``, the task's row for an example with a task id (>= 0), the token's otherwise."""
        kind = self.router_kind[adapter_name]
        token_router, task_router = self.token_router(adapter_name), self.task_router(adapter_name)
        if kind == "token" or (kind == "task_or_token" and task_ids is None):
            return torch.softmax(token_router(inputs.to(token_router.weight.dtype)), dim=-1)
        if task_ids is None:
            raise ValueError("This multi-head LoRA routes by task: pass task_ids (see moezoo.adapters.TaskRouting).")
        # Shape only: the values were checked once for the batch (`TaskRouting.set`), not again per layer.
        check_task_ids(task_ids, task_router.num_embeddings, inputs.shape[0], check_values=False)
        shape = (inputs.shape[0], *[1] * (inputs.dim() - 2), -1)
        by_task = torch.softmax(task_router(task_ids.clamp_min(0)), dim=-1).view(shape)
        if kind == "task":
            return by_task
        by_token = torch.softmax(token_router(inputs.to(token_router.weight.dtype)), dim=-1)
        return torch.where((task_ids >= 0).view(shape), by_task, by_token)

    def delta_weight(self, adapter_name: str, head_weights: torch.Tensor) -> torch.Tensor:
        """``scaling * sum_i g_i B_i A`` (``[out, in]``) for fixed head weights ``g`` (``[N]``)."""
        mixed = torch.einsum("n,nor->or", head_weights.to(self.mhlora_B[adapter_name].dtype), self.mhlora_B[adapter_name])
        return self.scaling[adapter_name] * mixed @ self.mhlora_A[adapter_name]


class MultiHeadLoraLinear(nn.Module, MultiHeadLoraLayer):
    """A linear layer (or GPT-2 Conv1D) with multi-head LoRA adapters."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: MultiHeadLoraConfig, **kwargs: Any) -> None:
        super().__init__()
        MultiHeadLoraLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def forward(self, x: torch.Tensor, *args: Any, task_ids: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        self.balance_loss = None
        if self.disable_adapters:
            return result
        for adapter_name in self.active_adapters:
            if adapter_name not in self.mhlora_A:
                continue
            A, heads = self.mhlora_A[adapter_name], self.mhlora_B[adapter_name]
            weights = self.head_weights(adapter_name, x, task_ids)
            projected = F.linear(self.mhlora_dropout[adapter_name](x).to(A.dtype), A)  # [..., r]
            # Each head's share of the rank-r projection, then all heads in one matmul ([..., N*r] x [N*r, out]).
            per_head = (weights.to(A.dtype).unsqueeze(-1) * projected.unsqueeze(-2)).flatten(-2)
            stacked = heads.permute(1, 0, 2).reshape(self.out_features, -1)
            result = result + (self.scaling[adapter_name] * F.linear(per_head, stacked)).to(result.dtype)
            weight = self.balance_loss_weight[adapter_name]
            if weight and self.training and self.router_kind[adapter_name] != "task":
                importance = weights.reshape(-1, weights.shape[-1]).mean(0)
                loss = weight * cv_squared(importance)
                self.balance_loss = loss if self.balance_loss is None else self.balance_loss + loss
        return result

    def __repr__(self) -> str:
        return "multi_head_lora." + super().__repr__()


class MultiHeadLoraModel(BaseTuner):
    """The PEFT tuner that replaces targeted linear layers by `MultiHeadLoraLinear`."""

    prefix: str = PREFIX
    tuner_layer_cls = MultiHeadLoraLayer
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    def _create_and_replace(
        self,
        config: MultiHeadLoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        **optional_kwargs: Any,
    ) -> None:
        if isinstance(target, MultiHeadLoraLayer):
            target.update_layer(adapter_name, config)
            return
        new_module = MultiHeadLoraLinear(target, adapter_name, config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an added adapter is not trained until it is made active
        self._replace_module(parent, target_name, new_module, target)


def balance_loss(model: nn.Module) -> torch.Tensor | None:
    """The sum of the balance losses of ``model``'s multi-head LoRA layers from its last forward pass
    (``None`` when none computed one: no weight set, evaluation mode, or task routing)."""
    losses = [
        module.balance_loss for module in model.modules()
        if isinstance(module, MultiHeadLoraLayer) and module.balance_loss is not None
    ]
    return torch.stack(losses).sum() if losses else None


def register_multi_head_lora() -> None:
    """Register the tuner in PEFT's mapping tables (idempotent), so that ``get_peft_model`` builds it and
    ``PeftModel.from_pretrained`` / ``PeftConfig.from_pretrained`` read its saved adapters."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    PEFT_TYPE_TO_CONFIG_MAPPING[MULTI_HEAD_LORA] = MultiHeadLoraConfig
    PEFT_TYPE_TO_TUNER_MAPPING[MULTI_HEAD_LORA] = MultiHeadLoraModel
    PEFT_TYPE_TO_PREFIX_MAPPING[MULTI_HEAD_LORA] = PREFIX
