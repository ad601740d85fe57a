"""Each custom op's ONNX function, run alone on ONNX Runtime, against the PyTorch model code."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from i2f_deploy.custom_ops import DOMAIN, VERSION, bsq_attention, full_attention, hybrid_moe, prompt_convolution, token_routing
from i2f_deploy.custom_ops.function_body import FLOAT, INT64, function_body
from onnx import TensorProto, helper

from i2f_deploy.compare import assert_close
from i2f_deploy.model.attention import BSQAttention, FullAttention
from i2f_deploy.model.moe import HybridMoE
from i2f_deploy.model.neck import PromptConv
from i2f_deploy.model.random_weights import randomize_weights

pytestmark = pytest.mark.graph


def single_node_session(module, attributes: dict, function: onnx.FunctionProto, feeds: dict,
                        output_types: list[int]) -> ort.InferenceSession:
    """A one-node model using the op with its function, typed from ``feeds``."""
    node = helper.make_node(module.OP_TYPE, list(module.INPUTS), list(module.OUTPUTS), domain=DOMAIN, **attributes)
    inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(feeds[name].dtype), feeds[name].shape)
        for name in module.INPUTS
    ]
    outputs = [helper.make_tensor_value_info(name, kind, None) for name, kind in zip(module.OUTPUTS, output_types)]
    graph = helper.make_graph([node], module.OP_TYPE, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, VERSION)],
                              functions=[function])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("num_tokens", [1024, 16384])
def test_bsq_function_is_deterministic_with_crowded_codes(num_tokens):
    torch.manual_seed(0)
    attention = BSQAttention(32, 8)
    randomize_weights(attention, seed=1)
    with torch.no_grad():
        attention.code_proj.bias += 3.0  # most keys share a handful of codes
    q, k, v = (torch.randn(num_tokens, 32) for _ in range(3))
    reference = attention(q, k, v).detach().numpy()
    attributes = {"scale": float(attention.scale), "code_size": 8}
    feeds = dict(zip(bsq_attention.INPUTS, [t.detach().numpy() for t in (q, k, v, attention.code_proj.weight,
                                                                           attention.code_proj.bias, attention.code_keys)]))
    function = bsq_attention.function_proto(**attributes)
    session = single_node_session(bsq_attention, attributes, function, feeds, [TensorProto.FLOAT])
    for _ in range(3):
        assert_close(session.run(None, feeds)[0], reference, atol=1e-5)


@pytest.mark.parametrize("grid", [32, 64])
@pytest.mark.parametrize("routed_share", [0.0, 0.3, 1.0])
def test_full_attention_function_matches_the_model(grid, routed_share):
    """The routed tokens' queries (a single one, some, all) over the tiny-512 and base-1024 grids."""
    attention = FullAttention(32, grid, ratio=0.5, theta=10000.0)
    num_tokens = grid * grid
    routed = torch.nonzero(torch.rand(num_tokens) < routed_share).flatten() if routed_share else torch.tensor([num_tokens - 1])
    q, k, v = torch.randn(len(routed), 32), torch.randn(num_tokens, 32), torch.randn(num_tokens, 32)
    reference = attention(q, k, v, routed).numpy()
    attributes = {"scale": float(attention.scale)}
    tensors = (q, k, v, routed, attention.rope_cos, attention.rope_sin)
    feeds = dict(zip(full_attention.INPUTS, [t.numpy() for t in tensors]))
    session = single_node_session(full_attention, attributes, full_attention.function_proto(**attributes), feeds, [TensorProto.FLOAT])
    assert_close(session.run(None, feeds)[0], reference, atol=1e-5)


@pytest.mark.parametrize("routed_share", [0.0, 0.3, 1.0])
def test_hybrid_moe_function_matches_the_model(routed_share):
    moe = HybridMoE(256, 512, 8)
    randomize_weights(moe, seed=2)
    x = torch.randn(1024, 256)
    routed = torch.nonzero(torch.rand(1024) < routed_share).flatten()
    reference = moe(x, routed).detach().numpy()
    attributes = {"num_experts": 8, "epsilon": 1e-5}
    weights = hybrid_moe.weight_inputs(moe)
    feeds = dict(zip(hybrid_moe.INPUTS, [x.numpy(), routed.numpy(), *[w.detach().numpy() for w in weights]]))
    session = single_node_session(hybrid_moe, attributes, hybrid_moe.function_proto(**attributes), feeds, [TensorProto.FLOAT])
    assert_close(session.run(None, feeds)[0], reference, atol=1e-4)


def test_token_routing_function_matches_the_router():
    from support.prompt_maps import random_prompt_map, scattered_prompt_map

    attributes = {"stride": 16, "kernel_size": 7}
    rng = np.random.default_rng(3)
    maps = [make_map(rng) for make_map in (random_prompt_map, scattered_prompt_map) for _ in range(20)]
    maps += [torch.full((1, 1, 512, 512), v, dtype=torch.uint8) for v in range(5)]
    function = token_routing.function_proto(**attributes)
    session = single_node_session(token_routing, attributes, function, {"ref_label": maps[0].numpy()}, [TensorProto.INT64] * 3)
    for ref_label in maps:
        outputs = session.run(None, {"ref_label": ref_label.numpy()})
        for got, expected in zip(outputs, token_routing.reference(ref_label, **attributes)):
            np.testing.assert_array_equal(got, expected.numpy())


@pytest.mark.parametrize("shape", [(1, 1), (37, 53), (128, 96)])
def test_prompt_convolution_function_matches_the_stack_on_the_embedded_map(shape):
    """Values 0..4 at random and in one box (a click's region), against the stack run by PyTorch
    on the map embedded by indexing the table directly."""
    stack = PromptConv((16, 24, 32, 48), (2, 2, 2, 2))
    randomize_weights(stack, seed=4)
    table = torch.randn(5, 5)
    rng = np.random.default_rng(5)
    boxed = np.zeros(shape, np.uint8)
    boxed[shape[0] // 4: shape[0] // 2 + 1, shape[1] // 3: shape[1] // 2 + 1] = 3
    maps = [rng.integers(0, 5, shape, dtype=np.uint8), boxed, np.full(shape, 4, np.uint8)]
    weights = [w.detach().numpy() for w in prompt_convolution.weight_inputs(stack)]
    feeds = dict(zip(prompt_convolution.INPUTS, [maps[0], table.numpy(), *weights]))
    session = single_node_session(prompt_convolution, {}, prompt_convolution.function_proto(), feeds, [TensorProto.FLOAT])
    for labels in maps:
        with torch.no_grad():
            reference = stack(table[torch.from_numpy(labels).long()].permute(2, 0, 1)[None]).numpy()
        got = session.run(None, {**feeds, "labels": labels})[0]
        assert got.shape == (1, 48, -(-shape[0] // 16), -(-shape[1] // 16))
        assert_close(got, reference, atol=1e-5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (lambda op, x: op.Add(x, op.Cast(x, to=INT64)), "inconsistent type"),  # float + int64
        (lambda op, x: op.Transpose(x, perms=[1, 0]), "perms"),  # no such attribute
        (lambda op, x: op.Add(x, x, x), "Too many positional arguments"),
    ],
)
def test_a_malformed_function_body_is_refused_when_built(body, message):
    with pytest.raises(TypeError, match=message):
        function_body("Broken", {"x": FLOAT}, ("y",), body, "")
