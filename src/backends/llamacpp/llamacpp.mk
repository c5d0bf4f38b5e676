# llamacpp.mk - Makefile fragment (included by the Makefile with -include) that finds a llama.cpp
# build for the `llamacpp` backend and, when found, compiles src/backends/llamacpp/llamacpp_backend.c
# into the library with -DVB_HAVE_LLAMACPP and links the static llama.cpp library.
#
# Where it looks: $(LLAMA_CPP_DIR) if set, else the cache that scripts/build_llamacpp.sh fills,
# $(VB_CACHE)/llama.cpp-$(LLAMACPP_NPM_VERSION) (VB_CACHE defaults to $HOME/.cache/vibee).
# The directory must hold include/llama.h and lib/libllama_vibee.a (that script's layout).
#
# Build-time checks: the directory's include/vibee_llama_build.h must name the llama.cpp build the
# backend was written for ($(LLAMACPP_BUILD)) and llama.h must declare the functions the backend
# calls; otherwise the build stops with the fix. The library must have been compiled for this
# machine's CPU (cpu-flags.txt = what -march=native means here); otherwise the backend is skipped.
# LLAMACPP=0 skips the backend; LLAMACPP_ANY_BUILD=1 accepts another build number (at your risk).

LLAMACPP_NPM_VERSION := 0.12.9
LLAMACPP_BUILD       := 10256
LLAMACPP_CACHE_DIR   := $(if $(VB_CACHE),$(VB_CACHE),$(HOME)/.cache/vibee)/llama.cpp-$(LLAMACPP_NPM_VERSION)
LLAMACPP_DIR         := $(if $(LLAMA_CPP_DIR),$(LLAMA_CPP_DIR),$(LLAMACPP_CACHE_DIR))
# The llama.cpp API the backend uses (checked against the header).
LLAMACPP_API_FUNCS   := llama_model_load_from_file llama_init_from_model llama_get_memory \
                        llama_memory_seq_rm llama_memory_seq_cp llama_get_logits_ith \
                        llama_vocab_n_tokens llama_tokenize llama_batch_init llama_decode

ifeq ($(LLAMACPP),0)
  $(info llamacpp: skipped (LLAMACPP=0))
else ifeq ($(wildcard $(LLAMACPP_DIR)/include/llama.h),)
  $(info llamacpp: skipped (run scripts/build_llamacpp.sh or set LLAMA_CPP_DIR))
else ifeq ($(wildcard $(LLAMACPP_DIR)/lib/libllama_vibee.a),)
  $(info llamacpp: skipped ($(LLAMACPP_DIR) has no lib/libllama_vibee.a; run scripts/build_llamacpp.sh))
else
  LLAMACPP_FOUND_BUILD := $(shell sed -n 's/^\#define VB_LLAMA_BUILD_NUMBER \([0-9]*\).*/\1/p' \
                            $(LLAMACPP_DIR)/include/vibee_llama_build.h 2>/dev/null)
  LLAMACPP_MISSING := $(foreach f,$(LLAMACPP_API_FUNCS),$(if $(shell grep -l '\b$(f)\b' \
                        $(LLAMACPP_DIR)/include/llama.h 2>/dev/null),,$(f)))
  ifneq ($(strip $(LLAMACPP_MISSING)),)
    $(error llamacpp: $(LLAMACPP_DIR)/include/llama.h lacks $(strip $(LLAMACPP_MISSING)): its API is not \
      the one src/backends/llamacpp/llamacpp_backend.c was written for (llama.cpp build \
      $(LLAMACPP_BUILD)); run scripts/build_llamacpp.sh, or build with LLAMACPP=0)
  endif
  ifneq ($(LLAMACPP_FOUND_BUILD),$(LLAMACPP_BUILD))
    ifneq ($(LLAMACPP_ANY_BUILD),1)
      $(error llamacpp: $(LLAMACPP_DIR) holds llama.cpp build '$(LLAMACPP_FOUND_BUILD)' but \
        the backend was written for build $(LLAMACPP_BUILD) (npm llama.rn@$(LLAMACPP_NPM_VERSION)); \
        run scripts/build_llamacpp.sh --force, or set LLAMACPP_ANY_BUILD=1 to try it anyway, or \
        LLAMACPP=0 to build without the backend)
    endif
  endif
  # The library holds this machine's SIMD code (-march=native made explicit): refuse a cache
  # built on another CPU instead of crashing with an illegal instruction.
  LLAMACPP_NATIVE_FLAGS := $(shell $(CC) -\#\#\# -march=native -x c -c /dev/null -o /dev/null 2>&1 | \
                             grep -m1 cc1 | tr ' ' '\n' | tr -d '"' | grep -E '^-m' | tr '\n' ' ')
  LLAMACPP_BUILT_FLAGS  := $(shell cat $(LLAMACPP_DIR)/cpu-flags.txt 2>/dev/null)
  ifneq ($(strip $(LLAMACPP_NATIVE_FLAGS)),$(strip $(LLAMACPP_BUILT_FLAGS)))
    $(info llamacpp: skipped ($(LLAMACPP_DIR) was built for another CPU or compiler; run scripts/build_llamacpp.sh))
  else
    $(info llamacpp: found $(LLAMACPP_DIR) (build $(LLAMACPP_FOUND_BUILD)))
    LLAMACPP_OPENMP := $(shell grep -q '^\#define VB_LLAMA_OPENMP 1' \
                         $(LLAMACPP_DIR)/include/vibee_llama_build.h 2>/dev/null && echo -lgomp)
    LIB_SRCS += src/backends/llamacpp/llamacpp_backend.c
    CFLAGS   += -DVB_HAVE_LLAMACPP
    LDLIBS   += $(LLAMACPP_DIR)/lib/libllama_vibee.a -lstdc++ $(LLAMACPP_OPENMP) -ldl -lm
    # llama.cpp's headers (one of them is named gguf.h) are seen by the backend file only.
    $(BUILD)/src/backends/llamacpp/llamacpp_backend.o: CFLAGS += -I$(LLAMACPP_DIR)/include
    $(BUILD)/src/backends/llamacpp/llamacpp_backend.o: $(LLAMACPP_DIR)/lib/libllama_vibee.a
  endif
endif
