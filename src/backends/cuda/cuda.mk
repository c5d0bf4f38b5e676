# cuda.mk - optional CUDA backend (`cuda`): when nvcc is found (PATH or /usr/local/cuda) or CUDA=1,
# compile src/backends/cuda/*.cu with nvcc (sm_90, plus sm_80) and src/backends/cuda/*.c with $(CC)
# into a run-time module, $(BUILD)/libvibee-cuda.so, linked with cudart + cublas. The library and
# the CLI do not link CUDA: the registry loads the module with dlopen the first time backend
# `cuda` is asked for (src/backend.c), so CPU runs map no CUDA library, start in milliseconds,
# and the same binary runs on machines without CUDA (`-b cuda` then says why it cannot).
# The module carries its own copy of the library code it uses (linked -Bsymbolic from the core
# archive) and exports only vb_backend_cuda. CUDA=0 disables it. CUDA_HOME overrides the toolkit.

CUDA ?=
ifneq ($(CUDA),0)
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifneq ($(strip $(NVCC)),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_VERSION_STR := $(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
$(info cuda: found nvcc $(CUDA_VERSION_STR) (sm_90) at $(NVCC); backend built as the module $(BUILD)/libvibee-cuda.so)
CUDA_ARCH_FLAGS ?= -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH_FLAGS) -Xcompiler -fPIC -Xcompiler -Wall -Iinclude -Isrc
CUDA_CU_SRCS := $(sort $(wildcard src/backends/cuda/*.cu))
CUDA_C_SRCS  := $(sort $(wildcard src/backends/cuda/*.c))
CUDA_OBJS    := $(CUDA_CU_SRCS:%.cu=$(BUILD)/%.cu.o) $(CUDA_C_SRCS:%.c=$(BUILD)/%.o)
CUDA_LIBS    := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
CUDA_MODULE  := $(BUILD)/libvibee-cuda.so
CFLAGS += -DVB_HAVE_CUDA -I$(CUDA_HOME)/include
$(BUILD)/src/backend.o: CFLAGS += -DVB_CUDA_MODULE_DEFAULT='"$(abspath $(CUDA_MODULE))"'

$(BUILD)/%.cu.o: %.cu $(wildcard src/backends/cuda/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(CUDA_MODULE): $(CUDA_OBJS) $(BUILD)/libvibee.a src/backends/cuda/cuda_module.map
	$(CC) -shared $(LDFLAGS) -Wl,-Bsymbolic -Wl,--version-script=src/backends/cuda/cuda_module.map \
	  -o $@ $(CUDA_OBJS) $(BUILD)/libvibee.a $(LDLIBS) $(CUDA_LIBS)
else
ifeq ($(CUDA),1)
$(error cuda: CUDA=1 but nvcc was not found; set NVCC=/path/to/nvcc)
endif
$(info cuda: skipped (no nvcc))
endif
else
$(info cuda: skipped (CUDA=0))
endif
