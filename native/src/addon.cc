// Entry point of the inflora native addon: BLAS GEMM for the tfjs "blas" backend and LAPACK eigensolvers
// for the coordinator's float64 linear algebra. Context-aware, so worker threads may load it too.
#include <cblas.h>

#include <string>

#include "addon.h"
#include "kernels.h"
#include "napi_args.h"

namespace inflora {
namespace {

// blasInfo(): which BLAS this is, how many threads it uses and which elementwise kernel variant runs.
napi_value blasInfo(napi_env env, napi_callback_info) {
  napi_value result, config, core, threads, kernels;
  napi_create_object(env, &result);
  const char* cfg = openblas_get_config();
  const char* corename = openblas_get_corename();
  napi_create_string_utf8(env, cfg ? cfg : "", NAPI_AUTO_LENGTH, &config);
  napi_create_string_utf8(env, corename ? corename : "", NAPI_AUTO_LENGTH, &core);
  napi_create_int32(env, openblas_get_num_threads(), &threads);
  napi_create_string_utf8(env, kernelTable().name, NAPI_AUTO_LENGTH, &kernels);
  setProp(env, result, "config", config);
  setProp(env, result, "core", core);
  setProp(env, result, "threads", threads);
  setProp(env, result, "kernels", kernels);
  return result;
}

// setThreads(n): the number of BLAS threads (process-wide).
napi_value setThreads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!getArgs(env, info, 1, argv, "setThreads")) return nullptr;
  int64_t n;
  if (!getDim(env, argv[0], 1024, &n, "setThreads", "threads")) return nullptr;
  if (n < 1) return throwRange(env, "setThreads: threads must be at least 1");
  openblas_set_num_threads(static_cast<int>(n));
  return nullptr;
}

}  // namespace
}  // namespace inflora

NAPI_MODULE_INIT() {
  inflora::exportFunction(env, exports, "blasInfo", inflora::blasInfo);
  inflora::exportFunction(env, exports, "setThreads", inflora::setThreads);
  inflora::registerGemm(env, exports);
  inflora::registerLapack(env, exports);
  inflora::registerEighSelect(env, exports);
  inflora::registerElementwise(env, exports);
  return exports;
}
