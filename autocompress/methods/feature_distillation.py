"""Feature distillation: attention transfer and FitNets hints (training-time methods).

Both match intermediate features of the student to the teacher's, layer pair by layer pair.
Layers are named by their fully qualified module names (``model.get_submodule(name)``); a
compressed student's layer may have been replaced by a module with children, but its name still
resolves to a module whose output is the layer's output, so hooks on it see the right tensor.

Lifecycle, as wired into a training step::

    distiller = FeatureDistiller(student, teacher, attention=at_config, hint=hint_config,
                                 example_inputs=example_inputs)
    logits = student(x)                   # hooks capture the student's features
    with torch.no_grad():
        teacher(x)                        # ... and the teacher's
    loss = task_loss + distiller.loss()   # consumes both captures
    ...
    distiller.close()                     # removes every hook

A hook stores the module's output tensor itself, so an in-place op that follows the layer
(``ReLU(inplace=True)``) changes what is stored: pick the activation's name to be explicit.
Hooks travel with ``copy.deepcopy`` of a model and write to the original capture: attach the
distiller to the copy that is trained, and close it before copying or exporting.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autocompress.errors import PlanError, invalid
from autocompress.methods.base import MethodConfig

PAIRS_FORMAT = "comma-separated 'student_layer:teacher_layer' pairs (or one shared name)"


def parse_pairs(pairs: str, where: str) -> tuple[tuple[str, str], ...]:
    """Parse ``"s1:t1, s2:t2"`` into ``(("s1", "t1"), ("s2", "t2"))``.

    A name without a colon pairs the layer with the teacher's layer of the same name, which is
    the common case for a student that is a compressed copy of its teacher.

    Raises:
        ConfigError: The string is empty, a pair is malformed, or a pair is repeated.
    """
    result = []
    for item in pairs.split(","):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2 or not all(parts):
            raise invalid(where, pairs, PAIRS_FORMAT)
        result.append(tuple(parts))
    if len(set(result)) != len(result):
        raise invalid(where, pairs, PAIRS_FORMAT + ", each pair once")
    return tuple(result)


class _PairsMixin:
    """The shared ``pairs`` field's helper."""

    method: str
    pairs: str

    def pair_list(self) -> tuple[tuple[str, str], ...]:
        """The ``(student_layer, teacher_layer)`` pairs, in the order given."""
        return parse_pairs(self.pairs, f"{self.method}.pairs")


@dataclass(frozen=True)
class AttentionTransferConfig(_PairsMixin, MethodConfig):
    """Activation-based attention transfer (Zagoruyko & Komodakis, 2017).

    Attributes:
        pairs: Layers to match, ``"student_layer:teacher_layer"`` pairs separated by commas
            (required; a string, so it survives MLflow params and YAML unchanged).
        beta: Weight of the loss; ``beta / 2`` multiplies the sum over pairs. The default 1000
            is the paper's, for the per-element mean used by :func:`attention_transfer_loss`.
        p: Exponent of the attention map ``mean_c |A_c|^p``.
    """

    method = "attention_transfer"
    pairs: str = ""
    beta: float = 1000.0
    p: int = 2

    def __post_init__(self):
        self.pair_list()
        if not self.beta >= 0:
            raise invalid("attention_transfer.beta", self.beta, "a number >= 0")
        if self.p < 1:
            raise invalid("attention_transfer.p", self.p, "an integer >= 1")

    def is_identity(self) -> bool:
        return self.beta == 0.0


@dataclass(frozen=True)
class HintConfig(_PairsMixin, MethodConfig):
    """FitNets hints (Romero et al., 2015): regress the teacher's features from the student's.

    Attributes:
        pairs: Layers to match, as in :class:`AttentionTransferConfig` (required).
        weight: Weight of the mean squared error between the regressed student features and
            the teacher's.
    """

    method = "hint"
    pairs: str = ""
    weight: float = 1.0

    def __post_init__(self):
        self.pair_list()
        if not self.weight >= 0:
            raise invalid("hint.weight", self.weight, "a number >= 0")

    def is_identity(self) -> bool:
        return self.weight == 0.0


def _pool_to(x: Tensor, size: tuple[int, ...]) -> Tensor:
    """Adaptive-average-pool the trailing ``len(size)`` dims of ``x`` (at most 3) to ``size``."""
    if tuple(x.shape[-len(size):]) == size:
        return x
    pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[len(size) - 1]
    lead = x.shape[: x.dim() - len(size)]
    flat = x.reshape(-1, 1, *x.shape[-len(size):])
    return pool(flat, size).reshape(*lead, *size)


def _common_size(a: Tensor, b: Tensor) -> tuple[int, ...]:
    """The elementwise smallest spatial size (dims after batch and channel) of ``a`` and ``b``."""
    return tuple(min(x, y) for x, y in zip(a.shape[2:], b.shape[2:], strict=True))


def attention_map(features: Tensor, p: int = 2, size: tuple[int, ...] | None = None) -> Tensor:
    """The paper's attention map: ``normalize(flatten(mean_c |A|^p))``, one per sample.

    Args:
        features: ``(N, C, *spatial)`` activations, 1 to 3 spatial dims.
        p: Exponent applied to the absolute activations.
        size: Spatial size to adaptive-average-pool the (unnormalised) map to; None keeps it.

    Returns:
        ``(N, prod(spatial))`` maps with unit L2 norm per sample (all-zero maps stay zero).
    """
    energy = features.abs().pow(p).mean(dim=1)
    if size is not None:
        energy = _pool_to(energy, tuple(size))
    return F.normalize(energy.flatten(1), dim=1)


def attention_pair_loss(student: Tensor, teacher: Tensor, p: int = 2) -> Tensor:
    """``mean((Q_s - Q_t)^2)`` over samples and positions, as in the paper's code.

    The larger map is pooled to the smaller spatial size; the teacher is not differentiated.
    """
    size = _common_size(student, teacher)
    q_s = attention_map(student, p, size)
    q_t = attention_map(teacher.detach(), p, size)
    return (q_s - q_t).pow(2).mean()


def attention_transfer_loss(
    student_features: Iterable[Tensor],
    teacher_features: Iterable[Tensor],
    config: AttentionTransferConfig,
) -> Tensor:
    """``beta / 2 * sum over pairs of mean((Q_s - Q_t)^2)``, features given in pair order.

    Note the per-element mean: it is ``||Q_s - Q_t||_2^2 / (N * positions)``, which is what
    the paper's ``(at(x) - at(y)).pow(2).mean()`` computes and what ``beta = 1000`` is tuned for.
    """
    losses = [
        attention_pair_loss(s, t, config.p)
        for s, t in zip(student_features, teacher_features, strict=True)
    ]
    return config.beta / 2 * torch.stack(losses).sum()


def make_regressor(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    """A FitNets regressor from student to teacher channels: 1x1 conv (4-D) or Linear (2-D).

    When the channel counts match it starts as the identity, so a student that is still equal
    to its teacher starts with a zero hint loss.

    Raises:
        ValueError: The features are not both 2-D or both 4-D.
    """
    dims = (len(student_shape), len(teacher_shape))
    if dims not in ((2, 2), (4, 4)):
        raise ValueError(f"hint needs 2-D (N, C) or 4-D (N, C, H, W) features on both sides, "
                         f"got {tuple(student_shape)} and {tuple(teacher_shape)}")
    c_s, c_t = student_shape[1], teacher_shape[1]
    layer = nn.Linear(c_s, c_t) if dims[0] == 2 else nn.Conv2d(c_s, c_t, kernel_size=1)
    if c_s == c_t:
        with torch.no_grad():
            layer.weight.copy_(torch.eye(c_s).view_as(layer.weight))
            layer.bias.zero_()
    return layer


def hint_loss(student: Tensor, teacher: Tensor, regressor: nn.Module, weight: float) -> Tensor:
    """``weight * MSE(regressor(student), teacher)``; spatial sizes are pooled to the smaller."""
    regressed = regressor(student)
    if student.dim() == 4:
        size = _common_size(regressed, teacher)
        regressed, teacher = _pool_to(regressed, size), _pool_to(teacher, size)
    return weight * F.mse_loss(regressed, teacher.detach())


class FeatureCapture:
    """Forward hooks that keep the latest output of named submodules.

    Usable as a context manager; :meth:`close` removes the hooks. A module called several times
    per forward keeps its last output.

    Args:
        model: The model to observe.
        names: Fully qualified submodule names.
        label: What to call ``model`` in error messages (``student``, ``teacher``).

    Raises:
        PlanError: A name is not a submodule of ``model``; the message lists close or valid names.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], label: str = "model") -> None:
        self.features: dict[str, Any] = {}
        modules = {name: _submodule(model, name, label) for name in names}  # fail before hooking
        self._handles = [m.register_forward_hook(self._recorder(n)) for n, m in modules.items()]

    def _recorder(self, name: str):
        def record(_module, _inputs, output):
            self.features[name] = output

        return record

    def __getitem__(self, name: str) -> Any:
        try:
            return self.features[name]
        except KeyError:
            raise RuntimeError(f"no output captured for layer {name!r}: run the model "
                               f"forward first (captures are consumed by loss())") from None

    def clear(self) -> None:
        """Forget the captured outputs (frees the activations they hold)."""
        self.features.clear()

    def close(self) -> None:
        """Remove the hooks and forget the captured outputs."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.clear()

    def __enter__(self) -> FeatureCapture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _submodule(model: nn.Module, name: str, label: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        hints = difflib.get_close_matches(name, names, n=5) or names[:8]
        more = ", ..." if len(names) > len(hints) else ""
        raise PlanError(f"{name}: no such layer in the {label}; valid names include "
                        f"{', '.join(hints)}{more}") from None


class FeatureDistiller(nn.Module):
    """Attention-transfer and hint losses between a student and its teacher.

    Its only parameters are the hint regressors: add ``distiller.parameters()`` to the
    optimizer, and keep the distiller a child of the training module so it follows the device.
    Neither model becomes a child (the teacher must not be trained or saved).

    Args:
        student: The model being trained.
        teacher: The frozen reference model.
        attention: Attention transfer settings, or None.
        hint: Hint settings, or None.
        example_inputs: A batch both models accept; required with ``hint`` (sizes the
            regressors), otherwise used only to check feature shapes early. Both models run on
            it once in eval mode without gradients.

    Raises:
        PlanError: A layer is unknown or its output cannot be matched.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, *,
                 attention: AttentionTransferConfig | None = None,
                 hint: HintConfig | None = None, example_inputs: Any = None) -> None:
        super().__init__()
        if hint is not None and example_inputs is None:
            raise ValueError("FeatureDistiller: hint needs example_inputs to size its regressors")
        self.attention, self.hint = attention, hint
        self._at_pairs = attention.pair_list() if attention is not None else ()
        self._hint_pairs = hint.pair_list() if hint is not None else ()
        pairs = self._at_pairs + self._hint_pairs
        self._models = (student,)  # a tuple: the student must not become a child
        self.regressors = nn.ModuleList()
        self._student = FeatureCapture(student, [s for s, _ in pairs], "student")
        try:
            self._teacher = FeatureCapture(teacher, [t for _, t in pairs], "teacher")
        except PlanError:
            self._student.close()
            raise
        if example_inputs is not None and pairs:
            try:
                self._build(student, teacher, example_inputs)
            except Exception:
                self.close()
                raise

    def _build(self, student: nn.Module, teacher: nn.Module, example_inputs: Any) -> None:
        """Forward ``example_inputs`` once, check the shapes and create the regressors."""
        _probe(student, example_inputs)
        _probe(teacher, example_inputs)
        for s, t in self._at_pairs:
            shape_s, shape_t = self._shapes(s, t)
            if len(shape_s) not in (3, 4, 5) or len(shape_s) != len(shape_t):
                raise PlanError(f"attention_transfer pair {s}:{t}: needs (N, C, *spatial) "
                                f"features, got {tuple(shape_s)} and {tuple(shape_t)}")
        for s, t in self._hint_pairs:
            try:
                self.regressors.append(make_regressor(*self._shapes(s, t)))
            except ValueError as exc:
                raise PlanError(f"hint pair {s}:{t}: {exc}") from None
        self._student.clear()
        self._teacher.clear()

    def _shapes(self, student_layer: str, teacher_layer: str) -> tuple[torch.Size, torch.Size]:
        out = []
        for capture, name in ((self._student, student_layer), (self._teacher, teacher_layer)):
            value = capture[name]
            if not isinstance(value, Tensor):
                raise PlanError(f"{name}: its output is a {type(value).__name__}, not a tensor")
            out.append(value.shape)
        return out[0], out[1]

    def loss(self) -> Tensor:
        """The weighted feature loss for the batch both models just forwarded (0 when unset).

        Consumes the captured features, so a skipped teacher forward fails loudly on the next
        call instead of reusing stale features.
        """
        s, t = self._student, self._teacher
        losses = [hint_loss(s[a], t[b], regressor, self.hint.weight)
                  for (a, b), regressor in zip(self._hint_pairs, self.regressors, strict=True)]
        if self._at_pairs:
            losses.append(attention_transfer_loss(
                [s[a] for a, _ in self._at_pairs], [t[b] for _, b in self._at_pairs],
                self.attention))
        s.clear()
        t.clear()
        if not losses:
            device = next(self._models[0].parameters(), torch.zeros(())).device
            return torch.zeros((), device=device)
        return torch.stack(losses).sum()

    def close(self) -> None:
        """Remove the hooks from both models."""
        self._student.close()
        self._teacher.close()


def _probe(model: nn.Module, example_inputs: Any) -> None:
    """Run ``model`` once in eval mode without gradients (BatchNorm statistics stay put)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*(example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)))
    finally:
        model.train(was_training)


__all__ = [
    "AttentionTransferConfig",
    "FeatureCapture",
    "FeatureDistiller",
    "HintConfig",
    "attention_map",
    "attention_pair_loss",
    "attention_transfer_loss",
    "hint_loss",
    "make_regressor",
    "parse_pairs",
]
