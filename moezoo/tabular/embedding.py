"""Turns processed tabular features into the dense vector a model body reads."""

from __future__ import annotations

import torch
from torch import nn

from ..constants import register_constant

from .schema import FeatureSchema


class TabularEmbedding(nn.Module):
    """Concatenates standardised numeric features with learned categorical embeddings.

    Categorical features sharing an embedding size share one table, indexed with per-feature
    offsets, so a schema whose features all have the same size costs one lookup.

    Shapes: ``numeric_features [B, n_numeric]`` float, ``categorical_features [B, n_categorical]``
    long (indices from `TabularProcessor`) -> ``[B, schema.output_size]``.
    """

    def __init__(self, schema: FeatureSchema) -> None:
        super().__init__()
        self.schema = schema
        self.num_numeric = len(schema.numeric)
        self.num_categorical = len(schema.categorical)
        register_constant(self, "vocab_sizes", [feature.vocab_size for feature in schema.categorical], torch.long)

        dims = sorted({feature.embedding_dim for feature in schema.categorical})
        self.tables = nn.ModuleDict()
        for dim in dims:
            columns = [i for i, feature in enumerate(schema.categorical) if feature.embedding_dim == dim]
            sizes = [schema.categorical[i].vocab_size for i in columns]
            key = f"dim_{dim}"
            self.tables[key] = nn.Embedding(sum(sizes), dim)
            register_constant(self, f"{key}_offsets", [sum(sizes[:i]) for i in range(len(sizes))], torch.long)
            register_constant(self, f"{key}_columns", columns, torch.long)

    def forward(
        self,
        numeric_features: torch.Tensor | None = None,
        categorical_features: torch.Tensor | None = None,
        check_values: bool = True,
    ) -> torch.Tensor:
        numeric_features, categorical_features = self.checked_inputs(
            numeric_features, categorical_features, check_values
        )
        parts = [numeric_features] if self.num_numeric else []
        if self.num_categorical:
            for key, table in self.tables.items():
                columns = getattr(self, f"{key}_columns")
                if len(columns) == self.num_categorical:
                    indices = categorical_features
                else:
                    indices = categorical_features.index_select(1, columns)
                embedded = table(indices + getattr(self, f"{key}_offsets"))  # [B, n_group, dim]
                parts.append(embedded.flatten(1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def checked_inputs(
        self,
        numeric_features: torch.Tensor | None,
        categorical_features: torch.Tensor | None,
        check_values: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Check a batch's features and return them (categorical indices as int64).

        Shapes, dtypes and the agreement of the two batch sizes are always checked, at a cost that does
        not grow with the batch. With ``check_values`` also the values (`check_values`), which callers
        skip for data they checked once.
        """
        if self.num_numeric:
            numeric_features = self._checked_numeric(numeric_features)
        if self.num_categorical:
            categorical_features = self._checked_categorical(categorical_features)
        if self.num_numeric and self.num_categorical and len(numeric_features) != len(categorical_features):
            raise ValueError(
                f"numeric_features has {len(numeric_features)} rows but categorical_features has "
                f"{len(categorical_features)}; both must describe the same examples."
            )
        if check_values:
            self.check_values(numeric_features, categorical_features)
        return numeric_features, categorical_features

    def check_values(self, numeric_features: torch.Tensor | None, categorical_features: torch.Tensor | None) -> None:
        """Raise a `ValueError` naming the features that hold NaN / inf or an index outside the vocabulary
        (inputs as returned by `checked_inputs`)."""
        if self.num_numeric:
            finite = torch.isfinite(numeric_features).all(dim=0)
            if not finite.all():
                bad = [self.schema.numeric[i] for i in (~finite).nonzero().flatten().tolist()]
                raise ValueError(f"numeric_features contain NaN or inf in feature(s) {bad}.")
        if self.num_categorical:
            in_range = ((categorical_features >= 0) & (categorical_features < self.vocab_sizes)).all(dim=0)
            if not in_range.all():
                names = [feature.name for feature in self.schema.categorical]
                bad = [names[i] for i in (~in_range).nonzero().flatten().tolist()]
                raise ValueError(f"categorical_features hold indices outside the vocabulary of feature(s) {bad}.")

    def _checked_numeric(self, numeric_features: torch.Tensor | None) -> torch.Tensor:
        if numeric_features is None:
            raise ValueError(f"numeric_features is required: the schema has numeric features {list(self.schema.numeric)}.")
        if numeric_features.dim() != 2 or numeric_features.shape[1] != self.num_numeric:
            raise ValueError(
                f"numeric_features must be [batch, {self.num_numeric}], got {list(numeric_features.shape)}."
            )
        if not numeric_features.is_floating_point():
            raise TypeError(f"numeric_features must be a float tensor, got {numeric_features.dtype}.")
        return numeric_features

    def _checked_categorical(self, categorical_features: torch.Tensor | None) -> torch.Tensor:
        if categorical_features is None:
            names = [feature.name for feature in self.schema.categorical]
            raise ValueError(f"categorical_features is required: the schema has categorical features {names}.")
        if categorical_features.dim() != 2 or categorical_features.shape[1] != self.num_categorical:
            raise ValueError(
                f"categorical_features must be [batch, {self.num_categorical}], got {list(categorical_features.shape)}."
            )
        if categorical_features.is_floating_point() or categorical_features.dtype == torch.bool:
            raise TypeError(f"categorical_features must be an integer tensor, got {categorical_features.dtype}.")
        return categorical_features.long()
