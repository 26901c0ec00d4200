import pytest
import torch
import torch.nn.functional as F

import moezoo
from moezoo.models.image_encoder import ConvImageEncoder, ImageEncoderSpec

MULTI_TASKS = [
    {"name": "top_left", "kind": "multiclass", "num_labels": 10},
    {"name": "bottom_right", "kind": "multiclass", "num_labels": 10},
]


def test_encoder_is_the_lenet_bottom():
    spec = ImageEncoderSpec()
    assert spec.feature_map_size == 6  # 36 -conv5-> 32 -pool-> 16 -conv5-> 12 -pool-> 6
    encoder = ConvImageEncoder(spec)
    x = torch.rand(3, 1, 36, 36)
    conv1, conv2 = encoder.blocks[0], encoder.blocks[3]
    hidden = F.max_pool2d(F.relu(F.conv2d(x, conv1.weight, conv1.bias)), 2)
    hidden = F.max_pool2d(F.relu(F.conv2d(hidden, conv2.weight, conv2.bias)), 2)
    expected = F.relu(hidden.flatten(1) @ encoder.projection.weight.T + encoder.projection.bias)
    torch.testing.assert_close(encoder(x), expected)
    assert expected.shape == (3, 50)


def test_image_model_round_trip_and_bad_inputs(tmp_path):
    model = moezoo.create_model("dselect_k", tasks=MULTI_TASKS, image_encoder={"conv_channels": [4, 8]}).eval()
    assert model.config.input_size == 50
    x = torch.rand(5, 1, 36, 36)
    model.save_pretrained(tmp_path)
    loaded = moezoo.DSelectKModel.from_pretrained(tmp_path)
    for task, logits in model(pixel_values=x).logits.items():
        assert torch.equal(loaded(pixel_values=x).logits[task], logits)
    with pytest.raises(ValueError, match=r"pixel_values must be \[batch, 1, 36, 36\]"):
        model(pixel_values=torch.rand(5, 36, 36))
    with pytest.raises(ValueError, match="pass pixel_values"):
        model(numeric_features=torch.rand(5, 2))
    with pytest.raises(ValueError, match="cannot read pixel_values"):
        moezoo.create_model("mmoe", input_size=4)(pixel_values=x)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_encoder={"image_size": 8}), "too small"),
        (dict(image_encoder={"channels": [3]}), "Unknown image encoder field"),
        (dict(image_encoder={}, input_size=7), "disagrees with the image encoder"),
        (dict(image_encoder={}, features={"numeric": ["a"]}), "not both"),
    ],
)
def test_bad_image_configs_are_named(overrides, message):
    with pytest.raises(Exception, match=message):
        moezoo.MMoEConfig(**overrides)


def test_training_on_multi_fashion_lowers_the_loss(data_dir):
    from moezoo.data import load_multi_mnist

    data = load_multi_mnist(data_dir, dataset="fashion-mnist")["train"][:512]
    model = moezoo.create_model("mmoe", tasks=MULTI_TASKS, image_encoder={}, num_shared_experts=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        rows = slice(128 * (step % 4), 128 * (step % 4 + 1))
        loss = model(pixel_values=data["pixel_values"][rows], labels=data["labels"][rows]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
