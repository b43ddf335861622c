#pragma once
#include "common.h"

namespace granule {

// Host memory for guest RAM: a memfd frame pool (alias planes map it several times as memslots),
// a view of a pool (another MAP_SHARED mapping of the same memfd, so one plane's memslot can be
// write-protected without the others), or an anonymous shared region (the system region). JS reads
// and writes it through `buffer`.
class HostMemory : public Napi::ObjectWrap<HostMemory> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit HostMemory(const Napi::CallbackInfo& info);
  ~HostMemory() override;
  // The mapping, or a thrown error if the object was closed.
  MappingRef Ref(Napi::Env env) const;

 private:
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Protect(const Napi::CallbackInfo& info);
  Napi::Value View(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void Adopt(Napi::Env env, MappingRef m);

  MappingRef map_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  MappingRef* bufferHold_ = nullptr;  // owned by the ArrayBuffer's finalizer
};

}  // namespace granule
