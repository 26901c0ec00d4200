"""`TabularProcessor`: raw rows in, model tensors out; fitted on training data, saved with the model."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .schema import OUT_OF_VOCABULARY_INDEX, CategoricalFeature, FeatureSchema

#: Share of a batch's values of one categorical feature, above which unseen values draw a warning.
OUT_OF_VOCABULARY_WARNING_RATE = 0.1
#: Distance from a numeric feature's training mean, in its training standard deviations, beyond which a
#: value draws a warning (the heaviest tail of Census-Income's training data reaches about 50).
OUT_OF_RANGE_WARNING_STDS = 100.0

RawRows = pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]


def rows_to_frame(rows: RawRows) -> pd.DataFrame:
    """Accept a DataFrame, a list of row dicts, a dict of columns (a `datasets` batch), or one row as a
    dict of single values."""
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, Mapping):
        if rows and all(np.ndim(value) == 0 for value in rows.values()):
            return pd.DataFrame([dict(rows)])
        return pd.DataFrame(dict(rows))
    if isinstance(rows, Sequence) and all(isinstance(row, Mapping) for row in rows):
        return pd.DataFrame.from_records(list(rows))
    raise TypeError(
        f"Raw rows must be a pandas DataFrame, a list of dicts or a dict of columns, got {type(rows).__name__}."
    )


class TabularProcessor(FeatureExtractionMixin):
    """Turns raw tabular rows into ``numeric_features``, ``categorical_features`` and ``labels``.

    Fit it on the training split with `TabularProcessor.fit`: it learns each numeric column's mean and
    standard deviation and each categorical column's vocabulary (values seen in training; anything
    else maps to the out-of-vocabulary index 0). `save_pretrained` writes it as
    ``preprocessor_config.json`` beside the model; `from_pretrained` (or
    ``transformers.AutoFeatureExtractor`` after ``import moezoo``) restores it.

    Example:
        >>> processor = TabularProcessor.fit(train_df, numeric_features=["age"], categorical_features=["sex"],
        ...                                  label_columns=["income"])
        >>> batch = processor(rows, return_tensors="pt")  # doctest: +SKIP
    """

    model_input_names = ["numeric_features", "categorical_features"]

    def __init__(
        self,
        numeric_features: Sequence[str] = (),
        categorical_features: Sequence[str] = (),
        vocabularies: Mapping[str, Sequence[str]] | None = None,
        numeric_mean: Sequence[float] | None = None,
        numeric_std: Sequence[float] | None = None,
        embedding_dims: Mapping[str, int] | None = None,
        label_columns: Sequence[str] = (),
        value_kinds: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.numeric_features = list(numeric_features)
        self.categorical_features = list(categorical_features)
        self.vocabularies = {name: list(values) for name, values in (vocabularies or {}).items()}
        self.numeric_mean = list(numeric_mean) if numeric_mean is not None else [0.0] * len(self.numeric_features)
        self.numeric_std = list(numeric_std) if numeric_std is not None else [1.0] * len(self.numeric_features)
        self.embedding_dims = dict(embedding_dims or {})
        self.label_columns = list(label_columns)
        self.value_kinds = dict(value_kinds or {})
        leaks = sorted(set(self.label_columns) & {*self.numeric_features, *self.categorical_features})
        if leaks:
            raise ValueError(
                f"Column(s) {leaks} are both labels and input features: the model would read its own labels. "
                "Remove them from the features."
            )
        missing_vocab = [name for name in self.categorical_features if name not in self.vocabularies]
        if missing_vocab:
            raise ValueError(f"No vocabulary for categorical feature(s) {missing_vocab}; fit the processor first.")
        if not (len(self.numeric_mean) == len(self.numeric_std) == len(self.numeric_features)):
            raise ValueError("numeric_mean and numeric_std must have one entry per numeric feature.")
        if any(std <= 0 for std in self.numeric_std):
            raise ValueError("numeric_std entries must be positive.")

    @classmethod
    def fit(
        cls,
        rows: RawRows,
        numeric_features: Sequence[str],
        categorical_features: Sequence[str],
        label_columns: Sequence[str] = (),
        embedding_dim: int | Mapping[str, int] = 8,
    ) -> TabularProcessor:
        """Learn vocabularies and numeric statistics from training rows.

        Args:
            rows: Training rows.
            numeric_features: Columns standardised to zero mean and unit variance.
            categorical_features: Columns mapped to vocabulary indices (values compared as strings).
            label_columns: Columns that hold the tasks' labels, in task order.
            embedding_dim: Embedding size of every categorical feature, or a mapping per feature
                (features it omits get 8).
        """
        frame = rows_to_frame(rows)
        if len(frame) == 0:
            raise ValueError("Cannot fit a TabularProcessor on 0 rows: there are no values to learn vocabularies and means from.")
        _require_columns(frame, [*numeric_features, *categorical_features], "fit the processor")
        _require_categories(frame, categorical_features)
        numeric = _numeric_matrix(frame, numeric_features)
        std = numeric.std(axis=0)
        vocabularies = {
            name: sorted(frame[name].astype(str).unique().tolist()) for name in categorical_features
        }
        if isinstance(embedding_dim, Mapping):
            dims = {name: int(embedding_dim.get(name, 8)) for name in categorical_features}
        else:
            dims = {name: int(embedding_dim) for name in categorical_features}
        return cls(
            numeric_features=numeric_features,
            categorical_features=categorical_features,
            vocabularies=vocabularies,
            numeric_mean=numeric.mean(axis=0).tolist(),
            # A constant column is centred, not scaled.
            numeric_std=np.where(std > 0, std, 1.0).tolist(),
            embedding_dims=dims,
            label_columns=label_columns,
            value_kinds={name: value_kind(frame[name]) for name in categorical_features},
        )

    @property
    def feature_schema(self) -> FeatureSchema:
        """The schema to store in the model config (`config.features`)."""
        return FeatureSchema(
            numeric=tuple(self.numeric_features),
            categorical=tuple(
                CategoricalFeature(name, len(self.vocabularies[name]) + 1, self.embedding_dims.get(name, 8))
                for name in self.categorical_features
            ),
        )

    def __call__(self, rows: RawRows, return_tensors: str | None = "pt", require_labels: bool = False) -> BatchFeature:
        """Encode raw rows.

        Labels are returned as ``labels [B, len(label_columns)]`` when the rows hold the label
        columns (missing values become NaN); with ``require_labels=True`` their absence is an error.
        """
        frame = rows_to_frame(rows)
        _require_columns(frame, [*self.numeric_features, *self.categorical_features], "encode these rows")
        _require_categories(frame, self.categorical_features)
        raw_numeric = _numeric_matrix(frame, self.numeric_features)
        numeric = (raw_numeric - np.asarray(self.numeric_mean)) / np.asarray(self.numeric_std)
        self._warn_out_of_range(raw_numeric, numeric)
        categorical = np.stack(
            [self._encode_categorical(frame[name], name) for name in self.categorical_features], axis=1
        ) if self.categorical_features else np.zeros((len(frame), 0), dtype=np.int64)
        data = {
            "numeric_features": numeric.astype(np.float32),
            "categorical_features": categorical.astype(np.int64),
        }
        present_labels = [name for name in self.label_columns if name in frame.columns]
        if present_labels or require_labels:
            _require_columns(frame, self.label_columns, "read the labels")
            data["labels"] = _label_matrix(frame, self.label_columns)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def with_label_columns(self, label_columns: Sequence[str]) -> TabularProcessor:
        """This processor, reading ``label_columns`` as labels (for a checkpoint fine-tuned on other tasks)."""
        return type(self)(
            numeric_features=self.numeric_features, categorical_features=self.categorical_features,
            vocabularies=self.vocabularies, numeric_mean=self.numeric_mean, numeric_std=self.numeric_std,
            embedding_dims=self.embedding_dims, label_columns=label_columns, value_kinds=self.value_kinds,
        )

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """`FeatureExtractionMixin.save_pretrained`, refusing a folder whose saved model reads other
        features than this processor produces (the pair would load and silently mis-encode)."""
        config_file = Path(save_directory) / "config.json"
        if config_file.is_file():
            model_features = json.loads(config_file.read_text()).get("features")
            if model_features is not None and model_features != self.feature_schema.to_dict():
                raise ValueError(
                    f"The model saved in {save_directory} reads other features than this processor produces "
                    f"(its config.json 'features' differ from this processor's feature_schema); save the processor "
                    "beside the model it was fitted for, or save the model first."
                )
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _warn_out_of_range(self, raw: np.ndarray, standardised: np.ndarray) -> None:
        """Warn, by feature, about values further than `OUT_OF_RANGE_WARNING_STDS` training standard
        deviations from the training mean: the model never saw them, and its outputs there saturate."""
        far = np.abs(standardised) > OUT_OF_RANGE_WARNING_STDS
        for index in np.flatnonzero(far.any(axis=0)):
            rows = np.flatnonzero(far[:, index])
            first = rows[0]
            warnings.warn(
                f"Numeric feature {self.numeric_features[index]!r} holds values more than {OUT_OF_RANGE_WARNING_STDS:g} "
                f"training standard deviations from its training mean in {len(rows)} row(s) (first at position "
                f"{first}: {raw[first, index]:g}, {abs(standardised[first, index]):.3g} standard deviations away; "
                f"training mean {self.numeric_mean[index]:.4g}, standard deviation {self.numeric_std[index]:.4g}). The "
                "model never saw such values and its predictions there saturate: check units and typos.",
                UserWarning,
                stacklevel=3,
            )

    def _encode_categorical(self, column: pd.Series, name: str) -> np.ndarray:
        codes = pd.Index(self.vocabularies[name]).get_indexer(column.astype(str)).astype(np.int64)
        expected_kind = self.value_kinds.get(name)
        # Values are compared as text, so another type only matters when it leaves values unseen
        # (32.0 is not '32'; 94 read from a CSV still is '94').
        if expected_kind is not None and (codes < 0).any() and value_kind(column) not in (expected_kind, "empty"):
            warnings.warn(
                f"Categorical feature {name!r} holds {value_kind(column)} values, but its vocabulary was fitted on "
                f"{expected_kind} values (e.g. {self.vocabularies[name][:3]}): values are compared as text, so "
                "32.0 does not match '32'. Convert the column to the fitted type.",
                UserWarning,
                stacklevel=3,
            )
        unseen = float((codes < 0).mean()) if len(codes) else 0.0
        if unseen > OUT_OF_VOCABULARY_WARNING_RATE:
            examples = column[codes < 0].astype(str).unique()[:3].tolist()
            warnings.warn(
                f"{unseen:.0%} of the values of categorical feature {name!r} are not in its vocabulary (e.g. "
                f"{examples}; fitted values look like {self.vocabularies[name][:3]}). Check the column's type and "
                "whitespace (a CSV read without skipinitialspace=True keeps leading spaces).",
                UserWarning,
                stacklevel=3,
            )
        # get_indexer gives -1 for unseen values: shift so that 0 is the out-of-vocabulary index.
        return np.where(codes < 0, OUT_OF_VOCABULARY_INDEX, codes + 1)


def value_kind(column: pd.Series) -> str:
    """The kind of values a column holds, as pandas infers it: ``"string"``, ``"integer"``,
    ``"floating"``, ``"boolean"``, ``"mixed"``, ... (``"empty"`` when all are missing)."""
    return pd.api.types.infer_dtype(column, skipna=True)


def _label_matrix(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    # Missing labels stay NaN: the losses and metrics mask them.
    return _float_columns(frame, columns, "Label column", np.float32)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], purpose: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise KeyError(f"Column(s) {missing} are missing from the rows; they are needed to {purpose}.")


def _numeric_matrix(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    matrix = _float_columns(frame, columns, "Numeric feature", np.float64)
    _refuse_bad_values(~np.isfinite(matrix), columns, "Numeric feature(s)", "NaN or inf")
    return matrix


def _require_categories(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """A missing value (NaN, None) in a categorical column is an error, as in a numeric one: read as text it
    would become the category 'nan', or an unknown one, without a word."""
    if columns:
        _refuse_bad_values(frame[list(columns)].isna().to_numpy(), columns, "Categorical feature(s)", "missing values (NaN or None)")


def _refuse_bad_values(bad: np.ndarray, columns: Sequence[str], what: str, values: str) -> None:
    """A `ValueError` naming the columns and the first rows where ``bad`` (rows x columns) holds."""
    if bad.any():
        columns_with_bad = [columns[i] for i in np.flatnonzero(bad.any(axis=0))]
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{what} {columns_with_bad} hold {values} in {len(rows)} row(s) (first at position(s) "
            f"{rows[:5].tolist()}); clean or impute them before encoding."
        )


def _float_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, dtype: type) -> np.ndarray:
    """``frame[columns]`` as a float matrix; a `ValueError` naming the column (and, from pandas, the
    position) of the first value that is not a number. Missing values become NaN."""
    matrix = np.empty((len(frame), len(columns)), dtype=dtype)
    for i, name in enumerate(columns):
        try:
            matrix[:, i] = pd.to_numeric(frame[name], errors="raise").to_numpy(dtype=dtype, na_value=np.nan)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{what} {name!r} holds a non-numeric value: {error}") from error
    return matrix
