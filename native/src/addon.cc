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
  napi_value reason;
  napi_create_string_utf8(env, kernelReason(), NAPI_AUTO_LENGTH, &reason);
  setProp(env, result, "config", config);
  setProp(env, result, "core", core);
  setProp(env, result, "threads", threads);
  setProp(env, result, "kernels", kernels);
  setProp(env, result, "kernelReason", reason);
  return result;
}

// kernelVariants(): [{ name, supported, missing }] for every elementwise variant built, fastest last.
napi_value kernelVariantsJs(napi_env env, napi_callback_info) {
  int count = 0;
  const KernelVariant* v = kernelVariants(&count);
  napi_value list;
  napi_create_array_with_length(env, count, &list);
  for (int i = 0; i < count; i++) {
    napi_value item, name, supported, missing;
    napi_create_object(env, &item);
    napi_create_string_utf8(env, v[i].name, NAPI_AUTO_LENGTH, &name);
    napi_get_boolean(env, v[i].supported, &supported);
    napi_create_string_utf8(env, v[i].missing, NAPI_AUTO_LENGTH, &missing);
    setProp(env, item, "name", name);
    setProp(env, item, "supported", supported);
    setProp(env, item, "missing", missing);
    napi_set_element(env, list, i, item);
  }
  return list;
}

// useKernels(name): switches the elementwise variant process-wide; false when unknown or unsupported.
napi_value useKernelsJs(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!getArgs(env, info, 1, argv, "useKernels")) return nullptr;
  char buf[32];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], buf, sizeof buf, &len) != napi_ok) {
    return throwType(env, "useKernels: name must be a string");
  }
  napi_value ok;
  napi_get_boolean(env, useKernels(buf), &ok);
  return ok;
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
  inflora::exportFunction(env, exports, "kernelVariants", inflora::kernelVariantsJs);
  inflora::exportFunction(env, exports, "useKernels", inflora::useKernelsJs);
  inflora::registerGemm(env, exports);
  inflora::registerLapack(env, exports);
  inflora::registerEighSelect(env, exports);
  inflora::registerElementwise(env, exports);
  inflora::registerFused(env, exports);
  return exports;
}
