"""Task ids reach every adapted layer of a foreign model, through gradient checkpointing and generate()."""

import pytest
import torch
from peft import PolyConfig, get_peft_model
from peft.tuners.poly.layer import Linear as PolyLinear
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

from moezoo.adapters import TaskRouting


def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    return BertModel(config)


def poly(model, target_modules):
    config = PolyConfig(target_modules=target_modules, n_tasks=3, n_skills=4, n_splits=2, r=2, init_weights=False)
    return get_peft_model(model, config)


def gradients(model, inputs, routing=None, task_ids=None):
    model.zero_grad()
    if routing is not None:
        routing.set(task_ids)
        output = model(**inputs)
    else:  # PEFT's own way: PolyModel.forward hooks the ids in for the duration of the call
        output = model.base_model(**inputs, task_ids=task_ids)
    output.last_hidden_state.pow(2).sum().backward()
    return output.last_hidden_state.detach(), {
        name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None
    }


def test_task_ids_survive_gradient_checkpointing_where_peft_poly_loses_them():
    model = poly(tiny_bert(), ["query", "value"]).eval()  # eval: the router's sample is deterministic
    inputs = {"input_ids": torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(1))}
    task_ids = torch.tensor([0, 2, 1, 2])
    reference, reference_grads = gradients(model, inputs, task_ids=task_ids)  # PEFT's own path, no recomputation

    model.base_model.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.base_model.model.train()  # checkpointing recomputes in training mode only
    model.base_model.model.embeddings.dropout.p = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for module in model.modules():
        if hasattr(module, "poly_router"):
            module.poly_router.eval()  # the same (sigmoid) mixing as the reference
    # PEFT's hooks are gone when backward recomputes the block.
    with pytest.raises(ValueError, match="task_ids should not be None"):
        gradients(model, inputs, task_ids=task_ids)

    routing = TaskRouting(num_tasks=3)
    reached = routing.attach(model, PolyLinear)
    assert len(reached) == 4  # query and value of both layers
    output, grads = gradients(model, inputs, routing, task_ids)
    torch.testing.assert_close(output, reference)
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], msg=name)


def test_task_ids_follow_generate_and_bad_ids_are_named():
    torch.manual_seed(0)
    decoder = LlamaForCausalLM(
        LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    )
    model = poly(decoder, ["q_proj", "v_proj"]).eval()  # PEFT's Poly adapts nn.Linear only (not GPT-2's Conv1D)
    routing = TaskRouting(num_tasks=3)
    routing.attach(model, PolyLinear)
    prompts = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(2))
    task_ids = torch.tensor([2, 0])
    routing.set(task_ids)
    beams = model.generate(input_ids=prompts, max_new_tokens=4, num_beams=3, do_sample=False, pad_token_id=0)
    for row in range(2):  # each prompt alone, with its own task, gives the same continuation
        routing.set(task_ids[row : row + 1])
        alone = model.generate(input_ids=prompts[row : row + 1], max_new_tokens=4, num_beams=3, do_sample=False, pad_token_id=0)
        assert torch.equal(alone[0], beams[row, : alone.shape[1]])  # the batch pads a finished row
    logits = []
    for task in (0, 2):  # the ids matter: another task, other logits
        routing.set(torch.tensor([task]))
        logits.append(model(input_ids=prompts[:1]).logits)
    assert not torch.allclose(logits[0], logits[1])
    routing.set(None)
    with pytest.raises(ValueError, match="routes each example by its task: pass task_ids"):
        model(input_ids=prompts)
    with pytest.raises(ValueError, match=r"task_ids \[3\] are out of range"):
        routing.set(torch.tensor([0, 3]))
    routing.detach()
    with pytest.raises(ValueError, match="task_ids should not be None"):  # PEFT's own error once detached
        model.base_model(input_ids=prompts)


def test_an_unknown_task_raises_or_uses_the_average_of_the_skills():
    model = poly(tiny_bert(), ["query", "value"]).eval()
    inputs = {"input_ids": torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))}
    strict = TaskRouting(num_tasks=3)
    strict.attach(model, PolyLinear)
    with pytest.raises(ValueError, match=r"task_ids \[5\] are out of range: this model has 3 tasks"):
        strict.set(torch.tensor([1, 5]))
    strict.detach()

    averaging = TaskRouting(num_tasks=3, unknown_tasks="average")
    averaging.attach(model, PolyLinear)
    averaging.set(torch.tensor([1, 5]))
    mixed = model(**inputs).last_hidden_state
    averaging.set(torch.tensor([1, 1]))
    known = model(**inputs).last_hidden_state
    torch.testing.assert_close(mixed[0], known[0])  # the known task is untouched
    # The unknown task equals a task whose skill logits are all equal: uniform mixing.
    for module in model.modules():
        if hasattr(module, "module_logits"):
            module.module_logits.data[2] = 0.0
    averaging.set(torch.tensor([2, 2]))
    uniform = model(**inputs).last_hidden_state
    torch.testing.assert_close(mixed[1], uniform[1])
    assert not torch.allclose(mixed[1], known[1])
    with pytest.raises(ValueError, match="Unknown unknown_tasks policy 'skip'"):
        TaskRouting(3, unknown_tasks="skip")
