"""Tabular inputs: the feature schema (config), the processor (raw rows -> tensors), the embedding layer."""

from .embedding import TabularEmbedding
from .processor import TabularProcessor, rows_to_frame
from .schema import OUT_OF_VOCABULARY_INDEX, CategoricalFeature, FeatureSchema

__all__ = [
    "OUT_OF_VOCABULARY_INDEX",
    "CategoricalFeature",
    "FeatureSchema",
    "TabularEmbedding",
    "TabularProcessor",
    "rows_to_frame",
]
