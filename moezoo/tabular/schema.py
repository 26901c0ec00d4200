"""The feature schema of a tabular model: what the model config records about its inputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..specs import reject_unknown_fields

OUT_OF_VOCABULARY_INDEX = 0


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical input column.

    Args:
        name: Column name.
        vocab_size: Number of embedding rows, index 0 (out-of-vocabulary) included.
        embedding_dim: Size of the learned embedding.
    """

    name: str
    vocab_size: int
    embedding_dim: int = 8

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(
                f"Categorical feature {self.name!r} needs vocab_size >= 2 (out-of-vocabulary index and one "
                f"category), got {self.vocab_size}."
            )
        if self.embedding_dim < 1:
            raise ValueError(f"Categorical feature {self.name!r} needs embedding_dim >= 1, got {self.embedding_dim}.")


@dataclass(frozen=True)
class FeatureSchema:
    """Numeric and categorical input columns, in the order the model reads them."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[CategoricalFeature, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(
            self,
            "categorical",
            tuple(c if isinstance(c, CategoricalFeature) else CategoricalFeature(**c) for c in self.categorical),
        )
        names = self.feature_names
        if not names:
            raise ValueError("A feature schema needs at least one numeric or categorical feature.")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"Feature(s) {duplicates} appear more than once in the feature schema.")

    @property
    def feature_names(self) -> list[str]:
        return [*self.numeric, *(feature.name for feature in self.categorical)]

    @property
    def output_size(self) -> int:
        """Size of the dense vector the embedding layer produces."""
        return len(self.numeric) + sum(feature.embedding_dim for feature in self.categorical)

    def to_dict(self) -> dict:
        return {
            "numeric": list(self.numeric),
            "categorical": [
                {"name": c.name, "vocab_size": c.vocab_size, "embedding_dim": c.embedding_dim} for c in self.categorical
            ],
        }

    @classmethod
    def from_dict(cls, schema: Mapping | FeatureSchema) -> FeatureSchema:
        if isinstance(schema, FeatureSchema):
            return schema
        reject_unknown_fields("feature schema", schema, ("numeric", "categorical"))
        return cls(numeric=schema.get("numeric", ()), categorical=schema.get("categorical", ()))
