#pragma once
#include <map>
#include <vector>

#include "common.h"

namespace granule {

struct VmInit {
  FdRef sys, vm;
};

// KVM_GET_SUPPORTED_CPUID as a ready-to-use struct kvm_cpuid2 blob.
std::vector<uint8_t> SupportedCpuid(Napi::Env env, int sysFd);

class KvmVm : public Napi::ObjectWrap<KvmVm> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit KvmVm(const Napi::CallbackInfo& info);

 private:
  struct Slot {
    uint64_t gpa, bytes, offset;
    uint32_t flags;
    MappingRef map;
  };
  FdRef Vm(Napi::Env env) const;
  int Cap(int cap) const;
  Napi::Value SetMemory(const Napi::CallbackInfo& info);
  Napi::Value DeleteMemory(const Napi::CallbackInfo& info);
  Napi::Value EnableManualDirtyProtect(const Napi::CallbackInfo& info);
  Napi::Value GetDirtyLog(const Napi::CallbackInfo& info);
  Napi::Value ClearDirtyLog(const Napi::CallbackInfo& info);
  Napi::Value EnableDirtyRing(const Napi::CallbackInfo& info);
  Napi::Value ResetDirtyRings(const Napi::CallbackInfo& info);
  Napi::Value CreateVcpu(const Napi::CallbackInfo& info);
  Napi::Value Limits(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value Slots(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  const Slot& LoggedSlot(Napi::Env env, uint32_t slot, const char* call) const;

  FdRef sys_, vm_;
  std::map<uint32_t, Slot> slots_;
  int maxMemslots_ = 0;
  bool manualProtect_ = false;
  uint32_t ringBytes_ = 0;
  int vcpus_ = 0;
};

}  // namespace granule
