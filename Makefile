# Makefile - builds libvibee (static + shared), the vibee CLI and the test runner; detects the
# optional backends (llama.cpp, ONNX Runtime, CUDA) through their own fragments
# src/backends/<name>/<name>.mk, which print what they found and what they skipped.
#
#   make            library + CLI            make test       build fixtures, run all tests
#   make asan       tests under ASan+UBSan   make fuzz       libFuzzer run of the GGUF reader
#                                            make fuzz-chat  libFuzzer run of the chat templates
#   make format     clang-format -i          make install PREFIX=/usr/local

.DEFAULT_GOAL := all
CC       ?= cc
PREFIX   ?= /usr/local
BUILD    ?= build
OPT      ?= -O2
SAN      ?=
CFLAGS   ?=
# -std=c11 (not gnu11) also keeps gcc from fusing multiply-adds, which the K-row kernels rely on
# to give each row bit-for-bit what a one-row product gives.
CFLAGS   += -std=c11 $(OPT) -g -Wall -Wextra -fPIC -pthread -D_GNU_SOURCE $(SAN) \
            -Iinclude -Isrc
LDFLAGS  += $(SAN) -pthread
LDLIBS   += -lm -lpcre2-8 -ldl
# jansson (optional) lets the library read Hugging Face tokenizer.json files.
HAVE_JANSSON := $(shell printf '\043include <jansson.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo 1)
ifeq ($(HAVE_JANSSON),1)
CFLAGS += -DVB_HAVE_JANSSON
LDLIBS += -ljansson
endif
# `vibee serve` needs libmicrohttpd + jansson; without their headers the CLI is built without it.
HAVE_SERVE := $(shell printf '\043include <microhttpd.h>\n\043include <jansson.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo 1)
ifeq ($(HAVE_SERVE),1)
CLI_LIBS ?= -lmicrohttpd -ljansson
$(info serve: found libmicrohttpd + jansson)
else
CLI_LIBS ?=
CFLAGS += -DVB_NO_SERVE
$(info serve: skipped (apt-get install libmicrohttpd-dev libjansson-dev))
endif

# Core library sources: everything under src/ except the optional backends.
CORE_SRCS := $(shell find src -name '*.c' -not -path 'src/backends/llamacpp/*' \
               -not -path 'src/backends/onnx/*' -not -path 'src/backends/cuda/*' | sort)
LIB_SRCS  := $(CORE_SRCS)
LIB_OBJS_EXTRA :=
EMBED_MODEL ?= models/wedlm-py-6m-f16.gguf

-include src/backends/llamacpp/llamacpp.mk
-include src/backends/onnx/onnx.mk
-include src/backends/cuda/cuda.mk

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/embedded_model.o $(LIB_OBJS_EXTRA)
CLI_SRCS  := $(wildcard tools/vibee/*.c)
CLI_OBJS  := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(wildcard tests/*.c) fuzz/fuzz_entries.c
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all lib test asan check fuzz fuzz-chat format install clean fixtures
all: $(BUILD)/libvibee.a $(BUILD)/libvibee.so $(BUILD)/vibee $(CUDA_MODULE)

# Rebuild everything when the flags (or the optional backends found) change.
FLAGS_STAMP := $(BUILD)/.flags-$(shell echo '$(CC) $(CFLAGS)' | md5sum | cut -c1-12)
$(FLAGS_STAMP):
	@mkdir -p $(BUILD)
	@rm -f $(BUILD)/.flags-*
	@touch $@

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The llama.cpp-compatible quantizers a second time, as llama.cpp's native build compiles ggml
# (quantize_ggml_fma.c says why); used only where the CPU has AVX2 + FMA. -O2 and no sanitizer
# whatever OPT and SAN are: which products GCC fuses depends on the code it optimizes (-O1, or
# -O2 with ASan + UBSan instrumentation, fuse differently from llama.cpp's -O3 build; plain -O2
# matches it). The sanitizer build still runs the same source instrumented: the plain copy.
ifeq ($(shell uname -m),x86_64)
$(BUILD)/src/backends/cpu/quantize_ggml_fma.o: override SAN :=
$(BUILD)/src/backends/cpu/quantize_ggml_fma.o: CFLAGS += -O2 -mavx2 -mfma -mf16c -ffp-contract=fast -mtune=native
endif

# The default model is linked into the library (vb_embedded_model()).
$(BUILD)/embedded_model.o: src/embedded_model.S $(EMBED_MODEL)
	@mkdir -p $(dir $@)
	$(CC) -c -DVB_EMBED_PATH='"$(EMBED_MODEL)"' $< -o $@

# The chat page `vibee serve` answers at / is linked into the CLI the same way (srv_chat_page_data).
$(BUILD)/chat_page.o: src/embedded_model.S tools/vibee/chat_page.html
	@mkdir -p $(dir $@)
	$(CC) -c -DVB_EMBED_PATH='"tools/vibee/chat_page.html"' -DVB_EMBED_NAME=srv_chat_page $< -o $@

$(BUILD)/libvibee.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# The shared library has a SONAME and exports only vb_* (no llama.cpp / ggml symbols).
$(BUILD)/libvibee.so: $(LIB_OBJS) src/libvibee.map
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libvibee.so.0 -Wl,--version-script=src/libvibee.map \
	  -o $@ $(LIB_OBJS) $(LDLIBS)

$(BUILD)/vibee: $(CLI_OBJS) $(BUILD)/chat_page.o $(BUILD)/libvibee.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CLI_LIBS)

# (the CUDA tests call the kernels directly: the runner links the backend's objects and CUDA)
$(BUILD)/test_runner: $(TEST_OBJS) $(BUILD)/libvibee.a $(CUDA_OBJS) $(CUDA_MODULE)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJS) $(CUDA_OBJS) $(BUILD)/libvibee.a $(LDLIBS) $(CUDA_LIBS)

# Fixtures: random-weight GGUF models and numpy reference outputs made by scripts/.
fixtures: $(BUILD)/vibee
	@mkdir -p $(BUILD)/fixtures
	VB_FIXTURES=$(BUILD)/fixtures VIBEE=$(BUILD)/vibee sh scripts/make_fixtures.sh

test: $(BUILD)/test_runner $(BUILD)/vibee $(BUILD)/libvibee.so fixtures
	VB_FIXTURES=$(BUILD)/fixtures VIBEE=$(BUILD)/vibee $(BUILD)/test_runner $(T)

# The same tests under AddressSanitizer + UBSan (fixtures shared with the normal build).
asan: fixtures
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" build-asan/test_runner build-asan/vibee
	VB_FIXTURES=$(BUILD)/fixtures VIBEE=$(BUILD)/vibee VB_ASAN=1 VB_ASAN_VIBEE=build-asan/vibee build-asan/test_runner $(T)

# What CI runs: all tests, then all tests again under the sanitizers.
check:
	$(MAKE) test
	$(MAKE) asan

# libFuzzer targets fuzz/fuzz_<name>.c over the core library built with clang and the
# sanitizers (build-fuzz/); each target's per-input function is in fuzz/fuzz_entries.c, which
# the test runner also links to replay the committed corpora fuzz/corpus/<name>/. The SIMD
# kernel files get ASan only: clang 14 takes over 20 minutes on them with UBSan (`make asan`,
# gcc, runs them under UBSan).
#   make fuzz-build     all targets      make fuzz FUZZ_TARGET=model FUZZ_SECONDS=600
FUZZ_CC      ?= clang
FUZZ_TARGETS := gguf model tokenizer_json cost_cache grammar
FUZZ_TARGET  ?= gguf
FUZZ_BUILD   := build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  = -std=c11 -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -D_GNU_SOURCE -pthread \
               -Iinclude -Isrc -Ifuzz $(if $(filter 1,$(HAVE_JANSSON)),-DVB_HAVE_JANSSON)
FUZZ_OBJS    := $(CORE_SRCS:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_BUILD)/fuzz/fuzz_entries.o \
                $(FUZZ_BUILD)/embedded_model.o
.PHONY: fuzz-build
.SECONDARY: $(FUZZ_OBJS) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/fuzz_%.o)
$(FUZZ_BUILD)/src/backends/cpu/kernels_avx%.o: FUZZ_SAN := -fsanitize=address
$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(FUZZ_BUILD)/embedded_model.o: src/embedded_model.S $(EMBED_MODEL)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -c -DVB_EMBED_PATH='"$(EMBED_MODEL)"' $< -o $@
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/fuzz/fuzz_%.o $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)
fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
# New inputs go to build-fuzz/corpus/<name>/; the committed seeds are read from
# fuzz/corpus/<name>/ (and tests/data/gguf/ for the reader); crashes to build-fuzz/artifacts/.
fuzz: $(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET)
	@mkdir -p $(FUZZ_BUILD)/corpus/$(FUZZ_TARGET) $(FUZZ_BUILD)/artifacts/
	$(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET) -max_total_time=$${FUZZ_SECONDS:-60} -max_len=65536 \
	  -artifact_prefix=$(FUZZ_BUILD)/artifacts/$(FUZZ_TARGET)- $(FUZZ_BUILD)/corpus/$(FUZZ_TARGET) \
	  $(wildcard fuzz/corpus/$(FUZZ_TARGET)) $(if $(filter gguf,$(FUZZ_TARGET)),tests/data/gguf)

# libFuzzer run of the chat template interpreter, seeded with the real templates.
fuzz-chat:
	@mkdir -p $(BUILD)/fuzz/chat-corpus
	$(FUZZ_CC) -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_GNU_SOURCE \
	  -Iinclude -Isrc fuzz/fuzz_chat_template.c src/chat/jinja.c src/text/utf8.c -o $(BUILD)/fuzz/fuzz_chat_template -lm
	cp -f tests/data/chat_templates/*.jinja $(BUILD)/fuzz/chat-corpus/
	$(BUILD)/fuzz/fuzz_chat_template -max_total_time=$${FUZZ_SECONDS:-60} -max_len=8192 -timeout=10 \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/chat-corpus

format:
	clang-format -i $$(find include src tools tests fuzz -name '*.[ch]')

install: all
	install -d $(PREFIX)/lib $(PREFIX)/include $(PREFIX)/bin $(PREFIX)/lib/pkgconfig
	install -m 644 $(BUILD)/libvibee.a $(BUILD)/libvibee.so $(PREFIX)/lib/
	install -m 644 include/vibee.h include/vibee_sched.h $(PREFIX)/include/
	install -m 755 $(BUILD)/vibee $(PREFIX)/bin/
	$(if $(CUDA_MODULE),install -m 644 $(CUDA_MODULE) $(PREFIX)/lib/)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|0.1.0|' -e 's|@LIBS@|$(LDLIBS)|' vibee.pc.in > $(PREFIX)/lib/pkgconfig/vibee.pc

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
