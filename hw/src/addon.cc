// granule_kvm: KVM's fd hierarchy (system -> VM -> vCPU) and guest memory for Node.
#include "common.h"
#include "memory.h"
#include "system.h"
#include "vm.h"
#include "wpwatch.h"

namespace granule {

// setErrorClass(KvmError): errors are then built with the TS class, so `instanceof` holds for
// throws and for rejected run() promises alike.
static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "setErrorClass needs a constructor");
  Data(env).errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  AddonData& d = Data(env);
  Napi::Function mem = HostMemory::Define(env);
  d.memoryCtor = Napi::Persistent(mem);
  exports.Set("HostMemory", mem);
  exports.Set("KvmSystem", KvmSystem::Define(env));
  Napi::Function vm = KvmVm::Define(env);
  d.vmCtor = Napi::Persistent(vm);
  exports.Set("KvmVm", vm);
  InitVcpu(env, exports);
  exports.Set("WriteWatch", WriteWatch::Define(env));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  return exports;
}

}  // namespace granule

static Napi::Object InitGranuleKvm(Napi::Env env, Napi::Object exports) {
  return granule::Init(env, exports);
}

NODE_API_MODULE(granule_kvm, InitGranuleKvm)
