#pragma once

#include <node_api.h>

namespace inflora {

inline void exportFunction(napi_env env, napi_value exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  napi_set_named_property(env, exports, name, fn);
}

void registerGemm(napi_env env, napi_value exports);
void registerLapack(napi_env env, napi_value exports);
void registerEighSelect(napi_env env, napi_value exports);
void registerElementwise(napi_env env, napi_value exports);
void registerFused(napi_env env, napi_value exports);

}  // namespace inflora
