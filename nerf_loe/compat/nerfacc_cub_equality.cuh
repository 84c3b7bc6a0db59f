// Force-included (nvcc -include) into nerfacc 0.5.2's CUDA sources by nerf_loe.compat.nerfacc_kernels.
// nerfacc's scan.cu passes cub::Equality() as the key comparison of DeviceScan::*ByKey; CCCL 3.0
// (CUDA 13) removed that functor in favour of cuda::std::equal_to<>, so the JIT build fails with
// "namespace cub has no member Equality". Older CUBs still have it, and this header adds nothing.
#pragma once
#include <cub/version.cuh>
#if CUB_VERSION >= 300000
#include <cuda/std/functional>
namespace cub {
using Equality = ::cuda::std::equal_to<>;
}  // namespace cub
#endif
