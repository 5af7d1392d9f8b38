"""Layers that own their parameters, as ``torch.nn``: convolutions (plain, transposed, depthwise,
separable), a Module base with torch's state_dict keys, explicit backward passes for training,
and safetensors weight files.

Examples
--------
>>> import numpy as np
>>> from fastconv import nn
>>> net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, generator=0), nn.SeparableConv2d(8, 4, 3, stride=2))
>>> x = np.random.default_rng(0).standard_normal((2, 1, 9, 9)).astype(np.float32)
>>> y = net(x)
>>> y.shape
(2, 4, 4, 4)
>>> dx = net.backward(np.ones_like(y))   # fills every parameter's .grad
>>> dx.shape, net[0].weight.grad.shape
((2, 1, 9, 9), (8, 1, 3, 3))
"""

from . import init
from .conv import (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, DepthwiseConv1d,
                   DepthwiseConv2d, DepthwiseConv3d, SeparableConv1d, SeparableConv2d, SeparableConv3d)
from .io import load_model, save_model
from .module import IncompatibleKeys, Module, Parameter, Sequential

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "DepthwiseConv1d", "DepthwiseConv2d", "DepthwiseConv3d", "IncompatibleKeys", "Module", "Parameter",
           "SeparableConv1d", "SeparableConv2d", "SeparableConv3d", "Sequential", "init", "load_model",
           "save_model"]
