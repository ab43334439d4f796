"""Building networks on PyTorch's ``meta`` device: shapes without memory, in a fraction of the time.

:func:`meta_build` is a context in which new modules get their (large) weights on the meta device
and their initialisers are skipped; :func:`build_on_meta` builds any builder that way and moves
the rest to meta, so the model runs on meta inputs under any tracer (PyTorch's FlopCounterMode
included). The registry's input-size checks and the analysis both build through it.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["meta_build", "build_on_meta"]

_RESHAPING = {"resize_", "set_", "as_strided_", "resize_as_", "squeeze_", "unsqueeze_", "transpose_", "t_", "swapdims_"}
_SMALL = 4096  # factory calls below this many elements stay on the CPU (builders compute with them)
_META = torch.device("meta")


class _MetaBuild(TorchDispatchMode):
    """Build modules with their (large) tensors on the meta device, quickly.

    * Factory calls (``torch.empty``/``zeros``/``randn``... with no device given) of at least
      ``_SMALL`` elements are put on the meta device: these are the weights. Smaller ones stay on
      the CPU, so builders that compute their widths with tensors and ``.tolist()`` (torchvision's
      RegNet) still work.
    * In-place operators on meta tensors write nothing, so they return their target at once:
      initialisers (``kaiming_normal_``, ``trunc_normal_``...) on meta otherwise run PyTorch's Python
      reference kernels only to check shapes, which takes about a second for a large network.
    """

    _kinds: dict[Any, str] = {}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    @classmethod
    def _kind(cls, func: Any) -> str:
        kind = cls._kinds.get(func)
        if kind is None:
            schema = func._schema
            name = func.__name__.split(".")[0]
            if torch.Tag.inplace in func.tags and name not in _RESHAPING:
                kind = "inplace"
            elif any(a.name == "device" for a in schema.arguments) and not any(
                    a.type.isSubtypeOf(torch._C.TensorType.get()) for a in schema.arguments):
                kind = "factory"
            else:
                kind = "other"
            cls._kinds[func] = kind
        return kind

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        kind = self._kind(func)
        if kind == "inplace" and args and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta":
            return args[0]
        if kind == "factory" and args and isinstance(args[0], (list, tuple)):
            device = kwargs.get("device")
            if (device is None or torch.device(device).type == "cpu") and math.prod(args[0]) >= _SMALL:
                kwargs = {**kwargs, "device": _META}
        return func(*args, **kwargs)


@contextlib.contextmanager
def meta_build() -> Iterator[None]:
    """Context in which new modules get their weights on the meta device, quickly::

        with meta_build():
            model = torchvision.models.resnet50()
    """
    with _MetaBuild():
        yield


def build_on_meta(builder: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    """``builder(**kwargs)`` with every tensor on the meta device, in eval mode.

    Small tensors are built (and initialised) on the CPU first: the CPU generator is forked, so
    building here - e.g. in the input-size guard of a user's forward pass - leaves the caller's
    random stream alone.
    """
    with torch.random.fork_rng(devices=[]), meta_build():
        model = builder(**kwargs)
    return model.to("meta").eval()
