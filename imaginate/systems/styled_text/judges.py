"""Judges trained on real training paragraphs only, kept as modules so they are saved with the run.

- :class:`StyleJudge`: character 1..4-gram TF-IDF + logistic regression (scikit-learn), fitted on the
  training continuations and whole paragraphs. The n-grams are hashed (``HashingVectorizer``), so the whole
  judge is three arrays (idf, coefficients, intercepts) held as buffers: no pickled objects in checkpoints.
- :class:`FluencyJudge`: an unconditional byte-level transformer LM (``CharTransformerLM`` over 256 bytes +
  a start byte); fluency = bits per byte of a continuation given its context.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaginate.nn.transformer import CharTransformerLM

NGRAMS = (1, 4)
START = 256  # the byte LM's start-of-text token


class StyleJudge(nn.Module):
    """Args:
        num_styles: classes C.
        n_features: hashed n-gram buckets F.
        C: inverse L2 strength of the logistic regression.
    """

    def __init__(self, num_styles: int, n_features: int = 2**16, C: float = 30.0) -> None:
        super().__init__()
        self.n_features = n_features
        self.C = C
        self.register_buffer("idf", torch.zeros(n_features))  # [F]
        self.register_buffer("coef", torch.zeros(num_styles, n_features))  # [C, F]
        self.register_buffer("intercept", torch.zeros(num_styles))  # [C]
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def _counts(self, texts: list[str]):
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(analyzer="char", ngram_range=NGRAMS, n_features=self.n_features,
                                       alternate_sign=False, norm=None, lowercase=False)
        return vectorizer.transform(texts)  # sparse [N, F] counts

    def features(self, texts: list[str]):
        """Sublinear-tf x idf, L2-normalised rows: sparse [N, F]."""
        from sklearn.preprocessing import normalize

        x = self._counts(texts).astype(np.float64)
        x.data = 1.0 + np.log(x.data)
        x = x.multiply(self.idf.cpu().numpy()[None]).tocsr()
        return normalize(x)

    def fit(self, texts: list[str], labels: list[int]) -> None:
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        tfidf = TfidfTransformer(sublinear_tf=True).fit(self._counts(texts))
        self.idf.copy_(torch.from_numpy(tfidf.idf_).float())
        classifier = LogisticRegression(C=self.C, max_iter=3000).fit(self.features(texts), labels)
        coef = np.zeros((self.coef.shape[0], self.n_features))
        intercept = np.full(self.coef.shape[0], -1e4)  # a style absent from training is never predicted
        coef[classifier.classes_] = classifier.coef_ if len(classifier.classes_) > 2 else np.stack(
            [-classifier.coef_[0], classifier.coef_[0]])
        intercept[classifier.classes_] = classifier.intercept_ if len(classifier.classes_) > 2 else np.array(
            [-classifier.intercept_[0], classifier.intercept_[0]])
        self.coef.copy_(torch.from_numpy(coef).float())
        self.intercept.copy_(torch.from_numpy(intercept).float())
        self.fitted.fill_(True)

    def scores(self, texts: list[str]) -> np.ndarray:
        """[N, C] decision scores."""
        x = self.features(texts)
        return np.asarray(x @ self.coef.cpu().numpy().T.astype(np.float64)) + self.intercept.cpu().numpy()

    def predict(self, texts: list[str]) -> np.ndarray:
        """[N] predicted style indices."""
        return self.scores(texts).argmax(1)


class FluencyJudge(nn.Module):
    """A byte LM (vocab 257: bytes + start) of ``context`` bytes; see ``bits_per_byte``."""

    def __init__(self, context: int = 256, d_model: int = 128, n_layers: int = 2, n_heads: int = 4) -> None:
        super().__init__()
        self.lm = CharTransformerLM(257, context, d_model, n_layers, n_heads)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def context(self) -> int:
        return self.lm.context

    def _rows(self, texts: list[bytes]) -> tuple[Tensor, Tensor]:
        """``<start> bytes`` right-padded: ids [N, T] (T <= context) and a mask [N, T] of real bytes."""
        width = min(self.context, max(len(t) for t in texts) + 1)
        ids = torch.zeros(len(texts), width, dtype=torch.int64)
        mask = torch.zeros(len(texts), width, dtype=torch.bool)
        for i, t in enumerate(texts):
            row = [START] + list(t[: width - 1])
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return ids, mask

    def fit(self, texts: list[str], steps: int, batch_size: int, lr: float, seed: int,
            device: torch.device) -> list[float]:
        """Train on ``texts`` (whole paragraphs); returns the loss every 50 steps."""
        data = [t.encode("utf-8") for t in texts]
        gen = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(self.lm.parameters(), lr=lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=max(steps, 1), pct_start=0.1)
        losses = []
        self.train()
        with torch.enable_grad():
            for step in range(steps):
                pick = torch.randint(len(data), (batch_size,), generator=gen).tolist()
                ids, mask = self._rows([data[i] for i in pick])
                ids, mask = ids.to(device), mask.to(device)
                logits = self.lm(ids[:, :-1])  # [B, T-1, 257]
                loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
                loss = (loss * mask[:, 1:].flatten()).sum() / mask[:, 1:].sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                if step % 50 == 0 or step == steps - 1:
                    losses.append(float(loss.detach()))
        self.eval()
        self.fitted.fill_(True)
        return losses

    @torch.no_grad()
    def bits_per_byte(self, contexts: list[str], continuations: list[str], batch_size: int = 64) -> float:
        """Bits per byte of the continuations given their contexts (the context bytes are not counted;
        contexts are cut from the left so every continuation fits ``context``)."""
        device = self.lm.head.weight.device
        total_bits, total_bytes = 0.0, 0
        for s in range(0, len(contexts), batch_size):
            rows, counted = [], []
            for ctx, cont in zip(contexts[s:s + batch_size], continuations[s:s + batch_size]):
                c, n = ctx.encode("utf-8"), cont.encode("utf-8")[: self.context - 2]
                c = c[max(0, len(c) - (self.context - 1 - len(n))):]
                rows.append(c + n)
                counted.append((len(c), len(n)))
            ids, mask = self._rows(rows)
            ids = ids.to(device)
            logits = self.lm(ids[:, :-1]).float()
            nats = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view(ids.shape[0], -1)
            for i, (nc, nn_) in enumerate(counted):  # target j (byte j of the row) sits at column j
                total_bits += float(nats[i, nc: nc + nn_].sum()) / math.log(2)
                total_bytes += nn_
        return total_bits / max(total_bytes, 1)
