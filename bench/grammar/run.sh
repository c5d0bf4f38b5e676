#!/bin/sh
# run.sh - build bench/grammar/mask_bench.c against build/libvibee.so and print its table for the
# shipped model and the 152k / 128k vocabularies of the tokenizer fixtures (make fixtures).
set -e
cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/grammar/mask_bench.c -Lbuild -lvibee \
   -Wl,-rpath,"$PWD/build" -o build/mask_bench
echo "| model | vocab | request | interner | setup ms | ms per token (mask + advance) | worst mask ms |"
echo "|---|---|---|---|---|---|---|"
build/mask_bench
for f in build/fixtures/tokenizer/qwen25.gguf build/fixtures/tokenizer/llama3.gguf; do
    [ -f "$f" ] && build/mask_bench "$f"
done
