"""The installed wheel, alone with torch: it imports, wraps a layer and gives the TrAct gradient (the closed form)."""
import torch
from torch import nn

import trainact

torch.manual_seed(0)
layer = nn.Linear(6, 3).double()
x, grad_out = torch.randn(40, 6, dtype=torch.float64), torch.randn(40, 3, dtype=torch.float64)
wrapped = trainact.TrAct(layer, 0.1)
wrapped(x).backward(grad_out)
expected = grad_out.T @ x @ torch.linalg.inv(x.T @ x / 40 + 0.1 * torch.eye(6, dtype=torch.float64))
assert torch.allclose(layer.weight.grad, expected, rtol=1e-10, atol=1e-12), "wrong TrAct gradient"
assert "site-packages" in trainact.__file__, f"not the installed wheel: {trainact.__file__}"
print(f"wheel check: trainact {trainact.__version__} from {trainact.__file__.split('site-packages')[0]}site-packages: ok")
