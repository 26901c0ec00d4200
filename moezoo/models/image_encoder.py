"""A small convolutional bottom that turns images into the dense vector a model body reads.

The DSelect-k paper's MultiMNIST models put their experts and gates on the features of a shared
LeNet-style CNN: per block ``Conv(kernel) -> ReLU -> MaxPool(2)``, then a linear layer and ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..specs import DictSpec


@dataclass
class ImageEncoderSpec(DictSpec):
    """Shape of `ConvImageEncoder`, stored in a model config as a dict.

    Attributes:
        image_size: Height and width of the (square) input images.
        num_channels: Input channels.
        conv_channels: Output channels of each convolution block.
        kernel_size: Kernel size of every convolution (no padding).
        output_size: Size of the encoded vector.
    """

    image_size: int = 36
    num_channels: int = 1
    conv_channels: list[int] = field(default_factory=lambda: [10, 20])
    kernel_size: int = 5
    output_size: int = 50

    spec_name: ClassVar[str] = "image encoder"

    def __post_init__(self) -> None:
        if not self.conv_channels or any(c < 1 for c in self.conv_channels):
            raise ValueError(f"conv_channels must be a non-empty list of positive sizes, got {self.conv_channels}.")
        if min(self.image_size, self.num_channels, self.kernel_size, self.output_size) < 1:
            raise ValueError(f"Image encoder sizes must be positive, got {self}.")
        if self.feature_map_size < 1:
            raise ValueError(
                f"A {self.image_size}x{self.image_size} image is too small for {len(self.conv_channels)} blocks of "
                f"{self.kernel_size}x{self.kernel_size} convolution and 2x2 pooling."
            )

    @property
    def feature_map_size(self) -> int:
        """Side of the last block's feature map."""
        size = self.image_size
        for _ in self.conv_channels:
            size = (size - self.kernel_size + 1) // 2
        return size



class ConvImageEncoder(nn.Module):
    """``[B, C, S, S]`` images -> ``[B, output_size]`` features (see `ImageEncoderSpec`)."""

    def __init__(self, spec: ImageEncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        blocks: list[nn.Module] = []
        channels = spec.num_channels
        for out_channels in spec.conv_channels:
            blocks += [nn.Conv2d(channels, out_channels, spec.kernel_size), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.projection = nn.Linear(channels * spec.feature_map_size**2, spec.output_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        expected = (spec.num_channels, spec.image_size, spec.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(f"pixel_values must be [batch, {', '.join(map(str, expected))}], got {list(pixel_values.shape)}.")
        if not pixel_values.is_floating_point():
            raise TypeError(f"pixel_values must be a float tensor, got {pixel_values.dtype}.")
        return torch.relu(self.projection(self.blocks(pixel_values).flatten(1)))
