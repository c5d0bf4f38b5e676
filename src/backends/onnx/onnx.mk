# onnx.mk - Makefile fragment (included by the Makefile with -include) that finds the ONNX Runtime
# C headers for the `onnx` backend and, when found, compiles src/backends/onnx/*.c into the library
# with -DVB_HAVE_ONNX. The ORT library itself is NOT linked: the backend loads it with dlopen at run
# time (env VB_ORT_LIB or the backend option ort_lib=PATH, default the cache's lib/), so a missing
# library is a clear runtime error instead of a link failure, and users can point vibee at their own
# ORT build (a GPU one included).
#
# Where it looks: $(ORT_DIR) if set, else the cache that scripts/install_onnxruntime.sh fills,
# $(VB_CACHE)/onnxruntime-1.29 (VB_CACHE defaults to $HOME/.cache/vibee). The directory must hold
# include/onnxruntime_c_api.h. ONNX=0 skips the backend.

ORT_CACHE_DIR := $(if $(VB_CACHE),$(VB_CACHE),$(HOME)/.cache/vibee)/onnxruntime-1.29
ORT_FOUND_DIR := $(if $(ORT_DIR),$(ORT_DIR),$(ORT_CACHE_DIR))

ifeq ($(ONNX),0)
  $(info onnx: skipped (ONNX=0))
else ifeq ($(wildcard $(ORT_FOUND_DIR)/include/onnxruntime_c_api.h),)
  $(info onnx: skipped (run scripts/install_onnxruntime.sh or set ORT_DIR))
else
  $(info onnx: found $(ORT_FOUND_DIR) (library loaded at run time from VB_ORT_LIB or $(ORT_FOUND_DIR)/lib))
  LIB_SRCS += $(sort $(wildcard src/backends/onnx/*.c))
  CFLAGS   += -DVB_HAVE_ONNX
  LDLIBS   += -ldl
  # ORT's headers are seen by the backend files only; the default library path is compiled in.
  $(BUILD)/src/backends/onnx/%.o: CFLAGS += -I$(ORT_FOUND_DIR)/include \
      -DVB_ORT_DEFAULT_LIB='"$(ORT_FOUND_DIR)/lib/libonnxruntime.so"'
endif
