#pragma once
#include "common.h"

namespace granule {

// /dev/kvm: capabilities and VM creation.
class KvmSystem : public Napi::ObjectWrap<KvmSystem> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit KvmSystem(const Napi::CallbackInfo& info);

 private:
  FdRef Sys(Napi::Env env) const;
  Napi::Value ApiVersion(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value CreateVm(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  FdRef sys_;
  int apiVersion_ = 0;
};

}  // namespace granule
