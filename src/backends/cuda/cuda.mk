# cuda.mk - optional CUDA backend (`cuda`): when nvcc is found (PATH or /usr/local/cuda) or CUDA=1,
# compile src/backends/cuda/*.cu with nvcc (sm_90, plus sm_80) and src/backends/cuda/*.c with $(CC),
# define VB_HAVE_CUDA and link cudart + cublas. CUDA=0 disables it. CUDA_HOME overrides the toolkit.

CUDA ?=
ifneq ($(CUDA),0)
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifneq ($(strip $(NVCC)),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_VERSION_STR := $(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
$(info cuda: found nvcc $(CUDA_VERSION_STR) (sm_90) at $(NVCC))
CUDA_ARCH_FLAGS ?= -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH_FLAGS) -Xcompiler -fPIC -Xcompiler -Wall -Iinclude -Isrc
CUDA_CU_SRCS := $(sort $(wildcard src/backends/cuda/*.cu))
CUDA_CU_OBJS := $(CUDA_CU_SRCS:%.cu=$(BUILD)/%.cu.o)
LIB_SRCS += $(sort $(wildcard src/backends/cuda/*.c))
LIB_OBJS_EXTRA += $(CUDA_CU_OBJS)
CFLAGS += -DVB_HAVE_CUDA -I$(CUDA_HOME)/include
LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++

$(BUILD)/%.cu.o: %.cu $(wildcard src/backends/cuda/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
else
ifeq ($(CUDA),1)
$(error cuda: CUDA=1 but nvcc was not found; set NVCC=/path/to/nvcc)
endif
$(info cuda: skipped (no nvcc))
endif
else
$(info cuda: skipped (CUDA=0))
endif
