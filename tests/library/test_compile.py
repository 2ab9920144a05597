"""torch.compile, torch.func and the other transforms: TrAct is traced and compiled, never silently skipped.

Most tests compile with a recording backend (dynamo + AOTAutograd, the graphs kept, no code generation: seconds,
not the tens of seconds inductor takes per graph); `test_inductor_training_step` runs the default backend once.
Every compile test proves that TrAct's backward is *in* the compiled backward graph (its Cholesky factorisation
or its Gram GEMM is there), that dynamo broke no graph (fullgraph=True) and that the gradient is TrAct's.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import trainact

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def model_of(kind: str, dtype: torch.dtype) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    if kind == "conv":
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
        return model.to(dtype), "0"
    # a Linear first layer on 16 rows of 12 features: the Gram path (r >= n), as for a patch embedding
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 16, 4))
    return model.to(dtype), "0"


def batch(kind: str, dtype: torch.dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 8, 8, generator=g) if kind == "conv" else torch.randn(4, 16, 12, generator=g)
    return x.to(dtype), torch.randint(0, 4, (4,), generator=g)


def recording_backend(graphs: dict):
    """dynamo + AOTAutograd keeping the forward and backward graphs, running them as they are."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def keep(kind):
        def compiler(gm, example_inputs):
            graphs.setdefault(kind, []).append(gm)
            return make_boxed_func(gm.forward)
        return compiler

    return aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward"))


def ops_of(gm) -> set:
    return {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}


def train_step(model: nn.Module, x, y, defer: bool) -> None:
    nn.functional.cross_entropy(model(x), y).backward()
    if defer:
        trainact.precondition_grads(model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("defer", [False, True])
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_compiled_step_is_fullgraph_and_matches_eager(kind, defer, dtype):
    torch._dynamo.reset()
    model, first = model_of(kind, dtype)
    plain = copy.deepcopy(model)
    trainact.apply(model, layer=first, defer=defer)
    eager = copy.deepcopy(model)
    graphs: dict = {}
    compiled = torch.compile(model, backend=recording_backend(graphs), fullgraph=True)
    x, y = batch(kind, dtype)
    for _ in range(2):  # the second step starts from updated weights and reuses the compiled graphs
        for m in (compiled, eager, plain):
            m.zero_grad(set_to_none=True)
            train_step(m, x, y, defer)
        got, want = model.get_submodule(first).weight.grad, eager.get_submodule(first).weight.grad
        assert_close(got, want, **TOL[dtype])
        assert not torch.allclose(want, plain.get_submodule(first).weight.grad, rtol=1e-3)  # TrAct did something
        with torch.no_grad():
            for m in (model, eager, plain):
                for p in m.parameters():
                    p -= 0.1 * p.grad
    assert len(graphs["forward"]) == 1 and len(graphs["backward"]) == 1  # one graph each, compiled once
    backward = ops_of(graphs["backward"][0])
    # per step: the factorisation runs in the compiled backward; deferred: the Gram GEMM does (solve at the step)
    expected = {"aten.bmm.default", "aten.baddbmm.default"} if defer else {"aten.linalg_cholesky_ex.default"}
    assert expected & backward, sorted(backward)
    assert ("aten.linalg_cholesky_ex.default" in backward) != defer
    if not defer:  # the solve status reached its sink through the compiled graph
        status = trainact.steps.state_of(model.get_submodule(first)).status.grad
        assert status is not None and status.isfinite().all()


def test_explain_reports_one_graph_no_break_and_ops():
    """The old failure: dynamo fell back to eager for the whole model (0 ops in the graph)."""
    torch._dynamo.reset()
    model, first = model_of("conv", torch.float32)
    trainact.apply(model, layer=first)
    x, _ = batch("conv", torch.float32)
    report = torch._dynamo.explain(model)(x)
    assert report.graph_count == 1 and report.graph_break_count == 0 and report.op_count > 0


def test_compiled_nonfinite_input_poisons_the_gradient_and_the_step_raises():
    """Under compile nothing is read on the host in backward: the gradient is NaN, and the next optimizer step
    (which checks the status the backward left) raises, naming the layer, before updating anything."""
    torch._dynamo.reset()
    model, first = model_of("conv", torch.float32)
    trainact.apply(model, layer=first)
    compiled = torch.compile(model, backend=recording_backend({}), fullgraph=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch("conv", torch.float32)
    x[0, 0, 0, 0] = float("inf")
    nn.functional.cross_entropy(compiled(x), y).backward()  # no error here: the backward never synchronises
    assert model[0].weight.grad.isnan().any()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(trainact.TrActNumericalError, match="TrAct layer '0'.*not finite"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.slow
def test_inductor_training_step():
    """The default backend (inductor) compiles the whole step with TrAct and gives the eager gradient."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model, first = model_of("conv", torch.float32)
    trainact.apply(model, layer=first)
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, fullgraph=True)
    x, y = batch("conv", torch.float32)
    with torch._inductor.config.patch(fx_graph_cache=True):  # counts the graphs inductor compiles (off before 2.5)
        train_step(compiled, x, y, False)
    train_step(eager, x, y, False)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"] >= 2  # fw + bw
    assert_close(model[0].weight.grad, eager[0].weight.grad, **TOL[torch.float32])


# --------------------------------------------------------------------------------------------------- transforms


def test_func_grad_gives_the_tract_gradient():
    from torch.func import functional_call, grad

    model, first = model_of("conv", torch.float64)
    trainact.apply(model, layer=first)
    x, y = batch("conv", torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}
    grads = grad(lambda p: nn.functional.cross_entropy(functional_call(model, p, (x,)), y))(params)
    nn.functional.cross_entropy(model(x), y).backward()
    assert_close(grads["0.weight"], model[0].weight.grad, **TOL[torch.float64])


def test_export_refuses_rather_than_dropping_tract():
    model, first = model_of("conv", torch.float32)
    trainact.apply(model, layer=first)
    x, _ = batch("conv", torch.float32)
    if hasattr(torch.compiler, "_is_exporting_flag"):  # torch >= 2.7 says when it exports (older: inference only)
        with pytest.raises(Exception, match="torch.export keeps no custom backward"):
            torch.export.export(model, (x,))
    with torch.no_grad():  # for inference the forward is the plain layer's, and exports
        exported = torch.export.export(model, (x,))
    assert_close(exported.module()(x), model(x))


def test_jit_script_says_what_to_use():
    model, first = model_of("conv", torch.float32)
    trainact.apply(model, layer=first)
    with pytest.raises(RuntimeError, match="torch.jit.script does not support TrAct layers.*torch.compile"):
        torch.jit.script(model)


TORCH = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])


def _compiled_ddp_step(rank, world):
    torch._dynamo.reset()
    model, first = model_of("conv", torch.float32)
    trainact.apply(model, layer=first)
    graphs: dict = {}
    compiled = torch.compile(nn.parallel.DistributedDataParallel(model), backend=recording_backend(graphs))
    x, y = batch("conv", torch.float32)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(x.shape, generator=g)
    # before 2.6 the DDP optimizer cannot split a graph holding an autograd.Function and says to turn it off
    with torch._dynamo.config.patch(optimize_ddp=TORCH >= (2, 6)):
        nn.functional.cross_entropy(compiled(x), y).backward()
    backward = set().union(*(ops_of(gm) for gm in graphs.get("backward", [])))
    return {"grad": model[0].weight.grad.clone(), "backward": sorted(backward), "x": x}


@pytest.mark.slow
@pytest.mark.distributed
def test_compiled_ddp_traces_the_all_reduce_and_gives_the_global_batch_gradient():
    """torch.compile over DDP (2 gloo processes): each rank's gradient is the TrAct gradient of the concatenated
    batch, and TrAct's all-reduce of AᵀA is a traced collective inside the compiled backward."""
    import multiproc

    results = multiproc.run(_compiled_ddp_step, timeout=600)
    model, first = model_of("conv", torch.float32)
    trainact.apply(model, layer=first)
    _, y = batch("conv", torch.float32)
    # DDP averages the ranks' mean-loss gradients: the gradient of the mean loss over both batches
    x = torch.cat([r["x"] for r in results])
    nn.functional.cross_entropy(model(x), torch.cat([y, y])).backward()
    for r in results:
        assert_close(r["grad"], model[0].weight.grad, **TOL[torch.float32])
        assert "aten.linalg_cholesky_ex.default" in r["backward"]
        if TORCH >= (2, 11):  # seen traced from 2.11 (2.6 runs it between two compiled graphs)
            assert "_c10d_functional.all_reduce.default" in r["backward"], r["backward"]
