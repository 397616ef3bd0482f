"""Export a network to ONNX or TorchScript with dynamic height and width.

    >>> import panet, torch
    >>> from panet.inference.export import export_model
    >>> export_model(panet.create_model("panet-dn-s", blocks=2), "dn.pt", format="torchscript")  # doctest: +SKIP

The package's attention kernel (tiled, online softmax, oneDNN-packed GEMMs, custom autograd) does not trace.
Exported graphs use the plain formulation of the same block instead: the full score matrix, a softmax and two
batched matrix products. It is exact (the tests check parity with the package's network), but its memory grows
with the square of the image area: about 4 * (H*W) * 3.3 * (H*W) bytes for the scores, e.g. 0.2 GB for a 64x64
input and 3.5 GB for 128x128. Run exported models on tiles, as `panet restore` does.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from panet.nn.attention import PyramidAttention, pyramid_scales
from panet.nn.blocks import ResBlock
from panet.nn.model import PANet


class _PlainPyramidAttention(nn.Module):
    """The PA block with materialised scores, written so that TorchScript and torch.export keep H, W symbolic."""

    def __init__(self, block: PyramidAttention):
        super().__init__()
        self.query, self.key, self.value = block.query, block.key, block.value
        self.scales: list[float] = pyramid_scales(block.levels)
        self.softmax_scale, self.res_scale = float(block.softmax_scale), float(block.res_scale)
        self.norm_eps, self.hard = float(block.norm_eps), bool(block.hard)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        queries = F.unfold(self.query(x), (3, 3), padding=(1, 1)).transpose(1, 2)
        keys: list[Tensor] = []
        values: list[Tensor] = []
        for s in self.scales:
            if s == 1.0:
                level = x
            else:  # the release's sizes: floor(s * size); an explicit size samples with ratio in/out
                if torch.jit.is_scripting():
                    size = [int(math.floor(float(h) * s)), int(math.floor(float(w) * s))]
                else:  # torch.export: keep the sizes symbolic (float() would specialise them)
                    size = [math.floor(torch.sym_float(h) * s), math.floor(torch.sym_float(w) * s)]
                level = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
            keys.append(F.unfold(self.key(level), (3, 3), padding=(1, 1)))
            values.append(F.unfold(self.value(level), (3, 3), padding=(1, 1)))
        k = torch.cat(keys, 2)
        v = torch.cat(values, 2)
        k = k / torch.linalg.vector_norm(k, 2.0, dim=[1], keepdim=True).clamp_min(self.norm_eps)
        scores = torch.bmm(queries, k)
        if self.hard:
            weights = (scores >= scores.amax(dim=-1, keepdim=True)).to(scores.dtype)
        else:
            weights = torch.softmax(self.softmax_scale * scores, dim=-1)
        out = torch.bmm(weights, v.transpose(1, 2))
        return F.fold(out.transpose(1, 2), (h, w), (3, 3), padding=(1, 1)) / 4 + self.res_scale * x


class _PlainResBlock(nn.Module):
    def __init__(self, block: ResBlock):
        super().__init__()
        self.conv1, self.act, self.conv2, self.res_scale = block.conv1, block._act, block.conv2, float(block.res_scale)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x))) * self.res_scale


class ExportablePANet(nn.Module):
    """The same network and weights as a :class:`panet.PANet`, in traceable and scriptable form."""

    if TYPE_CHECKING:  # a registered buffer; a run-time class annotation would confuse TorchScript
        rgb_mean: Tensor

    def __init__(self, model: PANet):
        super().__init__()
        self.head, self.tail = model.head, model.tail
        body: list[nn.Module] = []
        for layer in model.body:
            if isinstance(layer, ResBlock):
                body.append(_PlainResBlock(layer))
            elif isinstance(layer, PyramidAttention):
                body.append(_PlainPyramidAttention(layer))
            else:
                body.append(layer)
        self.body = nn.Sequential(*body)
        self.upsample = model.upsample if model.upsample is not None else nn.Identity()
        self.has_mean = model.rgb_mean is not None
        self.register_buffer(
            "rgb_mean", model.rgb_mean.clone() if model.rgb_mean is not None else torch.zeros(1, model.colors, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.has_mean:
            x = x - self.rgb_mean
        h = self.head(x)
        y = self.tail(self.upsample(self.body(h) + h))
        if self.has_mean:
            y = y + self.rgb_mean
        return y


# What an exported graph expects and returns; the file carries it too (TorchScript: the extra file panet.json,
# ONNX: metadata_props). Feeding 0-255 values gives wrong outputs without any error.
INPUT_CONTRACT = (
    "input: float32 NCHW, RGB (or 1-channel gray) in [0, 1], any height and width >= 8; "
    "output: the same layout and range (clip to [0, 1]), SR outputs scale x larger"
)


def export_metadata(model: PANet) -> dict[str, str]:
    """The contract and the network's settings, as written into an exported file."""
    import json

    from panet.inference.descriptor import describe

    info = describe(model)
    return {
        "panet.contract": INPUT_CONTRACT,
        "panet.task": info.task or "",
        "panet.colors": str(info.colors),
        "panet.scale": str(info.scale),
        "panet.min_size": str(info.min_size),
        "panet.tiling": f"{info.tiling[0]}/{info.tiling[1]}",
        "panet.config": json.dumps(model.config, sort_keys=True),
        "panet.zoo.weights": info.shipped_name or "",
    }


def export_model(
    model: PANet, path: str | os.PathLike, *, format: str, example_size: int = 48, opset: int | None = None
) -> None:
    """Write ``model`` as ONNX (``format="onnx"``, needs the ``onnx`` extra) or TorchScript, dynamic H and W.

    The graph takes float32 NCHW images in [0, 1] (:data:`INPUT_CONTRACT`); the file records that contract and the
    network's settings (:func:`export_metadata`)."""
    from panet.files import atomic_write

    if format not in ("onnx", "torchscript"):
        raise ValueError(f"format must be onnx or torchscript, got {format!r}")
    net = ExportablePANet(model.cpu().eval()).eval()
    if format == "torchscript":
        import json

        scripted = torch.jit.script(net)
        extra = {"panet.json": json.dumps(export_metadata(model), indent=1)}
        atomic_write(path, lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra))
        return
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ImportError("ONNX export needs the onnx extra: pip install 'panet[onnx]'") from None
    x = torch.rand(1, model.colors, example_size, example_size)
    height, width = torch.export.Dim("height", min=8, max=8192), torch.export.Dim("width", min=8, max=8192)
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}

    def write(tmp: str) -> None:
        program = torch.onnx.export(
            net,
            (x,),
            dynamo=True,
            dynamic_shapes={"x": {2: height, 3: width}},
            input_names=["image"],
            output_names=["restored"],
            verbose=False,
            **kwargs,
        )
        if program is None:  # torch returns None only when given a file to write to itself
            raise RuntimeError("torch.onnx.export returned no program")
        import onnx

        proto = program.model_proto
        for key, value in export_metadata(model).items():
            proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
        onnx.save(proto, tmp)

    atomic_write(path, write)
